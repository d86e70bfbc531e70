"""Who may see, upload, change and delete which media files.

- admin: everything in their organization;
- service: reads everything in its organization, uploads for any owner, marks files
  processed; it does not delete, rename or change owners;
- teacher: ClassSession media of the organization, plus their own (Teacher) and what they
  uploaded (which may be Other files, or files moved to another owner since);
- student: their own (Student) media only; member: their own (User) media only. Neither
  keeps a file they uploaded once it belongs to someone else, and neither uploads Other
  files (they could not see them);
- frame: no direct file access (frames read through their feed).

Anything a principal may not see is reported as "not found" by the service, so ids of
other users and organizations cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from media_service.auth.principal import Principal, Role
from media_service.media.models import MediaFile, OwnerType

# Owner types whose owner_id is a person's user id (so "own" can be decided by sub).
_PERSONAL: dict[Role, OwnerType] = {
    Role.STUDENT: OwnerType.STUDENT,
    Role.TEACHER: OwnerType.TEACHER,
    Role.MEMBER: OwnerType.USER,
}


@dataclass(frozen=True, slots=True)
class Visibility:
    """The set of files a principal may read, in a form a repository can turn into SQL.

    A file is visible when it is in ``organization_id`` and any of: ``everything``; its
    owner type is in ``shared_owner_types``; it is owned by ``subject`` under one of
    ``personal_owner_types``; ``own_uploads`` is set and it was uploaded by ``subject``.
    ``subject`` is empty when nothing depends on it.
    """

    organization_id: str
    subject: str
    everything: bool
    shared_owner_types: frozenset[OwnerType]
    personal_owner_types: frozenset[OwnerType]
    own_uploads: bool

    def allows(self, file: MediaFile) -> bool:
        if file.organization_id != self.organization_id:
            return False
        return (
            self.everything
            or file.owner_type in self.shared_owner_types
            or (file.owner_id == self.subject and file.owner_type in self.personal_owner_types)
            or (self.own_uploads and bool(self.subject) and file.uploaded_by == self.subject)
        )


def read_visibility(principal: Principal) -> Visibility:
    """What ``principal`` may read."""
    everything = principal.has(Role.ADMIN, Role.SERVICE)
    teacher = principal.has(Role.TEACHER)
    shared = frozenset({OwnerType.CLASS_SESSION} if teacher else ())
    personal = frozenset(owner for role, owner in _PERSONAL.items() if principal.has(role))
    if not (everything or teacher or personal):  # frames, tokens without a known role
        return Visibility(principal.organization_id, "", False, frozenset(), frozenset(), False)
    return Visibility(
        principal.organization_id, principal.subject, everything, shared, personal, teacher
    )


def private_visibility(principal: Principal) -> Visibility:
    """Whose location and face data ``principal`` may see: admins everything in their
    organization; everyone else only files they own or uploaded (a teacher does not see
    where a class photo was taken unless they took it)."""
    if principal.has(Role.ADMIN):
        return read_visibility(principal)
    personal = frozenset(owner for role, owner in _PERSONAL.items() if principal.has(role))
    return Visibility(
        principal.organization_id, principal.subject, False, frozenset(), personal, True
    )


def reads_only_own(principal: Principal) -> bool:
    """Whether every file ``principal`` may read is owned by it (students and members:
    no admin, service or teacher role)."""
    return not principal.has(Role.ADMIN, Role.SERVICE, Role.TEACHER)


def private_implied(principal: Principal) -> bool:
    """Whether :func:`private_visibility` contains :func:`read_visibility` (so a query need
    not state both): true for admins, and for callers who read only their own files."""
    return principal.has(Role.ADMIN) or not principal.has(Role.TEACHER, Role.SERVICE)


def write_visibility(principal: Principal) -> Visibility:
    """What ``principal`` may change or delete: like reading, except that services only
    read."""
    if principal.has(Role.ADMIN):
        return read_visibility(principal)
    return read_visibility(replace(principal, roles=principal.roles - {Role.SERVICE}))


def can_upload_for(principal: Principal, owner_type: OwnerType, owner_id: str) -> bool:
    """Whether ``principal`` may store a file owned by ``(owner_type, owner_id)``."""
    if principal.has(Role.ADMIN, Role.SERVICE):
        return True
    if owner_type == OwnerType.CLASS_SESSION:
        return principal.has(Role.TEACHER)
    if owner_type == OwnerType.OTHER:
        return principal.has(Role.TEACHER)
    personal_roles = [role for role, owner in _PERSONAL.items() if owner == owner_type]
    return owner_id == principal.subject and principal.has(*personal_roles)


def default_owner(principal: Principal) -> tuple[OwnerType, str] | None:
    """The owner of an upload that names none: the caller as their personal owner type."""
    for role, owner_type in _PERSONAL.items():
        if principal.has(role):
            return owner_type, principal.subject
    return None


def can_mark_processed(principal: Principal) -> bool:
    """Only internal services (and admins) report processing results."""
    return principal.has(Role.SERVICE, Role.ADMIN)
