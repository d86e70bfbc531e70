"""SQL of the frames domain: frames and their schedules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import ColumnElement, Table, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.frames.models import Frame, RotationSchedule

MAX_FRAMES_LISTED = 500

_FRAMES = cast(Table, Frame.__table__)
# One statement for many frames (executemany); a time older than the stored one (another
# process wrote a later one) changes nothing.
_TOUCH = (
    update(_FRAMES)
    .where(
        _FRAMES.c.frame_id == bindparam("seen_frame_id"),
        or_(_FRAMES.c.last_seen_at.is_(None), _FRAMES.c.last_seen_at < bindparam("seen_at")),
    )
    .values(last_seen_at=bindparam("seen_at"))
)


class FrameRepository:
    """Frames and rotation schedules."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: Frame | RotationSchedule) -> None:
        self.session.add(row)
        await self.session.flush()

    async def delete(self, row: Frame | RotationSchedule) -> None:
        await self.session.delete(row)
        await self.session.flush()

    async def touch(self, seen: Mapping[str, datetime]) -> None:
        """Record when each frame of ``seen`` (frame id → time) was last seen."""
        params = [{"seen_frame_id": frame_id, "seen_at": at} for frame_id, at in seen.items()]
        await self.session.execute(_TOUCH, params)

    async def frame(self, frame_id: str) -> Frame | None:
        return await self.session.get(Frame, frame_id)

    async def frames(self, visible: ColumnElement[bool]) -> Sequence[Frame]:
        statement = select(Frame).where(visible).order_by(Frame.frame_id).limit(MAX_FRAMES_LISTED)
        return (await self.session.execute(statement)).scalars().all()

    async def owned_by(self, organization_id: str, user_id: str) -> Sequence[Frame]:
        """Every frame of one owner (``idx_frames_user_id``)."""
        statement = (
            select(Frame)
            .where(Frame.organization_id == organization_id, Frame.user_id == user_id)
            .order_by(Frame.frame_id)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def active_since(self, since: datetime) -> Sequence[Frame]:
        """Frames seen (or registered) at ``since`` or later."""
        statement = select(Frame).where(or_(Frame.last_seen_at >= since, Frame.created_at >= since))
        return (await self.session.execute(statement)).scalars().all()

    async def lock(self, frame_id: str) -> None:
        """Hold the frame's row until the transaction ends (PostgreSQL; SQLite has one
        writer anyway), so that counting its schedules and adding one do not interleave."""
        await self.session.get(Frame, frame_id, with_for_update=True)

    async def schedule(self, schedule_id: str) -> RotationSchedule | None:
        return await self.session.get(RotationSchedule, schedule_id)

    async def schedules(self, frame_id: str) -> Sequence[RotationSchedule]:
        """Every schedule of a frame, oldest first."""
        statement = (
            select(RotationSchedule)
            .where(RotationSchedule.frame_id == frame_id)
            .order_by(RotationSchedule.schedule_id)
        )
        return (await self.session.execute(statement)).scalars().all()
