"""The per-frame photo cache (spec 003 §5): entries for the API, and the changes every
path shares (expire, evict, forget a photo). Works inside the caller's unit of work and
never commits; stored files are deleted only after the commit (``after_commit``).

An entry's file is a frame-sized JPEG stored under the photo's folder
(``…/frames/<frame_id>/<version_id>.jpg``), so deleting the photo removes it with the rest;
a frame's device downloads it from ``/api/v1/media/cache/{cache_id}/content``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Principal
from media_service.db.base import utcnow
from media_service.db.uow import after_commit
from media_service.errors import NotFound, Unprocessable
from media_service.frames.cache_repository import CacheRepository
from media_service.frames.cache_states import EXPIRED, PENDING, CachePolicy, lru_victims
from media_service.frames.models import CacheStatus, Frame, PhotoCache
from media_service.frames.service import FrameService
from media_service.ids import is_valid_id, new_id
from media_service.jobs import enqueue
from media_service.media.models import FileType, MediaFile
from media_service.media.service import MediaService, may_read
from media_service.media.storage_keys import file_folder
from media_service.preprocessing.errors import NotReady
from media_service.preprocessing.sources import read_all
from media_service.state import ServiceState
from media_service.storage import BlobNotFound, BlobStore
from media_service.versions.models import PhotoVersion
from media_service.versions.service import VersionService

PRECACHE = "media.frame-precache"
CONTENT_PATH = "/api/v1/media/cache/{cache_id}/content"
# What an expired entry loses: it holds no file any more.
NO_FILE = {"local_path": None, "cached_url": None, "cache_size": None}


class PrecacheJob(BaseModel):
    """Payload of ``media.frame-precache``: download what one frame will show next."""

    frame_id: str
    organization_id: str


def cache_key(photo_id: str, frame_id: str, version_id: str | None) -> str:
    """Where an entry's file is stored (under the photo's folder: it goes with the photo)."""
    return f"{file_folder(photo_id)}frames/{frame_id}/{version_id or 'current'}.jpg"


def content_url(state: ServiceState, cache_id: str) -> str:
    base = (state.settings.public_url or "").rstrip("/")
    return base + CONTENT_PATH.format(cache_id=cache_id)


async def request_precache(session: AsyncSession, frame: Frame) -> None:
    """Enqueue a pre-cache run for the frame (leaves with the caller's commit)."""
    await enqueue(
        session,
        PRECACHE,
        PrecacheJob(frame_id=frame.frame_id, organization_id=frame.organization_id),
    )


def new_entry(
    frame: Frame, photo_id: str, version_id: str | None, policy: CachePolicy, now: datetime
) -> dict[str, object]:
    """The columns of a new PENDING entry."""
    return {
        "cache_id": new_id("cache"),
        "user_id": frame.user_id,
        "organization_id": frame.organization_id,
        "frame_id": frame.frame_id,
        "photo_id": photo_id,
        "version_id": version_id,
        "cache_status": PENDING,
        "hit_count": 0,
        "miss_count": 0,
        "retry_count": 0,
        "created_at": now,
        "updated_at": now,
        "expires_at": now + policy.ttl,
    }


async def expire(
    session: AsyncSession, blobs: BlobStore, now: datetime, *conditions: ColumnElement[bool]
) -> list[str]:
    """Expire the entries meeting ``conditions`` (those not yet EXPIRED); their files go
    after the commit. The ids that expired."""
    repository = CacheRepository(session)
    found = await repository.stored_paths(PhotoCache.cache_status != EXPIRED, *conditions)
    moved = await repository.move([c for c, _, _ in found], EXPIRED, now, **NO_FILE)
    _delete_after_commit(session, blobs, [p for c, p, _ in found if c in set(moved)])
    return moved


async def evict_lru(
    session: AsyncSession, blobs: BlobStore, frame_id: str, policy: CachePolicy
) -> list[str]:
    """Remove the frame's least recently used CACHED entries beyond ``keep_count`` entries
    or ``byte_budget`` bytes; the evicted ids."""
    repository = CacheRepository(session)
    victims = lru_victims(await repository.held(frame_id), policy.keep_count, policy.byte_budget)
    if victims:
        found = await repository.stored_paths(PhotoCache.cache_id.in_(victims))
        await repository.delete(victims)
        _delete_after_commit(session, blobs, [path for _, path, _ in found])
    return victims


async def invalidate_versions(session: AsyncSession, blobs: BlobStore, photo_id: str) -> list[str]:
    """Expire the photo's entries made from another version than its current one (all of
    them if it has none), read in the same statement."""
    current = (
        select(PhotoVersion.version_id)
        .where(PhotoVersion.photo_id == photo_id, PhotoVersion.is_current)
        .scalar_subquery()
    )
    other = or_(PhotoCache.version_id.is_(None), PhotoCache.version_id.is_distinct_from(current))
    return await expire(session, blobs, utcnow(), PhotoCache.photo_id == photo_id, other)


async def forget_frame(session: AsyncSession, blobs: BlobStore, frame_id: str) -> None:
    """Remove every cache entry of a frame that is being deleted, and their files after
    the commit (the rows would go by cascade, but nothing else would delete the files)."""
    await _forget(session, blobs, PhotoCache.frame_id == frame_id)


async def forget_photo(session: AsyncSession, blobs: BlobStore, photo_id: str) -> None:
    """Remove every entry of a deleted photo (its files go with the photo's folder; they
    are deleted here too in case the folder was purged already)."""
    await _forget(session, blobs, PhotoCache.photo_id == photo_id)


async def _forget(session: AsyncSession, blobs: BlobStore, which: ColumnElement[bool]) -> None:
    repository = CacheRepository(session)
    found = await repository.stored_paths(which)
    await repository.delete([cache_id for cache_id, _, _ in found])
    _delete_after_commit(session, blobs, [path for _, path, _ in found])


def _delete_after_commit(
    session: AsyncSession, blobs: BlobStore, paths: Sequence[str | None]
) -> None:
    keys = [path for path in paths if path]
    if not keys:
        return

    async def delete_files() -> None:
        for key in keys:
            await blobs.delete(key)

    after_commit(session, delete_files)


class CacheService:
    """Cache entries for the API (frame devices see their own frame's only)."""

    def __init__(
        self, session: AsyncSession, state: ServiceState, policy: CachePolicy | None = None
    ) -> None:
        self.session = session
        self.state = state
        self.policy = policy or CachePolicy()
        self.repository = CacheRepository(session)
        self.frames = FrameService(session, state)

    async def create(self, principal: Principal, frame_id: str, photo_id: str) -> PhotoCache:
        """A PENDING entry for a photo the caller may read, on a frame they may read (the
        existing entry when there is one); a pre-cache run is enqueued."""
        try:
            frame = await self.frames.readable(principal, frame_id)
        except NotFound as exc:
            raise _bad_field("frame_id", exc.detail) from None
        photo = await self._photo(principal, photo_id)
        version = await VersionService(self.session, self.state).ensure_current(photo)
        now = utcnow()
        existing = (await self.repository.of_photos(frame.frame_id, [photo.file_id])).get(
            photo.file_id
        )
        if existing is None:
            await self.repository.insert_pending(
                [new_entry(frame, photo.file_id, version.version_id, self.policy, now)]
            )
        elif existing.cache_status is CacheStatus.EXPIRED:
            await self.repository.move(
                [existing.cache_id], PENDING, now, **self._renewal(version.version_id, now)
            )
        await request_precache(self.session, frame)
        entry = (await self.repository.of_photos(frame.frame_id, [photo.file_id]))[photo.file_id]
        await self.session.refresh(entry)
        return entry

    async def frame_entries(self, principal: Principal, frame_id: str) -> list[PhotoCache]:
        """A frame's entries, most recently used first."""
        frame = await self.frames.readable(principal, frame_id)
        return list(await self.repository.for_frame(frame.frame_id))

    async def readable(self, principal: Principal, cache_id: str) -> PhotoCache:
        """The entry if ``principal`` may read its frame; 404 otherwise."""
        entry = await self.repository.get(cache_id) if is_valid_id(cache_id, "cache") else None
        if entry is None:
            raise NotFound(f"no cache entry {cache_id[:60]!r}")
        try:
            await self.frames.readable(principal, entry.frame_id)
        except NotFound:
            raise NotFound(f"no cache entry {cache_id[:60]!r}") from None
        return entry

    async def delete(self, principal: Principal, cache_id: str) -> None:
        """Remove an entry and its file (the frame's owner and admins)."""
        entry = await self.readable(principal, cache_id)
        await self.frames.writable(principal, entry.frame_id)
        await self.repository.delete([entry.cache_id])
        _delete_after_commit(self.session, self.state.blobs, [entry.local_path])

    async def hit(self, principal: Principal, cache_id: str) -> None:
        """Record that the frame showed the entry's photo (a hit if it was CACHED)."""
        entry = await self.readable(principal, cache_id)
        await self.repository.record_access(entry.cache_id, utcnow())

    async def content(self, principal: Principal, cache_id: str) -> tuple[bytes, str]:
        """The cached JPEG and its ETag; 409 while the entry is not CACHED."""
        entry = await self.readable(principal, cache_id)
        if entry.cache_status is not CacheStatus.CACHED or entry.local_path is None:
            raise NotReady(f"{entry.cache_id} is {entry.cache_status.value}, not CACHED")
        try:
            data = await read_all(self.state.blobs, entry.local_path)
        except BlobNotFound:
            raise NotReady(f"{entry.cache_id} is being replaced") from None
        return data, f'"{entry.cache_id}-{entry.version_id}"'

    def _renewal(self, version_id: str | None, now: datetime) -> dict[str, object]:
        return renewal(self.policy, version_id, now)

    async def _photo(self, principal: Principal, photo_id: str) -> MediaFile:
        media = MediaService(self.session, self.state)
        photo = await media.find(photo_id)
        if photo is None or not may_read(principal, photo) or photo.file_type is not FileType.IMAGE:
            raise _bad_field("photo_id", f"no photo {photo_id[:60]!r}")
        return photo


def _bad_field(name: str, detail: str) -> Unprocessable:
    # A referenced object the caller cannot use is a bad field (422), not a missing page.
    return Unprocessable(detail, errors=[{"loc": ["body", name], "msg": detail}])


def renewal(policy: CachePolicy, version_id: str | None, now: datetime) -> dict[str, object]:
    """What an EXPIRED entry wanted again starts from (its counts of use stay)."""
    return {
        "version_id": version_id,
        "error_message": None,
        "retry_count": 0,
        "next_attempt_at": None,
        "expires_at": now + policy.ttl,
        **NO_FILE,
    }
