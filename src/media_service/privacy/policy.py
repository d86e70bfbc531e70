"""Who may erase whom, and who may read an erasure's report.

- An admin erases anyone of their organization and reads every report of it.
- A person (a user role, their token's ``sub``) erases themselves, and follows their own
  erasure until it is done; then the report no longer names them, and only admins read it.
- Anyone else is told "not found", so user ids cannot be probed.
"""

from __future__ import annotations

from media_service.auth.principal import Principal, Role
from media_service.privacy.models import Erasure, ErasureStatus

USER_ROLES = (Role.ADMIN, Role.TEACHER, Role.STUDENT, Role.MEMBER)


def is_admin(principal: Principal) -> bool:
    return principal.has(Role.ADMIN)


def may_erase(principal: Principal, user_id: str) -> bool:
    return is_admin(principal) or (principal.has(*USER_ROLES) and principal.subject == user_id)


def may_read(principal: Principal, erasure: Erasure) -> bool:
    if erasure.organization_id != principal.organization_id:
        return False
    if is_admin(principal):
        return True
    return (
        erasure.status is not ErasureStatus.DONE
        and principal.has(*USER_ROLES)
        and erasure.user_id == principal.subject
    )


def actor(organization_id: str, erasure_id: str) -> Principal:
    """Whom the erasure acts as in the other domains: an admin of the organization named
    by the erasure's id, so that what those domains record (``file.deleted``'s
    ``user_id``) names the erasure, never the person."""
    return Principal(erasure_id, organization_id, frozenset({Role.ADMIN}))


def seen_as(organization_id: str, user_id: str) -> Principal:
    """The person as a plain user: what other domains list for them is what they own."""
    return Principal(user_id, organization_id, frozenset({Role.MEMBER}))
