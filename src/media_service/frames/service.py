"""The frame registry: register, read, change and remove frames, and issue their device
tokens. Works inside the request's unit of work and never commits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Principal, Role
from media_service.db.base import utcnow
from media_service.errors import Forbidden, NotFound
from media_service.frames import policy
from media_service.frames.models import Frame, RotationSchedule
from media_service.frames.repository import FrameRepository
from media_service.frames.schemas import FrameCreate, FrameTokenOut, FrameUpdate
from media_service.ids import is_valid_id, new_id
from media_service.state import ServiceState

log = structlog.get_logger(__name__)

# last_seen_at is written at most this often per frame: a frame polls every few seconds.
SEEN_RESOLUTION = timedelta(minutes=1)


class FrameService:
    """Frames for the API."""

    def __init__(self, session: AsyncSession, state: ServiceState) -> None:
        self.session = session
        self.repository = FrameRepository(session)
        self.state = state

    async def create(self, principal: Principal, body: FrameCreate) -> Frame:
        """A new frame owned by ``principal``."""
        if not policy.may_create(principal):
            raise Forbidden("only users register frames")
        now = utcnow()
        frame = Frame(
            frame_id=new_id("frame"),
            user_id=principal.subject,
            organization_id=principal.organization_id,
            created_at=now,
            updated_at=now,
            **body.model_dump(),
        )
        await self.repository.add(frame)
        return frame

    async def list_frames(self, principal: Principal) -> list[Frame]:
        """The frames ``principal`` may read."""
        return list(await self.repository.frames(policy.readable_clause(principal)))

    async def owned_by_person(self, organization_id: str, user_id: str) -> list[Frame]:
        """Every frame ``user_id`` owns: for the export of a person's own data (callers
        check who asks)."""
        return list(await self.repository.owned_by(organization_id, user_id))

    async def schedules_of(self, frame: Frame) -> list[RotationSchedule]:
        """Every rotation schedule of ``frame``, oldest first."""
        return list(await self.repository.schedules(frame.frame_id))

    async def readable(self, principal: Principal, frame_id: str) -> Frame:
        """The frame if ``principal`` may read it; 404 otherwise."""
        return self.readable_of(principal, frame_id, await self._find(frame_id))

    @staticmethod
    def readable_of(principal: Principal, frame_id: str, found: Frame | None) -> Frame:
        """``found`` (the frame read for ``frame_id``, if any) if ``principal`` may read
        it; 404 otherwise."""
        if found is None or not policy.may_read(principal, found):
            raise NotFound(f"no frame {frame_id[:60]!r}")
        return found

    async def writable(self, principal: Principal, frame_id: str) -> Frame:
        """The frame if ``principal`` may change it; 404 or 403 otherwise."""
        frame = await self.readable(principal, frame_id)
        if not policy.may_write(principal, frame):
            raise Forbidden("only the frame's owner and admins may change it")
        return frame

    async def update(self, principal: Principal, frame_id: str, body: FrameUpdate) -> Frame:
        """Change the fields given."""
        frame = await self.writable(principal, frame_id)
        changes = body.model_dump(exclude_unset=True, exclude_none=True)
        for name, value in changes.items():
            setattr(frame, name, value)
        if changes:
            frame.updated_at = utcnow()
        return frame

    async def delete(self, principal: Principal, frame_id: str) -> None:
        """Remove a frame with its schedules, cache entries and cached files."""
        from media_service.frames import cache  # it builds on this module

        frame = await self.writable(principal, frame_id)
        await cache.forget_frame(self.session, self.state.blobs, frame.frame_id)
        await self.repository.delete(frame)

    async def issue_token(
        self, principal: Principal, frame_id: str, ttl_days: int
    ) -> FrameTokenOut:
        """A device token for the frame, valid ``ttl_days`` days."""
        frame = await self.writable(principal, frame_id)
        ttl = timedelta(days=ttl_days)
        token = self.state.tokens.mint(
            frame.frame_id,
            frame.organization_id,
            [Role.FRAME],
            ttl=ttl,
            frame_id=frame.frame_id,
            frame_generation=frame.token_generation,
        )
        return FrameTokenOut(frame_id=frame.frame_id, token=token, expires_at=_now() + ttl)

    async def revoke_tokens(self, principal: Principal, frame_id: str) -> None:
        """Every device token issued for the frame so far stops working (a lost or stolen
        frame); tokens issued afterwards work."""
        frame = await self.writable(principal, frame_id)
        frame.token_generation += 1
        frame.updated_at = _now()
        log.info("frame_tokens_revoked", frame_id=frame.frame_id)

    def seen(self, principal: Principal, frame: Frame) -> None:
        """Note that the frame's own device asked for something just now."""
        now = utcnow()
        last = frame.last_seen_at
        if policy.is_device_of(principal, frame) and (last is None or now - last > SEEN_RESOLUTION):
            self.state.seen.note(frame.frame_id, now)  # written within seconds (``seen.py``)

    async def _find(self, frame_id: str) -> Frame | None:
        if not is_valid_id(frame_id, "frame"):
            return None  # never reaches SQL
        return await self.repository.frame(frame_id)


def _now() -> datetime:
    return datetime.now(UTC)
