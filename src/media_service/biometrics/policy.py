"""Who may see and change a person's consent, and erase their biometric data.

- the person themself (``sub`` = the user id, in their organization): read, change, erase;
- admins of the organization: read, change, erase for anyone in it;
- teachers and internal services of the organization: read (a service, such as the AI
  service making embeddings, needs to know whether it may);
- everyone else: nothing, reported as "not found" so user ids cannot be probed.

A principal only ever acts inside its own organization: the person addressed by a URL is
``user_id`` *in the caller's organization*.
"""

from __future__ import annotations

from media_service.auth.principal import Principal, Role


def is_self(principal: Principal, user_id: str) -> bool:
    """Whether ``principal`` is the person ``user_id`` (a user, not a frame or service)."""
    users = (Role.ADMIN, Role.TEACHER, Role.STUDENT, Role.MEMBER)
    return principal.subject == user_id and principal.has(*users)


def may_read(principal: Principal, user_id: str) -> bool:
    return is_self(principal, user_id) or principal.has(Role.ADMIN, Role.TEACHER, Role.SERVICE)


def may_change(principal: Principal, user_id: str) -> bool:
    return is_self(principal, user_id) or principal.has(Role.ADMIN)
