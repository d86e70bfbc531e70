"""Who may see and change which frames (and so their schedules and cache).

- A frame belongs to the user who registered it, in their organization. Owners and admins
  change it; services read every frame of their organization.
- A frame's own device token (role ``frame`` with its ``frame_id``) reads that frame, its
  schedules, feed and cache, and nothing else; until its owner revokes the frame's tokens
  (each token carries the frame's token generation it was issued in).

A frame the caller may not read is "not found", so ids cannot be probed; one they may read
but not change answers 403.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, true

from media_service.auth.principal import Principal, Role
from media_service.frames.models import Frame

USER_ROLES = (Role.ADMIN, Role.TEACHER, Role.STUDENT, Role.MEMBER)


def may_create(principal: Principal) -> bool:
    """Users register frames; services and frames do not."""
    return principal.has(*USER_ROLES)


def is_device_of(principal: Principal, frame: Frame) -> bool:
    """Whether ``principal`` is one of ``frame``'s own device tokens, not revoked."""
    return (
        principal.has(Role.FRAME)
        and principal.frame_id == frame.frame_id
        and principal.frame_generation == frame.token_generation
    )


def may_read(principal: Principal, frame: Frame) -> bool:
    if frame.organization_id != principal.organization_id:
        return False
    return (
        principal.has(Role.ADMIN, Role.SERVICE)
        or (principal.has(*USER_ROLES) and frame.user_id == principal.subject)
        or is_device_of(principal, frame)
    )


def may_write(principal: Principal, frame: Frame) -> bool:
    if frame.organization_id != principal.organization_id:
        return False
    return principal.has(Role.ADMIN) or (
        principal.has(*USER_ROLES) and frame.user_id == principal.subject
    )


def readable_clause(principal: Principal) -> ColumnElement[bool]:
    """SQL over ``frames`` for :func:`may_read`."""
    if principal.has(Role.ADMIN, Role.SERVICE):
        scope: ColumnElement[bool] = true()
    elif principal.has(*USER_ROLES):
        scope = Frame.user_id == principal.subject
    elif principal.has(Role.FRAME) and principal.frame_id:
        scope = (Frame.frame_id == principal.frame_id) & (
            Frame.token_generation == principal.frame_generation
        )
    else:
        scope = false()
    return (Frame.organization_id == principal.organization_id) & scope
