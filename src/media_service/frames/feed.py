"""The feed a frame polls (Flow 3): the schedule it follows now, that schedule's photos in
this cycle's order with one URL each, and when that changes.

The body holds nothing that moves every rotation (the frame counts photos from
``cycle_started_at`` itself) and signed URLs expire on a fixed grid, so the body, and its
ETag, stay the same for an idle frame until the cycle, the signing period or the content
changes. A built feed is kept (``feed_memo``) and served again while neither happened.
"""

from __future__ import annotations

import functools
import hashlib
import math
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Principal
from media_service.db.base import utcnow
from media_service.db.uow import begin_snapshot
from media_service.frames.feed_inputs import frame_and_inputs
from media_service.frames.feed_memo import FeedInputs, KeptFeed
from media_service.frames.models import (
    Frame,
    Orientation,
    RotationSchedule,
)
from media_service.frames.ordering import position_at
from media_service.frames.photos import PhotoRow
from media_service.frames.schedules import EPOCH, NowShowing, ScheduleService
from media_service.frames.schemas import Feed
from media_service.frames.service import FrameService
from media_service.ids import is_valid_id
from media_service.imaging.specs import Fit
from media_service.media.signing import UrlSigner
from media_service.preprocessing.params import RenditionParams
from media_service.preprocessing.service import RENDITION_PATH, rendition_query
from media_service.state import ServiceState

MAX_FEED_ITEMS = 500


class FeedService:
    """Builds a frame's feed inside the request's unit of work, which must not have run a
    statement yet: :meth:`feed` begins it as one read-only snapshot (``begin_snapshot``),
    so the fingerprint read first describes every row the build reads after it."""

    def __init__(self, session: AsyncSession, state: ServiceState) -> None:
        self.session = session
        self.state = state
        self.frames = FrameService(session, state)
        self.schedules = ScheduleService(session, state)

    async def feed(
        self, principal: Principal, frame_id: str, at: datetime, *, preview: bool = False
    ) -> tuple[bytes, str]:
        """The frame's feed at ``at`` as JSON, and its ETag (the hash of those bytes:
        serialised once, for both). Unless it is a ``preview`` (another time than now), a
        feed built earlier from the same rows is served again while still valid."""
        await begin_snapshot(self.session)
        if preview or not self.state.feeds.budget:
            frame = await self.frames.readable(principal, frame_id)
            self.frames.seen(principal, frame)
            return (await self._built(frame, at)).body_and_etag
        frame, inputs = await self._frame_and_inputs(principal, frame_id)
        self.frames.seen(principal, frame)
        kept = self.state.feeds.get(frame.frame_id, inputs, at)
        if kept is not None:
            return kept.body, kept.etag
        built = await self._built(frame, at)  # from the snapshot the fingerprint describes
        self.state.feeds.put(
            frame.frame_id, KeptFeed(inputs, at, built.valid_until, built.body, built.etag)
        )
        return built.body_and_etag

    async def _frame_and_inputs(
        self, principal: Principal, frame_id: str
    ) -> tuple[Frame, FeedInputs]:
        found = None
        if is_valid_id(frame_id, "frame"):  # else it never reaches SQL
            found = await frame_and_inputs(self.session, frame_id)
        frame = self.frames.readable_of(principal, frame_id, None if found is None else found[0])
        assert found is not None  # readable_of raised otherwise
        return frame, found[1]

    async def _built(self, frame: Frame, at: datetime) -> _Built:
        period = self.state.settings.signed_url_ttl_seconds
        expires = _expires(utcnow(), period, _signing_offset(frame.frame_id, period))
        showing = await self.schedules.now_showing(frame, at)
        feed, items = await self._build(frame, showing, expires)
        body = _feed_json(feed, items)
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        signing_ends = datetime.fromtimestamp(expires - period, tz=UTC)
        return _Built(body, etag, _valid_until(frame, showing, feed, signing_ends))

    async def _build(
        self, frame: Frame, showing: NowShowing, expires: int
    ) -> tuple[Feed, list[FeedItemJson]]:
        """The feed's fields, and its items apart (see :func:`_feed_json`)."""
        schedule, screen = showing.schedule, screen_size(frame)
        if schedule is None:
            return Feed(frame_id=frame.frame_id, state="SLEEP", schedule_id=None,
                        playlist_id=None, rotation_interval=None, transition=None,
                        transition_duration=None, next_change_at=showing.state.until,
                        cycle=None, cycle_started_at=None, cycle_ends_at=None,
                        screen=_screen(screen), items=[]), []  # fmt: skip
        rows = showing.photos[:MAX_FEED_ITEMS]
        interval = schedule.rotation_interval
        started = _cycle_start(showing, interval)
        playlist = None
        if schedule.playlist_id is not None:
            playlist = await self.schedules.playlist(schedule.playlist_id)
        feed = Feed(
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
            items=[],
        )
        return feed, [self._item(row, screen, expires) for row in rows]

    def _item(self, row: PhotoRow, screen: tuple[int, int], expires: int) -> FeedItemJson:
        cached_url = row.cached_copy_url
        if cached_url is not None:
            return feed_item(row.photo_id, row.version_id, cached_url, cached=True)
        base = (self.state.settings.public_url or "").rstrip("/")
        url = _signed_rendition_url(self.state.signer, base, row.photo_id, screen, expires)
        return feed_item(row.photo_id, row.version_id, url, cached=False)


FeedItemJson = dict[str, str | bool | None]


def feed_item(photo_id: str, version_id: str | None, url: str, *, cached: bool) -> FeedItemJson:
    """A :class:`FeedItem` as the JSON object it dumps to (the same keys in the same order)."""
    return {"photo_id": photo_id, "version_id": version_id, "url": url, "cached": cached}


def _feed_json(feed: Feed, items: list[FeedItemJson]) -> bytes:
    """The feed's JSON: its fields dumped by pydantic, its items (up to 500) as plain dicts
    appended as the last field, as ``items`` is. Building and dumping the items as models
    was a seventh of a build (py-spy)."""
    return orjson.dumps({**feed.model_dump(mode="json", exclude={"items"}), "items": items})


@dataclass(frozen=True, slots=True)
class _Built:
    body: bytes
    etag: str
    valid_until: datetime

    @property
    def body_and_etag(self) -> tuple[bytes, str]:
        return self.body, self.etag


def _valid_until(frame: Frame, showing: NowShowing, feed: Feed, signing_ends: datetime) -> datetime:
    """The first instant at which time alone changes the feed: the next schedule change,
    the cycle's end, the frame's next signing period, the end of the rotation slot of an
    active schedule with no photos, or local midnight with "on this day" memories (or
    when no change was found within the horizon of a schedule that is not CONTINUOUS)."""
    ends = [feed.next_change_at, feed.cycle_ends_at, signing_ends]
    if feed.cycle is not None and feed.cycle_ends_at is None:  # active, no photos
        ends.append(_next_slot(showing.at, showing.schedule))
    if showing.dated or (feed.next_change_at is None and showing.timed):
        local = showing.at.astimezone(ZoneInfo(frame.time_zone))
        ends.append(datetime.combine(local.date() + timedelta(days=1), time(), local.tzinfo))
    return min(instant for instant in ends if instant is not None)


def _next_slot(at: datetime, schedule: RotationSchedule | None) -> datetime:
    """When the rotation moves on (an empty cycle is one slot long)."""
    interval = 1 if schedule is None else schedule.rotation_interval
    position = position_at(at, EPOCH, interval, 0)
    return position.next_photo_at


def _expires(now: datetime, period: int, offset: int) -> int:
    """When the feed's URLs signed at ``now`` expire: on a grid of ``period`` seconds
    shifted by ``offset``, between one and two periods later. Every request from one grid
    line to the next gets the same URLs (and ETag), and each URL is signed once per
    process (signing was a sixth of a feed's CPU). Each frame's grid has its own offset,
    so frames do not all rebuild their feeds at the same instant."""
    return math.ceil((now.timestamp() - offset + period) / period) * period + offset


def _signing_offset(frame_id: str, period: int) -> int:
    return zlib.crc32(frame_id.encode()) % period


@functools.lru_cache(maxsize=65536)
def _signed_rendition_url(
    signer: UrlSigner, base: str, photo_id: str, screen: tuple[int, int], expires: int
) -> str:
    path = f"{RENDITION_PATH.format(file_id=photo_id)}?{_screen_query(screen)}"
    return f"{base}{path}&{signer.sign_query('GET', path, expires)}"


@functools.lru_cache(maxsize=256)
def _screen_query(screen: tuple[int, int]) -> str:
    """The rendition query of a JPEG fitted to ``screen`` (the same for every photo)."""
    return rendition_query(RenditionParams(screen[0], screen[1], Fit.CONTAIN, "jpeg", None), None)


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
