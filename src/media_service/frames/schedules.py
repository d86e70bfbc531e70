"""Rotation schedules (spec 003 §4): create, read, change and delete them, and tell which
one a frame follows now and which photos it shows. Works inside the request's unit of
work and never commits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Principal
from media_service.db.base import utcnow
from media_service.errors import NotFound, Unprocessable
from media_service.frames.models import Frame, RotationSchedule
from media_service.frames.occasions import MonthDay, Occasion, OccasionKind
from media_service.frames.ordering import Candidate, cycle_order, position_at
from media_service.frames.photos import PhotoRow, PlaylistPhotos
from media_service.frames.repository import FrameRepository
from media_service.frames.rotation import FrameState, Rule, ScheduleType, evaluate, parse_hhmm
from media_service.frames.schemas import (
    FrameSchedules,
    ScheduleCreate,
    ScheduleFields,
    ScheduleOut,
    ScheduleUpdate,
)
from media_service.frames.service import FrameService
from media_service.ids import is_valid_id, new_id
from media_service.media.service import MediaService
from media_service.playlists.models import Playlist
from media_service.playlists.policy import owner_of
from media_service.playlists.service import PlaylistService
from media_service.state import ServiceState

MAX_SCHEDULES_PER_FRAME = 100
# Rotations count from a fixed instant: every replica agrees on the photo on show.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class NowShowing:
    """What a frame shows at ``at``: the state, the schedule it follows (if any) and that
    schedule's photos in this cycle's order, starting ``index`` into it. ``dated``: one of
    the frame's schedules shows "on this day" memories, so the local date matters too;
    ``timed``: one is not CONTINUOUS (its changes are looked for a horizon ahead of the
    local date)."""

    frame: Frame
    at: datetime
    state: FrameState
    schedule: RotationSchedule | None
    photos: list[PhotoRow]
    cycle: int
    index: int
    next_photo_at: datetime | None
    dated: bool = False
    timed: bool = False


class ScheduleService:
    """Rotation schedules for the API and the feed."""

    def __init__(self, session: AsyncSession, state: ServiceState) -> None:
        self.session = session
        self.state = state
        self.repository = FrameRepository(session)
        self.frames = FrameService(session, state)
        self.playlists = PlaylistPhotos(session)
        # Held for the unit of work: the session's identity map keeps rows only weakly, so a
        # playlist read for its photos was read again for its transition, and a memories
        # schedule read its photos twice (to evaluate it, then to show them).
        self._playlists: dict[str, Playlist | None] = {}
        self._rows: dict[tuple[str, str], list[PhotoRow]] = {}

    # -- read ------------------------------------------------------------------------------------

    async def for_frame(self, principal: Principal, frame_id: str, at: datetime) -> FrameSchedules:
        """A frame's schedules and which one applies at ``at``."""
        frame = await self.frames.readable(principal, frame_id)
        schedules = list(await self.repository.schedules(frame.frame_id))
        state = await self.evaluate(frame, schedules, at)
        return FrameSchedules(
            frame_id=frame.frame_id,
            time_zone=frame.time_zone,
            active_schedule_id=state.schedule_id,
            next_change_at=state.until,
            schedules=[ScheduleOut.model_validate(row) for row in schedules],
        )

    async def readable(self, principal: Principal, schedule_id: str) -> RotationSchedule:
        schedule = await self._find(schedule_id)
        if schedule is None:
            raise NotFound(f"no schedule {schedule_id[:60]!r}")
        try:
            await self.frames.readable(principal, schedule.frame_id)
        except NotFound:
            raise NotFound(f"no schedule {schedule_id[:60]!r}") from None
        return schedule

    # -- change ----------------------------------------------------------------------------------

    async def create(self, principal: Principal, body: ScheduleCreate) -> RotationSchedule:
        """A new schedule for a frame the caller may change, of a playlist they may read."""
        frame = await _as_field(self.frames.writable(principal, body.frame_id), "frame_id")
        await self.repository.lock(frame.frame_id)
        if len(await self.repository.schedules(frame.frame_id)) >= MAX_SCHEDULES_PER_FRAME:
            raise Unprocessable(f"a frame has at most {MAX_SCHEDULES_PER_FRAME} schedules")
        await self._check_playlist(principal, body.playlist_id)
        now = utcnow()
        schedule = RotationSchedule(
            schedule_id=new_id("sch"),
            user_id=principal.subject,
            organization_id=frame.organization_id,
            frame_id=frame.frame_id,
            created_at=now,
            updated_at=now,
            **_stored(body),
        )
        await self.repository.add(schedule)
        return schedule

    async def update(
        self, principal: Principal, schedule_id: str, body: ScheduleUpdate
    ) -> RotationSchedule:
        """Change the fields given; the result must be a valid schedule (422 otherwise)."""
        schedule = await self.readable(principal, schedule_id)
        await self.frames.writable(principal, schedule.frame_id)
        current = ScheduleFields.model_validate(_fields_of(schedule))
        merged = {**current.model_dump(), **body.model_dump(exclude_unset=True)}
        try:
            fields = ScheduleFields.model_validate(merged)
        except ValidationError as exc:
            raise _invalid_merge(exc) from None
        if fields.playlist_id != schedule.playlist_id:
            await self._check_playlist(principal, fields.playlist_id)
        for name, value in _stored(fields).items():
            setattr(schedule, name, value)
        schedule.updated_at = utcnow()
        await self.session.flush()
        return schedule

    async def delete(self, principal: Principal, schedule_id: str) -> None:
        schedule = await self.readable(principal, schedule_id)
        await self.frames.writable(principal, schedule.frame_id)
        await self.repository.delete(schedule)

    # -- what a frame shows ----------------------------------------------------------------------

    async def evaluate(
        self, frame: Frame, schedules: list[RotationSchedule], at: datetime
    ) -> FrameState:
        """Which of ``schedules`` the frame follows at ``at``, and until when."""
        zone = ZoneInfo(frame.time_zone)
        rules = [await self._rule(row, at.astimezone(zone).year) for row in schedules]
        return evaluate([rule for rule in rules if rule is not None], at, zone)

    async def now_showing(self, frame: Frame, at: datetime) -> NowShowing:
        """The frame's state at ``at`` with the photos of the schedule it follows."""
        schedules = list(await self.repository.schedules(frame.frame_id))
        state = await self.evaluate(frame, schedules, at)
        chosen = next((s for s in schedules if s.schedule_id == state.schedule_id), None)
        if chosen is None:
            showing = NowShowing(frame, at, state, None, [], 0, 0, None)
        else:
            showing = await self._showing(frame, at, state, chosen)
        dated = any(_has_memories(row) for row in schedules)
        timed = any(row.schedule_type is not ScheduleType.CONTINUOUS for row in schedules)
        return replace(showing, dated=dated, timed=timed)

    async def photos(self, principal: Principal, schedule_id: str, at: datetime) -> NowShowing:
        """A schedule's photos in the order of the cycle running at ``at`` (whether or not
        the schedule is the one its frame follows then)."""
        schedule = await self.readable(principal, schedule_id)
        frame = await self.frames.readable(principal, schedule.frame_id)
        state = await self.evaluate(frame, [schedule], at)
        return await self._showing(frame, at, state, schedule)

    async def get_current_photos_for_frame(self, frame: Frame, at: datetime) -> list[str]:
        """Spec 003 §4: the photo ids the frame shows now, in order (empty while asleep)."""
        showing = await self.now_showing(frame, at)
        return [row.photo_id for row in showing.photos]

    async def _showing(
        self, frame: Frame, at: datetime, state: FrameState, schedule: RotationSchedule
    ) -> NowShowing:
        rows = await self._candidates(frame, schedule, at)
        position = position_at(at, EPOCH, schedule.rotation_interval, len(rows))
        order = cycle_order(
            [Candidate(r.photo_id, r.position, r.added_at) for r in rows],
            seed=schedule.schedule_id,
            cycle=position.cycle,
            shuffle=schedule.shuffle,
            recent_first=schedule.recent_first,
            cycle_started_at=position.cycle_started_at,
        )
        by_id = {row.photo_id: row for row in rows}
        photos = [by_id[photo_id] for photo_id in order]
        next_photo = position.next_photo_at if photos else None
        return NowShowing(frame, at, state, schedule, photos, position.cycle, position.index,
                          next_photo)  # fmt: skip

    async def _candidates(
        self, frame: Frame, schedule: RotationSchedule, at: datetime
    ) -> list[PhotoRow]:
        rows = await self._playlist_rows(schedule)
        if not _has_memories(schedule):
            return rows
        today = at.astimezone(ZoneInfo(frame.time_zone)).date()
        memories = [row for row in rows if _memory_of(row, today)]
        return memories or rows  # "on this day" shows that day's photos when it has any

    async def playlist(self, playlist_id: str) -> Playlist | None:
        """The playlist a schedule shows, read once per unit of work."""
        if playlist_id not in self._playlists:
            self._playlists[playlist_id] = await self.playlists.playlist(playlist_id)
        return self._playlists[playlist_id]

    async def _playlist_rows(self, schedule: RotationSchedule) -> list[PhotoRow]:
        """The photos ``schedule`` shows, each with its frame's cached copy, if any."""
        playlist_id = schedule.playlist_id
        if playlist_id is None or not is_valid_id(playlist_id, "pl"):
            return []
        key = (playlist_id, schedule.frame_id)
        if key not in self._rows:
            self._rows[key] = await self._read_playlist_rows(playlist_id, schedule.frame_id)
        return self._rows[key]

    async def _read_playlist_rows(self, playlist_id: str, frame_id: str) -> list[PhotoRow]:
        playlist = await self.playlist(playlist_id)
        if playlist is None:
            return []  # deleted since: nothing to show
        media = MediaService(self.session, self.state)
        visibility = media.read_visibility(owner_of(playlist))
        return await self.playlists.photos(playlist_id, visibility, frame_id)

    async def _rule(self, schedule: RotationSchedule, year: int) -> Rule | None:
        if not schedule.is_active:
            return None
        memories: frozenset[MonthDay] = frozenset()
        if _has_memories(schedule):
            rows = await self._playlist_rows(schedule)
            memories = frozenset(
                (row.taken_at.month, row.taken_at.day)
                for row in rows
                if row.taken_at is not None and row.taken_at.year < year
            )
        return to_rule(schedule, memories)

    # -- helpers ---------------------------------------------------------------------------------

    async def _check_playlist(self, principal: Principal, playlist_id: str | None) -> None:
        if playlist_id is not None:
            await _as_field(PlaylistService(self.session, self.state).get(principal, playlist_id),
                            "playlist_id")  # fmt: skip

    async def _find(self, schedule_id: str) -> RotationSchedule | None:
        if not is_valid_id(schedule_id, "sch"):
            return None
        return await self.repository.schedule(schedule_id)


def to_rule(schedule: RotationSchedule, memories: frozenset[MonthDay] = frozenset()) -> Rule:
    """What evaluation needs of a stored schedule."""
    start = None if schedule.start_time is None else parse_hhmm(schedule.start_time)
    end = None if schedule.end_time is None else parse_hhmm(schedule.end_time)
    return Rule(
        schedule_id=schedule.schedule_id,
        schedule_type=schedule.schedule_type,
        priority=schedule.priority,
        start=start,
        end=end,
        days=frozenset(schedule.days_of_week or ()),
        occasions=tuple(_occasion(item) for item in schedule.occasions or ()),
        memories=memories,
    )


def _occasion(document: dict[str, Any]) -> Occasion:
    kind = OccasionKind(document["kind"])
    return Occasion(
        kind=kind,
        start_date=_date(document.get("start_date")),
        end_date=_date(document.get("end_date")),
        month=document.get("month"),
        day=document.get("day"),
        country=document.get("country"),
        subdivision=document.get("subdivision"),
    )


def _date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _has_memories(schedule: RotationSchedule) -> bool:
    return any(item.get("kind") == OccasionKind.ON_THIS_DAY for item in schedule.occasions or ())


def _memory_of(row: PhotoRow, today: date) -> bool:
    taken = row.taken_at
    return (
        taken is not None
        and taken.year < today.year
        and (taken.month, taken.day)
        == (
            today.month,
            today.day,
        )
    )


def _stored(fields: ScheduleFields) -> dict[str, Any]:
    """The columns of a schedule from its checked fields."""
    document = fields.model_dump(mode="json", exclude={"frame_id"})
    document["days_of_week"] = sorted(fields.days_of_week)
    return document


def _fields_of(schedule: RotationSchedule) -> dict[str, Any]:
    return {name: getattr(schedule, name) for name in ScheduleFields.model_fields}


async def _as_field(awaitable: Any, name: str) -> Any:
    """A referenced object the caller cannot use is a bad field (422), not a missing page."""
    try:
        return await awaitable
    except NotFound as exc:
        raise Unprocessable(
            exc.detail, errors=[{"loc": ["body", name], "msg": exc.detail}]
        ) from None


def _invalid_merge(exc: ValidationError) -> Unprocessable:
    errors = [
        {"loc": ["body", *map(str, error["loc"])], "msg": error["msg"]}
        for error in exc.errors(include_url=False, include_context=False)
    ]
    return Unprocessable("the schedule would not be valid", errors=errors)
