"""The authenticated caller of a request or the actor of a job."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    ADMIN = "admin"
    TEACHER = "teacher"
    STUDENT = "student"
    MEMBER = "member"
    SERVICE = "service"
    FRAME = "frame"


@dataclass(frozen=True, slots=True)
class Principal:
    """A user, an internal service or a frame device, inside one organization."""

    subject: str
    organization_id: str
    roles: frozenset[Role]
    frame_id: str | None = None
    # Which of the frame's token generations a device token belongs to (revoking a
    # frame's tokens moves the frame to the next one).
    frame_generation: int = 0

    def has(self, *roles: Role) -> bool:
        """True when the principal holds any of ``roles``."""
        return not self.roles.isdisjoint(roles)
