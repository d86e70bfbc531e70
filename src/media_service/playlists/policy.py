"""Who may see and change which playlists.

- A playlist belongs to the user who created it, in their organization.
- Owners read and change their own playlists; admins every playlist of their organization;
  services read them all (as they read every file) and change none.
- A shared playlist is readable by every user of the organization (teachers, students,
  members); only its owner and admins change it.
- Frames and tokens without a user role read no playlist directly (frames get theirs
  through their schedule), and only users (not services or frames) create playlists.

A playlist the caller may not read is "not found", so ids cannot be probed; one they may
read but not change answers 403.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from sqlalchemy import ColumnElement, false, or_, true

from media_service.auth.principal import Principal, Role
from media_service.playlists.models import Playlist

USER_ROLES = (Role.ADMIN, Role.TEACHER, Role.STUDENT, Role.MEMBER)
_SHARED_READERS = (Role.TEACHER, Role.STUDENT, Role.MEMBER)


def may_create(principal: Principal) -> bool:
    """Users create playlists; services and frames do not."""
    return principal.has(*USER_ROLES)


def reads_everything(principal: Principal) -> bool:
    """Admins and services read every playlist of their organization."""
    return principal.has(Role.ADMIN, Role.SERVICE)


def may_read(principal: Principal, playlist: Playlist) -> bool:
    if playlist.organization_id != principal.organization_id:
        return False
    return (
        reads_everything(principal)
        or playlist.user_id == principal.subject
        or (playlist.shared and principal.has(*_SHARED_READERS))
    )


def may_write(principal: Principal, playlist: Playlist) -> bool:
    if playlist.organization_id != principal.organization_id:
        return False
    return principal.has(Role.ADMIN) or playlist.user_id == principal.subject


def readable_clause(principal: Principal) -> ColumnElement[bool]:
    """SQL over ``playlists`` for :func:`may_read`."""
    if reads_everything(principal):
        scope: ColumnElement[bool] = true()
    elif principal.has(*_SHARED_READERS):
        scope = or_(Playlist.user_id == principal.subject, Playlist.shared.is_(True))
    else:
        scope = false()
    return (Playlist.organization_id == principal.organization_id) & scope


def owner_of(playlist: Playlist) -> Principal:
    """The owner as they were when they last saved the playlist: whose eyes fill it."""
    return owner(playlist.user_id, playlist.organization_id, playlist.owner_roles)


def owner(user_id: str, organization_id: str, role_names: Iterable[str] | None) -> Principal:
    """A playlist owner from its stored columns."""
    roles = set()
    for name in role_names or ():
        with contextlib.suppress(ValueError):  # a role this version no longer knows
            roles.add(Role(name))
    return Principal(user_id, organization_id, frozenset(roles))


def stored_roles(principal: Principal) -> list[str]:
    """``principal``'s roles as ``Playlist.owner_roles`` keeps them (sorted: comparable)."""
    return sorted(role.value for role in principal.roles)
