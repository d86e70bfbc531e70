"""Which schedule a frame follows at an instant, and until when. Pure: no I/O, no clock.

Times are wall-clock times in the frame's time zone. A window ``[start, end)`` with
``start > end`` crosses midnight and belongs to the day it starts on (a Friday 22:00-06:00
window runs into Saturday morning). On a daylight-saving day the wall clock decides: a
window starting at 02:30 on a day that skips 02:00-03:00 starts at 03:00, and when an
hour repeats, a window is on whenever the clock shows a time inside it (both times).

Of the schedules active at an instant, the highest ``priority`` wins, then the most
specific (events over weekly windows over continuous; fewer weekdays; shorter windows),
then the smallest id, so the answer is the same on every replica.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from media_service.frames.occasions import MonthDay, Occasion

DAY_MINUTES = 24 * 60
HORIZON_DAYS = 400  # far enough to see next year's birthday
_MAX_CLOCK_JUMP = timedelta(hours=26)


class ScheduleType(enum.StrEnum):
    CONTINUOUS = "CONTINUOUS"
    TIME_BASED = "TIME_BASED"
    EVENT_BASED = "EVENT_BASED"


_TYPE_RANK = {ScheduleType.CONTINUOUS: 0, ScheduleType.TIME_BASED: 1, ScheduleType.EVENT_BASED: 2}


@dataclass(frozen=True, slots=True)
class Rule:
    """What evaluation needs of one active schedule. ``start``/``end`` are minutes after
    local midnight (both ``None``: the whole day); ``days`` are weekdays, 0 = Monday (empty:
    every day); ``memories`` are the (month, day) pairs ON_THIS_DAY occasions match."""

    schedule_id: str
    schedule_type: ScheduleType
    priority: int = 0
    start: int | None = None
    end: int | None = None
    days: frozenset[int] = frozenset()
    occasions: tuple[Occasion, ...] = ()
    memories: frozenset[MonthDay] = field(default_factory=frozenset)

    def day_matches(self, on: date) -> bool:
        """Whether a window starting on local date ``on`` counts."""
        if self.days and on.weekday() not in self.days:
            return False
        if self.schedule_type is ScheduleType.EVENT_BASED:
            return any(occasion.matches(on, self.memories) for occasion in self.occasions)
        return True

    def active_at(self, local: datetime) -> bool:
        """Whether the schedule is on at ``local`` (an aware time in the frame's zone)."""
        if self.schedule_type is ScheduleType.CONTINUOUS:
            return True
        today = local.date()
        if self.start is None or self.end is None:
            return self.day_matches(today)
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return self.start <= minute < self.end and self.day_matches(today)
        return (minute >= self.start and self.day_matches(today)) or (
            minute < self.end and self.day_matches(today - timedelta(days=1))
        )

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Larger is more specific."""
        weekdays = len(self.days) or 7
        return (_TYPE_RANK[self.schedule_type], 7 - weekdays, -self.window_minutes)

    @property
    def window_minutes(self) -> int:
        if self.start is None or self.end is None:
            return DAY_MINUTES
        return (self.end - self.start) % DAY_MINUTES

    def boundaries(self) -> tuple[int, ...]:
        """Minutes of a local day at which this schedule may switch on or off."""
        return () if self.start is None or self.end is None else (self.start, self.end)


@dataclass(frozen=True, slots=True)
class FrameState:
    """What a frame does: follow ``schedule_id``, or sleep (``schedule_id`` is ``None``),
    until ``until`` (``None``: no change within the horizon)."""

    schedule_id: str | None
    until: datetime | None

    @property
    def sleeping(self) -> bool:
        return self.schedule_id is None


def winner(rules: Sequence[Rule], at: datetime, zone: tzinfo) -> Rule | None:
    """The schedule a frame follows at ``at``, or ``None`` (asleep)."""
    local = at.astimezone(zone)
    active = [rule for rule in rules if rule.active_at(local)]
    if not active:
        return None
    return min(active, key=lambda r: (-r.priority, _negated(r.specificity), r.schedule_id))


def evaluate(rules: Sequence[Rule], at: datetime, zone: tzinfo) -> FrameState:
    """The frame's state at ``at`` and when it next changes."""
    current = winner(rules, at, zone)
    current_id = None if current is None else current.schedule_id
    return FrameState(current_id, next_change(rules, at, zone, current_id))


def next_change(
    rules: Sequence[Rule], at: datetime, zone: tzinfo, current_id: str | None
) -> datetime | None:
    """The first instant after ``at`` at which a different schedule (or sleep) applies.

    Between two consecutive candidate instants (local midnights, window edges, clock
    changes) nothing can change, so checking each candidate in order finds it exactly.
    """
    if all(rule.schedule_type is ScheduleType.CONTINUOUS for rule in rules):
        return None
    for candidate in candidates(rules, at, zone):
        found = winner(rules, candidate, zone)
        if (None if found is None else found.schedule_id) != current_id:
            return candidate
    return None


def candidates(
    rules: Sequence[Rule], at: datetime, zone: tzinfo, horizon_days: int = HORIZON_DAYS
) -> Iterator[datetime]:
    """Every instant after ``at`` where some schedule's state may flip, in order."""
    minutes = sorted({0, *(m for rule in rules for m in rule.boundaries())})
    first = at.astimezone(zone).date() - timedelta(days=1)
    pending: set[datetime] = set()
    for offset in range(horizon_days + 2):
        on = first + timedelta(days=offset)
        pending.update(u for m in minutes for u in utc_instants(on, m, zone) if u > at)
        pending.update(u for u in clock_changes(on, zone) if u > at)
        # Later days' instants all come after this bound, whatever the zone's clock does
        # (a zone may even skip a whole day), so what is below it is in final order.
        bound = min(utc_instants(on + timedelta(days=1), 0, zone)) - _MAX_CLOCK_JUMP
        ready = sorted(u for u in pending if u < bound)
        pending.difference_update(ready)
        yield from ready
    yield from sorted(pending)


# Both are pure functions of the date and zone that every frame in a zone asks again (a
# cold start builds a thousand feeds): remembered.
@functools.lru_cache(maxsize=8192)
def utc_instants(on: date, minute: int, zone: tzinfo) -> frozenset[datetime]:
    """The UTC instants at which the wall clock shows ``minute`` on ``on`` (two in a
    repeated hour; in a skipped hour, instants that are filtered out later as no change)."""
    wall = datetime.combine(on, time(minute // 60, minute % 60), tzinfo=zone)
    return frozenset(wall.replace(fold=fold).astimezone(UTC) for fold in (0, 1))


@functools.lru_cache(maxsize=2048)
def clock_changes(on: date, zone: tzinfo) -> tuple[datetime, ...]:
    """The instant the zone's UTC offset changes on local date ``on``, if it does."""
    low = datetime.combine(on, time(0), tzinfo=zone).astimezone(UTC)
    high = datetime.combine(on + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    if low.astimezone(zone).utcoffset() == high.astimezone(zone).utcoffset():
        return ()
    before = low.astimezone(zone).utcoffset()
    lo, hi = int(low.timestamp()), int(high.timestamp())
    while hi - lo > 1:  # the first second with the new offset
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return (datetime.fromtimestamp(hi, UTC),)


def parse_hhmm(value: str) -> int:
    """``"22:30"`` → 1350 minutes; ``ValueError`` for anything else."""
    hours, sep, minutes = value.partition(":")
    if not (sep and len(hours) == 2 and len(minutes) == 2 and (hours + minutes).isdigit()):
        raise ValueError("must be HH:MM")
    h, m = int(hours), int(minutes)
    if h > 23 or m > 59:
        raise ValueError("must be a time of day between 00:00 and 23:59")
    return h * 60 + m


def _negated(values: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(-value for value in values)
