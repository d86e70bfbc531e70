"""SQL of the photo cache. Every status change is one guarded ``UPDATE``: it touches only
rows whose current status may legally move to the new one (``cache_states``), so two
workers racing for a row cannot both win."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media_service.db.uow import conflict_insert
from media_service.frames.cache_states import (
    CACHED,
    DOWNLOADING,
    FAILED,
    PENDING,
    Held,
    sources_of,
)
from media_service.frames.models import CacheStatus, PhotoCache

MAX_ENTRIES_LISTED = 1000


@dataclass(frozen=True, slots=True)
class Claimed:
    """An entry this worker now downloads."""

    cache_id: str
    frame_id: str
    photo_id: str
    version_id: str | None
    retry_count: int


class CacheRepository:
    """Rows of ``photo_cache``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, cache_id: str) -> PhotoCache | None:
        return await self.session.get(PhotoCache, cache_id)

    async def for_frame(self, frame_id: str) -> Sequence[PhotoCache]:
        """A frame's entries, most recently used first."""
        statement = (
            select(PhotoCache)
            .where(PhotoCache.frame_id == frame_id)
            .order_by(_last_used().desc(), PhotoCache.cache_id)
            .limit(MAX_ENTRIES_LISTED)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def of_photos(self, frame_id: str, photo_ids: Sequence[str]) -> dict[str, PhotoCache]:
        statement = select(PhotoCache).where(
            PhotoCache.frame_id == frame_id, PhotoCache.photo_id.in_(photo_ids)
        )
        rows = (await self.session.execute(statement)).scalars().all()
        return {row.photo_id: row for row in rows}

    async def insert_pending(self, rows: list[dict[str, Any]]) -> None:
        """Insert PENDING entries; one that a concurrent run inserted first is left as is
        (the unique frame and photo)."""
        if not rows:
            return
        statement = conflict_insert(self.session, PhotoCache).values(rows).on_conflict_do_nothing()
        await self.session.execute(statement)

    async def move(
        self,
        cache_ids: Sequence[str],
        target: CacheStatus,
        now: datetime,
        *conditions: ColumnElement[bool],
        **values: Any,
    ) -> list[str]:
        """Move the given entries that may legally go to ``target`` (and meet
        ``conditions``); the ids that moved."""
        if not cache_ids:
            return []
        statement = (
            update(PhotoCache)
            .where(
                PhotoCache.cache_id.in_(cache_ids),
                PhotoCache.cache_status.in_(sources_of(target)),
                *conditions,
            )
            .values(cache_status=target, updated_at=now, **values)
            .returning(PhotoCache.cache_id)
            .execution_options(synchronize_session=False)
        )
        return list((await self.session.execute(statement)).scalars().all())

    async def claim(self, frame_id: str, now: datetime, lease: timedelta) -> list[Claimed]:
        """Take every entry of the frame that is due for download (PENDING, FAILED whose
        back-off has passed, DOWNLOADING whose worker's lease ran out). Row-level: a
        concurrent claim waits for this one and then finds the rows taken."""
        due = or_(
            PhotoCache.cache_status == PENDING,
            and_(PhotoCache.cache_status == FAILED, PhotoCache.next_attempt_at <= now),
            and_(PhotoCache.cache_status == DOWNLOADING, PhotoCache.updated_at < now - lease),
        )
        statement = (
            update(PhotoCache)
            .where(PhotoCache.frame_id == frame_id, due)
            .values(cache_status=DOWNLOADING, updated_at=now)
            .returning(
                PhotoCache.cache_id,
                PhotoCache.frame_id,
                PhotoCache.photo_id,
                PhotoCache.version_id,
                PhotoCache.retry_count,
            )
            .execution_options(synchronize_session=False)
        )
        return [Claimed(*row) for row in (await self.session.execute(statement)).all()]

    async def refers_to(self, local_path: str) -> bool:
        """Whether any entry's stored file is ``local_path``."""
        statement = select(PhotoCache.cache_id).where(PhotoCache.local_path == local_path)
        return await self.session.scalar(statement.limit(1)) is not None

    async def stored_paths(
        self, *conditions: ColumnElement[bool]
    ) -> list[tuple[str, str | None, str]]:
        """(cache_id, local_path, frame_id) of the entries meeting ``conditions``."""
        statement = select(PhotoCache.cache_id, PhotoCache.local_path, PhotoCache.frame_id).where(
            *conditions
        )
        return [(c, p, f) for c, p, f in (await self.session.execute(statement)).all()]

    async def held(self, frame_id: str) -> list[Held]:
        """The frame's CACHED entries for eviction."""
        statement = select(PhotoCache.cache_id, PhotoCache.cache_size, _last_used()).where(
            PhotoCache.frame_id == frame_id, PhotoCache.cache_status == CACHED
        )
        rows = (await self.session.execute(statement)).all()
        return [Held(cache_id, size or 0, used) for cache_id, size, used in rows]

    async def delete(self, cache_ids: Sequence[str]) -> None:
        if cache_ids:
            await self.session.execute(
                delete(PhotoCache)
                .where(PhotoCache.cache_id.in_(cache_ids))
                .execution_options(synchronize_session=False)
            )

    async def record_access(self, cache_id: str, now: datetime) -> bool:
        """Count one access: a hit when the entry is CACHED, a miss otherwise."""
        is_hit = PhotoCache.cache_status == CACHED
        statement = (
            update(PhotoCache)
            .where(PhotoCache.cache_id == cache_id)
            .values(
                hit_count=PhotoCache.hit_count + _if(is_hit),
                miss_count=PhotoCache.miss_count + _if(~is_hit),
                last_accessed_at=now,
            )
            .returning(PhotoCache.cache_status)
            .execution_options(synchronize_session=False)
        )
        status = (await self.session.execute(statement)).scalar_one_or_none()
        return status is CacheStatus.CACHED or status == CACHED.value

    async def hit_rates(self, limit: int) -> dict[str, float]:
        """Hits over accesses, per frame with any access (the busiest ``limit`` frames)."""
        hits = func.sum(PhotoCache.hit_count)
        total = func.sum(PhotoCache.hit_count + PhotoCache.miss_count)
        statement = (
            select(PhotoCache.frame_id, hits, total)
            .group_by(PhotoCache.frame_id)
            .having(total > 0)
            .order_by(total.desc())
            .limit(limit)
        )
        rows = (await self.session.execute(statement)).all()
        return {frame_id: float(h) / float(t) for frame_id, h, t in rows}


def _last_used() -> ColumnElement[datetime]:
    return func.coalesce(PhotoCache.last_accessed_at, PhotoCache.updated_at)


def _if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


async def frame_hit_rates(
    sessions: async_sessionmaker[AsyncSession], limit: int
) -> dict[str, float]:
    """Hit rate per frame, read in a short session of its own (for ``/metrics``)."""
    async with sessions() as session:
        return await CacheRepository(session).hit_rates(limit)
