"""Pre-caching: a run for one frame expires what is overdue, makes PENDING entries for the
photos the frame shows next, claims every due entry (``UPDATE … RETURNING``, so
concurrent runs split the work instead of repeating it), renders each as a frame-sized
JPEG with no transaction open, stores it, marks it CACHED (publishing ``media.cache.ready``)
or FAILED with back-off, and finally evicts beyond the frame's LRU limits.

Runs come from the ``media.frame-precache`` job (enqueued by ``POST /cache`` and every
``PRECACHE_INTERVAL`` for frames seen lately, by :class:`FrameCacheLoop`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.db.base import utcnow
from media_service.db.uow import after_commit, on_rollback, unit_of_work
from media_service.errors import MediaError
from media_service.events import MediaCacheReady, record_event
from media_service.frames import cache
from media_service.frames.cache_repository import CacheRepository, Claimed
from media_service.frames.cache_states import (
    CACHED,
    EXPIRED,
    FAILED,
    PENDING,
    CachePolicy,
    next_attempt,
)
from media_service.frames.feed import screen_size
from media_service.frames.models import Frame, PhotoCache
from media_service.frames.photos import PhotoRow
from media_service.frames.repository import FrameRepository
from media_service.frames.schedules import ScheduleService
from media_service.imaging.specs import Fit
from media_service.jobs import JobContext, JobHandler, enqueue, job
from media_service.media.service import MediaService
from media_service.periodic import PeriodicLoop
from media_service.preprocessing.params import RenditionParams
from media_service.preprocessing.service import PreprocessingService
from media_service.preprocessing.sources import put_bytes
from media_service.state import ServiceState
from media_service.storage import BlobStoreError
from media_service.versions.models import PhotoVersion
from media_service.versions.service import VersionService

log = structlog.get_logger(__name__)

ENQUEUED = (cache.PRECACHE,)
PRECACHE_INTERVAL = 300.0  # seconds between pre-cache rounds of every active frame
FIRST_ROUND_DELAY = 30.0
ACTIVE_WITHIN = timedelta(days=1)  # frames seen (or registered) lately are pre-cached
MAX_ERROR_LENGTH = 500


@dataclass
class PrecacheResult:
    """What one run did (ids)."""

    planned: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)


class Precache:
    """Pre-caches one frame at a time; safe to run concurrently for the same frame."""

    def __init__(self, state: ServiceState, policy: CachePolicy | None = None) -> None:
        self.state = state
        self.policy = policy or CachePolicy()

    async def run(self, frame_id: str, now: datetime | None = None) -> PrecacheResult:
        """One run for the frame at ``now`` (default: now)."""
        now = now or utcnow()
        result = PrecacheResult()
        async with unit_of_work(self.state.sessions) as session:
            frame = await session.get(Frame, frame_id)
            if frame is None:
                return result
            result.planned = await self._plan(session, frame, now)
        async with unit_of_work(self.state.sessions) as session:
            claimed = await CacheRepository(session).claim(frame_id, now, self.policy.lease)
        for entry in claimed:
            done = await self._download(frame, entry, now)
            (result.cached if done else result.failed).append(entry.cache_id)
        async with unit_of_work(self.state.sessions) as session:
            result.evicted = await cache.evict_lru(session, self.state.blobs, frame_id, self.policy)
        return result

    # -- plan ------------------------------------------------------------------------------

    async def _plan(self, session: AsyncSession, frame: Frame, now: datetime) -> list[str]:
        blobs, repository = self.state.blobs, CacheRepository(session)
        mine = PhotoCache.frame_id == frame.frame_id
        await cache.expire(session, blobs, now, mine, PhotoCache.expires_at <= now)
        upcoming = await self._upcoming(session, frame, now)
        wanted = {row.photo_id: row.version_id for row in upcoming}
        existing = await repository.of_photos(frame.frame_id, list(wanted))
        stale = [e.cache_id for e in existing.values() if e.version_id != wanted[e.photo_id]]
        await cache.expire(session, blobs, now, PhotoCache.cache_id.in_(stale))
        for entry in existing.values():
            if entry.cache_id in stale or entry.cache_status is EXPIRED:
                values = cache.renewal(self.policy, wanted[entry.photo_id], now)
                await repository.move([entry.cache_id], PENDING, now, **values)
        await repository.insert_pending(
            [
                cache.new_entry(frame, photo_id, version, self.policy, now)
                for photo_id, version in wanted.items()
                if photo_id not in existing
            ]
        )
        # Expired entries the frame no longer needs go; their files went when they expired.
        gone = await repository.stored_paths(
            mine, PhotoCache.cache_status == EXPIRED, PhotoCache.photo_id.not_in(list(wanted))
        )
        await repository.delete([cache_id for cache_id, _, _ in gone])
        return list(wanted)

    async def _upcoming(self, session: AsyncSession, frame: Frame, now: datetime) -> list[PhotoRow]:
        """The next ``keep_count`` photos the frame shows, from the one on show now."""
        showing = await ScheduleService(session, self.state).now_showing(frame, now)
        photos, start = showing.photos, showing.index
        ordered = photos[start:] + photos[:start]
        return [await self._versioned(session, row) for row in ordered[: self.policy.keep_count]]

    async def _versioned(self, session: AsyncSession, row: PhotoRow) -> PhotoRow:
        """The row with its current version, the original made now if it has none yet
        (its ``file.uploaded`` not handled yet): an entry always names its version."""
        if row.version_id is not None:
            return row
        media = MediaService(session, self.state)
        photo = await media.find(row.photo_id)
        if photo is None:
            return row
        version = await VersionService(session, self.state).ensure_current(photo)
        return row._replace(version_id=version.version_id, version_number=version.version_number)

    # -- download --------------------------------------------------------------------------

    async def _download(self, frame: Frame, entry: Claimed, now: datetime) -> bool:
        key = cache.cache_key(entry.photo_id, frame.frame_id, entry.version_id)
        try:
            data = await self._render(frame, entry)
            if data is not None:
                await put_bytes(self.state.blobs, key, data)
        except (BlobStoreError, MediaError) as exc:  # storage or the photo: retried later
            await self._failed(entry, f"{type(exc).__name__}: {exc}", now)
            return False
        async with unit_of_work(self.state.sessions) as session:
            if data is None:  # the photo went meanwhile
                await cache.forget_photo(session, self.state.blobs, entry.photo_id)
                return False
            return await self._stored(session, frame, entry, (key, len(data)), now)

    async def _delete_unless_referenced(self, key: str) -> None:
        async with self.state.read_sessions() as session:
            referenced = await CacheRepository(session).refers_to(key)
        if not referenced:
            await self.state.blobs.delete(key)

    async def _render(self, frame: Frame, entry: Claimed) -> bytes | None:
        async with unit_of_work(self.state.read_sessions) as session:
            media = MediaService(session, self.state)
            photo = await media.find(entry.photo_id)
            number = await _version_number(session, entry.version_id)
        if photo is None:
            return None
        preprocessing = PreprocessingService(self.state)
        served = await preprocessing.served(photo, number)
        width, height = screen_size(frame)
        params = RenditionParams(width, height, Fit.CONTAIN, "jpeg", None)
        return (await preprocessing.rendition(served, params, None)).data

    async def _stored(
        self,
        session: AsyncSession,
        frame: Frame,
        entry: Claimed,
        stored: tuple[str, int],
        now: datetime,
    ) -> bool:
        key, size = stored
        # If this transaction fails, or the entry went while we rendered, the file must not
        # linger, unless a newer entry of the same frame, photo and version (same key)
        # has stored it meanwhile.
        on_rollback(session, lambda: self._delete_unless_referenced(key))
        url = cache.content_url(self.state, entry.cache_id)
        same_version = (
            PhotoCache.version_id.is_(None)
            if entry.version_id is None
            else PhotoCache.version_id == entry.version_id
        )
        moved = await CacheRepository(session).move(
            [entry.cache_id],
            CACHED,
            now,
            same_version,
            local_path=key,
            cache_size=size,
            cached_url=url,
            cache_format="jpeg",
            cache_quality="frame",
            error_message=None,
            next_attempt_at=None,
        )
        if not moved:  # expired or deleted while we rendered
            after_commit(session, lambda: self._delete_unless_referenced(key))
            return False
        record_event(
            session,
            MediaCacheReady(
                cache_id=entry.cache_id,
                frame_id=entry.frame_id,
                photo_id=entry.photo_id,
                cached_url=url,
                organization_id=frame.organization_id,
            ),
        )
        return True

    async def _failed(self, entry: Claimed, error: str, now: datetime) -> None:
        failures = entry.retry_count + 1
        log.warning("frame_cache_failed", cache_id=entry.cache_id, failures=failures, error=error)
        async with unit_of_work(self.state.sessions) as session:
            await CacheRepository(session).move(
                [entry.cache_id],
                FAILED,
                now,
                error_message=error[:MAX_ERROR_LENGTH],
                retry_count=failures,
                next_attempt_at=next_attempt(self.policy, failures, now),
            )


async def _version_number(session: AsyncSession, version_id: str | None) -> int | None:
    if version_id is None:
        return None
    statement = select(PhotoVersion.version_number).where(PhotoVersion.version_id == version_id)
    return (await session.execute(statement)).scalar_one_or_none()


def cache_jobs(state: ServiceState) -> list[JobHandler[Any]]:
    """The job handlers of the frame cache, bound to the running service."""

    @job(cache.PRECACHE, cache.PrecacheJob)
    async def precache(ctx: JobContext, payload: cache.PrecacheJob) -> None:
        # Works in short transactions of its own: rendering must not hold ctx.session open.
        await Precache(state).run(payload.frame_id)

    return [precache]


class FrameCacheLoop:
    """Every ``interval`` seconds: enqueue a pre-cache run for each frame seen lately (one
    job per frame and round: the job id de-duplicates between processes)."""

    def __init__(
        self,
        state: ServiceState,
        *,
        interval: float = PRECACHE_INTERVAL,
        first_delay: float = FIRST_ROUND_DELAY,
    ) -> None:
        self.state = state
        self.interval = interval
        self._loop = PeriodicLoop(
            "frame-cache",
            self.run_once,
            interval,
            failure_event="frame_cache_round_failed",
            first_delay=first_delay,
        )

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def run_once(self, now: datetime | None = None) -> int:
        """Enqueue this round's runs; how many frames."""
        now = now or utcnow()
        round_id = int(now.timestamp() // self.interval)
        since = now - ACTIVE_WITHIN
        async with unit_of_work(self.state.sessions) as session:
            frames = await FrameRepository(session).active_since(since)
            for frame in frames:
                await enqueue(
                    session,
                    cache.PRECACHE,
                    cache.PrecacheJob(
                        frame_id=frame.frame_id, organization_id=frame.organization_id
                    ),
                    job_id=f"precache-{frame.frame_id}-{round_id}",
                )
        return len(frames)
