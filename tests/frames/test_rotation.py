"""Schedule evaluation as pure functions: a minute-by-minute reference over whole weeks
(DST weeks in Europe/Berlin and America/New_York included), next_change_at checked against
it, midnight-crossing windows, events, and priority then specificity."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media_service.frames.occasions import Occasion, OccasionKind
from media_service.frames.rotation import Rule, ScheduleType, evaluate, parse_hhmm, winner

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
MINUTE = timedelta(minutes=1)
# Weeks that contain a clock change: spring forward and fall back, both zones.
DST_WEEKS = [
    (BERLIN, datetime(2025, 3, 27, tzinfo=UTC)),
    (BERLIN, datetime(2025, 10, 23, tzinfo=UTC)),
    (NEW_YORK, datetime(2025, 3, 6, tzinfo=UTC)),
    (NEW_YORK, datetime(2025, 10, 30, tzinfo=UTC)),
]


def reference_active(rule: Rule, local: datetime) -> bool:
    """The spec's words, written independently: the wall clock in the frame's zone."""
    if rule.schedule_type is ScheduleType.CONTINUOUS:
        return True
    minute = local.hour * 60 + local.minute

    def day_ok(day: date) -> bool:
        weekday_ok = not rule.days or day.weekday() in rule.days
        if rule.schedule_type is ScheduleType.EVENT_BASED:
            return weekday_ok and any(o.matches(day, rule.memories) for o in rule.occasions)
        return weekday_ok

    if rule.start is None or rule.end is None:
        return day_ok(local.date())
    if rule.start < rule.end:
        return rule.start <= minute < rule.end and day_ok(local.date())
    yesterday = local.date() - timedelta(days=1)
    return (minute >= rule.start and day_ok(local.date())) or (
        minute < rule.end and day_ok(yesterday)
    )


def reference_winner(rules: list[Rule], at: datetime, zone: ZoneInfo) -> str | None:
    local = at.astimezone(zone)
    active = [r for r in rules if reference_active(r, local)]
    if not active:
        return None
    best = max(r.priority for r in active)
    top = [r for r in active if r.priority == best]
    most = max(r.specificity for r in top)
    return min(r.schedule_id for r in top if r.specificity == most)


def timed(sid: str, start: str, end: str, days: set[int] = frozenset(), prio: int = 0) -> Rule:  # type: ignore[assignment]
    return Rule(
        sid, ScheduleType.TIME_BASED, prio, parse_hhmm(start), parse_hhmm(end), frozenset(days)
    )


SAMPLE_RULES = [
    Rule("sch_a_continuous", ScheduleType.CONTINUOUS),
    timed("sch_b_overnight", "22:00", "06:30", {0, 1, 2, 3, 4}),
    timed("sch_c_dst_hour", "02:15", "03:45", set(), prio=1),
    timed("sch_d_weekend", "09:00", "12:00", {5, 6}),
    Rule(
        "sch_e_holiday",
        ScheduleType.EVENT_BASED,
        2,
        occasions=(Occasion(OccasionKind.DATE_RANGE, date(2025, 3, 30), date(2025, 3, 30)),),
    ),
]


@pytest.mark.parametrize(("zone", "week"), DST_WEEKS, ids=lambda v: str(v)[:10])
@pytest.mark.parametrize("rules", [SAMPLE_RULES, SAMPLE_RULES[1:]], ids=["with-cont", "gaps"])
def test_every_minute_of_a_dst_week_has_exactly_one_state(
    zone: ZoneInfo, week: datetime, rules: list[Rule]
) -> None:
    at = week
    state = evaluate(rules, at, zone)
    changes = 0
    while at < week + timedelta(days=7):
        expected = reference_winner(rules, at, zone)
        assert winner(rules, at, zone) is None or expected is not None
        found = winner(rules, at, zone)
        assert (found.schedule_id if found else None) == expected, at
        if state.until is not None and at >= state.until:
            # The state changes exactly at next_change_at, not a minute sooner or later.
            assert at == state.until
            assert state.schedule_id != expected
            state = evaluate(rules, at, zone)
            changes += 1
        else:
            assert state.schedule_id == expected, at
        at += MINUTE
    assert changes > 0


def test_spring_forward_window_starts_when_the_clock_reaches_it() -> None:
    rule = timed("sch_x", "02:30", "04:00")
    sunday_before = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)  # 01:30 CET
    state = evaluate([rule], sunday_before, BERLIN)
    assert state.sleeping
    # 02:00 CET does not exist: the clock reads 03:00 CEST at 01:00 UTC.
    assert state.until == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)
    assert evaluate([rule], state.until, BERLIN).until == datetime(2025, 3, 30, 2, tzinfo=UTC)


def test_fall_back_window_follows_the_repeated_hour() -> None:
    rule = timed("sch_x", "01:30", "03:00")
    start = datetime(2025, 11, 2, 5, 30, tzinfo=UTC)  # 01:30 EDT
    state = evaluate([rule], start, NEW_YORK)
    assert state.schedule_id == "sch_x"
    # At 02:00 EDT the clock goes back to 01:00 EST: off until it reads 01:30 again.
    assert state.until == datetime(2025, 11, 2, 6, 0, tzinfo=UTC)
    paused = evaluate([rule], state.until, NEW_YORK)
    assert paused.sleeping and paused.until == datetime(2025, 11, 2, 6, 30, tzinfo=UTC)
    resumed = evaluate([rule], paused.until, NEW_YORK)
    assert resumed.schedule_id == "sch_x"
    assert resumed.until == datetime(2025, 11, 2, 8, 0, tzinfo=UTC)  # 03:00 EST


def test_overnight_window_belongs_to_the_day_it_starts() -> None:
    friday_only = timed("sch_fri", "22:00", "06:00", {4})
    saturday_3am = datetime(2025, 6, 14, 1, 0, tzinfo=UTC)  # 03:00 CEST, Saturday
    sunday_3am = saturday_3am + timedelta(days=1)
    assert evaluate([friday_only], saturday_3am, BERLIN).schedule_id == "sch_fri"
    assert evaluate([friday_only], sunday_3am, BERLIN).sleeping
    until = evaluate([friday_only], sunday_3am, BERLIN).until
    assert until is not None and until.astimezone(BERLIN).weekday() == 4
    assert until.astimezone(BERLIN).hour == 22


def test_priority_beats_specificity_which_beats_id() -> None:
    at = datetime(2025, 6, 11, 10, 0, tzinfo=UTC)
    broad_high = timed("sch_z", "00:00", "23:59", prio=5)
    narrow_low = timed("sch_a", "11:00", "13:00", {2})
    assert evaluate([broad_high, narrow_low], at, BERLIN).schedule_id == "sch_z"
    broad_low = timed("sch_b", "00:00", "23:59")
    assert evaluate([broad_low, narrow_low], at, BERLIN).schedule_id == "sch_a"
    twin = timed("sch_0", "11:00", "13:00", {2})
    assert evaluate([twin, narrow_low], at, BERLIN).schedule_id == "sch_0"


def test_events_yearly_holidays_and_memories() -> None:
    birthday = Occasion(OccasionKind.YEARLY, month=2, day=29)
    holidays = Occasion(OccasionKind.HOLIDAYS, country="US")
    memories = Occasion(OccasionKind.ON_THIS_DAY)
    rule = Rule(
        "sch_ev",
        ScheduleType.EVENT_BASED,
        occasions=(birthday, holidays, memories),
        memories=frozenset({(8, 15)}),
    )
    noon = {
        d: datetime.combine(d, datetime.min.time(), NEW_YORK) + timedelta(hours=12)
        for d in (date(2025, 2, 28), date(2025, 7, 4), date(2025, 8, 15), date(2025, 8, 16))
    }
    assert evaluate([rule], noon[date(2025, 2, 28)], NEW_YORK).schedule_id == "sch_ev"
    assert evaluate([rule], noon[date(2025, 7, 4)], NEW_YORK).schedule_id == "sch_ev"
    assert evaluate([rule], noon[date(2025, 8, 15)], NEW_YORK).schedule_id == "sch_ev"
    state = evaluate([rule], noon[date(2025, 8, 16)], NEW_YORK)
    assert state.sleeping
    # Next: Labor Day, Monday 1 September 2025, at local midnight.
    assert state.until == datetime(2025, 9, 1, tzinfo=NEW_YORK)


def test_continuous_only_never_changes() -> None:
    state = evaluate([Rule("sch_c", ScheduleType.CONTINUOUS)], datetime.now(UTC), BERLIN)
    assert state.schedule_id == "sch_c" and state.until is None
    assert evaluate([], datetime.now(UTC), BERLIN) == evaluate([], datetime.now(UTC), BERLIN)
    assert evaluate([], datetime.now(UTC), BERLIN).sleeping


@pytest.mark.parametrize("value", ["24:00", "7:00", "07:60", "ab:cd", "07-00", "", "07:000"])
def test_bad_times_are_rejected(value: str) -> None:
    with pytest.raises(ValueError, match=r"HH:MM|time of day"):
        parse_hhmm(value)


# -- properties --------------------------------------------------------------------------


minutes = st.integers(0, 24 * 60 - 1)
weekdays = st.frozensets(st.integers(0, 6), max_size=7)


@st.composite
def rules(draw: st.DrawFn) -> list[Rule]:
    found = []
    for n in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(list(ScheduleType)))
        sid, prio = f"sch_{n}", draw(st.integers(0, 2))
        if kind is ScheduleType.CONTINUOUS:
            found.append(Rule(sid, kind, prio))
            continue
        start, end = draw(minutes), draw(minutes)
        if start == end:
            end = (end + 1) % (24 * 60)
        occasions: tuple[Occasion, ...] = ()
        if kind is ScheduleType.EVENT_BASED:
            first = date(2025, 3, 1) + timedelta(days=draw(st.integers(0, 300)))
            span = timedelta(days=draw(st.integers(0, 3)))
            occasions = (Occasion(OccasionKind.DATE_RANGE, first, first + span),)
            if draw(st.booleans()):
                start = end = None  # type: ignore[assignment]
        found.append(Rule(sid, kind, prio, start, end, draw(weekdays), occasions))
    return found


instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2025, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(second=0, microsecond=0))


@settings(max_examples=60, deadline=None)
@given(rules(), instants, st.sampled_from([BERLIN, NEW_YORK, ZoneInfo("UTC")]))
def test_state_holds_until_next_change_and_not_after(
    found: list[Rule], at: datetime, zone: ZoneInfo
) -> None:
    state = evaluate(found, at, zone)
    assert state.schedule_id == reference_winner(found, at, zone)
    # Up to two days ahead, minute by minute: same state before `until`, different at it.
    horizon = at + timedelta(days=2)
    probe = at
    while probe < horizon and (state.until is None or probe < state.until):
        assert reference_winner(found, probe, zone) == state.schedule_id, probe
        probe += MINUTE
    if state.until is not None and state.until <= horizon:
        assert reference_winner(found, state.until, zone) != state.schedule_id
