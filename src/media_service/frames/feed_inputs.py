"""The fingerprint of a frame's feed inputs (see ``feed_memo``): one statement over the
frames', playlists', files', metadata and versions' tables."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, bindparam, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.frames.feed_memo import FeedInputs
from media_service.frames.models import CacheStatus, Frame, PhotoCache, RotationSchedule
from media_service.media.models import MediaFile
from media_service.metadata.models import PhotoMetadata
from media_service.playlists.models import Playlist, PlaylistItem
from media_service.versions.models import PhotoVersion

# Every column the feed reads, by table (``feed.py``, ``schedules.py``, ``photos.py``).
_SCHEDULE = RotationSchedule
SCHEDULE_COLUMNS = (
    _SCHEDULE.schedule_id, _SCHEDULE.updated_at, _SCHEDULE.playlist_id, _SCHEDULE.is_active,
    _SCHEDULE.schedule_type, _SCHEDULE.priority, _SCHEDULE.start_time, _SCHEDULE.end_time,
    _SCHEDULE.days_of_week, _SCHEDULE.occasions, _SCHEDULE.rotation_interval,
    _SCHEDULE.transition, _SCHEDULE.shuffle, _SCHEDULE.recent_first,
)  # fmt: skip
PLAYLIST_COLUMNS = (
    Playlist.playlist_id, Playlist.updated_at, Playlist.user_id, Playlist.organization_id,
    Playlist.owner_roles, Playlist.transition_duration,
)  # fmt: skip
# An item with every column of its file that decides whether the playlist's owner sees
# it (``media.repository.visible_clause``), its capture time ("on this day") and its
# current version.
ITEM_COLUMNS = (
    PlaylistItem.playlist_id, PlaylistItem.file_id, PlaylistItem.position,
    PlaylistItem.added_at, MediaFile.organization_id, MediaFile.owner_type,
    MediaFile.owner_id, MediaFile.uploaded_by, MediaFile.file_type,
    PhotoMetadata.photo_taken_at, PhotoVersion.version_id, PhotoVersion.version_number,
)  # fmt: skip
CACHED_COLUMNS = (PhotoCache.photo_id, PhotoCache.version_id, PhotoCache.cached_url)


async def frame_and_inputs(session: AsyncSession, frame_id: str) -> tuple[Frame, FeedInputs] | None:
    """The frame and the fingerprint of its feed inputs, in one statement (a kept feed's
    poll then costs one round trip); ``None`` if there is no such frame."""
    row = (await session.execute(_FRAME_AND_INPUTS, {"frame_id": frame_id})).one_or_none()
    if row is None:
        return None
    frame, *parts = row
    screen = (frame.screen_width, frame.screen_height, frame.orientation)
    return frame, FeedInputs((frame.time_zone, *screen), *(_digest(part) for part in parts))


def _digest(part: str | None) -> str | None:
    """A part of the fingerprint as a digest: kept feeds hold this, not the text, which
    grows with the frame's playlists (about 250 bytes a photo)."""
    return None if part is None else hashlib.blake2b(part.encode(), digest_size=16).hexdigest()


def _inputs_statement() -> Select[Any]:
    """The frame's row, then the four fingerprints as columns."""
    frame_id = bindparam("frame_id", type_=String)
    playlist_ids = select(_SCHEDULE.playlist_id).where(_SCHEDULE.frame_id == frame_id)
    schedules = select(_fingerprint(SCHEDULE_COLUMNS)).where(_SCHEDULE.frame_id == frame_id)
    playlists = select(_fingerprint(PLAYLIST_COLUMNS)).where(Playlist.playlist_id.in_(playlist_ids))
    items = (
        select(_fingerprint(ITEM_COLUMNS))
        .join(MediaFile, MediaFile.file_id == PlaylistItem.file_id)
        .outerjoin(PhotoMetadata, PhotoMetadata.file_id == PlaylistItem.file_id)
        .outerjoin(
            PhotoVersion,
            and_(PhotoVersion.photo_id == PlaylistItem.file_id, PhotoVersion.is_current),
        )
        .where(PlaylistItem.playlist_id.in_(playlist_ids))
    )
    cached = select(_fingerprint(CACHED_COLUMNS)).where(
        PhotoCache.frame_id == frame_id, PhotoCache.cache_status == CacheStatus.CACHED
    )
    parts = (part.scalar_subquery() for part in (schedules, playlists, items, cached))
    return select(Frame, *parts).where(Frame.frame_id == frame_id)


def _fingerprint(columns: tuple[Any, ...]) -> ColumnElement[str]:
    """The rows' ``columns`` as one string: each row's values joined by ``|`` (NULL as
    ``~``), rows joined by ``,`` (``string_agg`` / ``group_concat``: the order follows the
    plan, so a new plan costs one rebuild). The columns hold ids, numbers, times, enums,
    server-made URLs and checked JSON, so two different sets of rows do not make one
    string."""
    row: ColumnElement[str] = func.coalesce(cast(columns[0], String), "~")
    for column in columns[1:]:
        row = row + "|" + func.coalesce(cast(column, String), "~")
    return func.aggregate_strings(row, ",")


# Built once: building it took more CPU than running it.
_FRAME_AND_INPUTS = _inputs_statement()
