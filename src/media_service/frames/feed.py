"""The feed a frame polls (Flow 3): the schedule it follows now, that schedule's photos in
this cycle's order with one URL each, and when that changes.

The body holds nothing that moves every rotation (the frame counts photos from
``cycle_started_at`` itself) and signed URLs expire on a fixed grid, so the body, and its
ETag, stay the same for an idle frame until the cycle, the signing period or the content
changes.
"""

from __future__ import annotations

import functools
import hashlib
import math
from datetime import datetime, timedelta

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Principal
from media_service.db.base import utcnow
from media_service.frames.models import CacheStatus, Frame, Orientation, PhotoCache
from media_service.frames.photos import PhotoRow
from media_service.frames.schedules import NowShowing, ScheduleService
from media_service.frames.schemas import Feed, FeedItem
from media_service.frames.service import FrameService
from media_service.imaging.specs import Fit
from media_service.media.service import signed_path_until
from media_service.media.signing import UrlSigner
from media_service.playlists.models import Playlist
from media_service.preprocessing.params import RenditionParams
from media_service.preprocessing.service import RENDITION_PATH, rendition_query
from media_service.state import ServiceState

MAX_FEED_ITEMS = 500


class FeedService:
    """Builds a frame's feed inside the request's unit of work."""

    def __init__(self, session: AsyncSession, state: ServiceState) -> None:
        self.session = session
        self.state = state
        self.frames = FrameService(session, state)
        self.schedules = ScheduleService(session, state)

    async def feed(self, principal: Principal, frame_id: str, at: datetime) -> tuple[bytes, str]:
        """The frame's feed at ``at`` as JSON, and its ETag (the hash of those bytes:
        serialised once, for both)."""
        frame = await self.frames.readable(principal, frame_id)
        await self.frames.seen(principal, frame)
        showing = await self.schedules.now_showing(frame, at)
        feed = await self._build(frame, showing, at)
        body = orjson.dumps(feed.model_dump(mode="json"))
        return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'

    async def _build(self, frame: Frame, showing: NowShowing, at: datetime) -> Feed:
        schedule, screen = showing.schedule, screen_size(frame)
        if schedule is None:
            return Feed(frame_id=frame.frame_id, state="SLEEP", schedule_id=None,
                        playlist_id=None, rotation_interval=None, transition=None,
                        transition_duration=None, next_change_at=showing.state.until,
                        cycle=None, cycle_started_at=None, cycle_ends_at=None,
                        screen=_screen(screen), items=[])  # fmt: skip
        rows = showing.photos[:MAX_FEED_ITEMS]
        cached = await self._cached(frame.frame_id)
        interval = schedule.rotation_interval
        started = _cycle_start(showing, interval)
        playlist = None
        if schedule.playlist_id is not None:
            playlist = await self.session.get(Playlist, schedule.playlist_id)
        return Feed(
            frame_id=frame.frame_id,
            state="ACTIVE",
            schedule_id=schedule.schedule_id,
            playlist_id=schedule.playlist_id,
            rotation_interval=interval,
            transition=schedule.transition,
            transition_duration=None if playlist is None else playlist.transition_duration,
            next_change_at=showing.state.until,
            cycle=showing.cycle,
            cycle_started_at=started if rows else None,
            cycle_ends_at=started + timedelta(seconds=interval * len(showing.photos))
            if rows
            else None,
            screen=_screen(screen),
            items=[self._item(row, cached, screen, at) for row in rows],
        )

    def _item(
        self,
        row: PhotoRow,
        cached: dict[str, tuple[str | None, str]],
        screen: tuple[int, int],
        at: datetime,
    ) -> FeedItem:
        entry = cached.get(row.photo_id)
        if entry is not None and entry[0] == row.version_id:
            return FeedItem(photo_id=row.photo_id, version_id=row.version_id, url=entry[1],
                            cached=True)  # fmt: skip
        url = self.rendition_url(row.photo_id, screen, utcnow())
        return FeedItem(photo_id=row.photo_id, version_id=row.version_id, url=url, cached=False)

    def rendition_url(self, photo_id: str, screen: tuple[int, int], now: datetime) -> str:
        """A signed rendition URL of the photo's current version, fitted to the screen. It
        expires on a fixed grid (between one and two signed-URL lifetimes from ``now``), so
        every request in one period gets the same URL (and it is signed once per process:
        signing was a sixth of a feed's CPU)."""
        period = self.state.settings.signed_url_ttl_seconds
        expires = math.ceil((now.timestamp() + period) / period) * period
        base = (self.state.settings.public_url or "").rstrip("/")
        return _signed_rendition_url(self.state.signer, base, photo_id, screen, expires)

    async def _cached(self, frame_id: str) -> dict[str, tuple[str | None, str]]:
        statement = select(PhotoCache.photo_id, PhotoCache.version_id, PhotoCache.cached_url).where(
            PhotoCache.frame_id == frame_id, PhotoCache.cache_status == CacheStatus.CACHED
        )
        rows = await self.session.execute(statement)
        return {photo_id: (version, url) for photo_id, version, url in rows.all() if url}


@functools.lru_cache(maxsize=65536)
def _signed_rendition_url(
    signer: UrlSigner, base: str, photo_id: str, screen: tuple[int, int], expires: int
) -> str:
    params = RenditionParams(screen[0], screen[1], Fit.CONTAIN, "jpeg", None)
    path = f"{RENDITION_PATH.format(file_id=photo_id)}?{rendition_query(params, None)}"
    return base + signed_path_until(signer, path, expires).path_and_query


def screen_size(frame: Frame) -> tuple[int, int]:
    """The frame's (width, height) as mounted."""
    long_side = max(frame.screen_width, frame.screen_height)
    short_side = min(frame.screen_width, frame.screen_height)
    if frame.orientation is Orientation.PORTRAIT:
        return short_side, long_side
    return long_side, short_side


def _screen(size: tuple[int, int]) -> dict[str, int]:
    return {"width": size[0], "height": size[1]}


def _cycle_start(showing: NowShowing, interval: int) -> datetime:
    assert showing.next_photo_at is not None or not showing.photos
    if showing.next_photo_at is None:
        return showing.at
    return showing.next_photo_at - timedelta(seconds=interval * (showing.index + 1))
