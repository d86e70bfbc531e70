"""The photo cache's pure rules: legal transitions, back-off, LRU victims."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from media_service.frames.cache_states import (
    CACHED,
    DOWNLOADING,
    EXPIRED,
    FAILED,
    PENDING,
    CachePolicy,
    Held,
    lru_victims,
    may_move,
    next_attempt,
    sources_of,
)
from media_service.frames.models import CacheStatus

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_only_a_download_reaches_cached_or_failed() -> None:
    assert sources_of(CACHED) == (DOWNLOADING,)
    assert sources_of(FAILED) == (DOWNLOADING,)
    assert set(sources_of(DOWNLOADING)) == {PENDING, DOWNLOADING, FAILED}
    assert not may_move(CACHED, PENDING) and not may_move(EXPIRED, CACHED)
    assert all(may_move(status, EXPIRED) for status in CacheStatus if status is not EXPIRED)


def test_back_off_doubles_up_to_the_cap_then_stops() -> None:
    policy = CachePolicy(
        retry_base=timedelta(minutes=1), retry_max=timedelta(minutes=5), max_retries=5
    )
    delays = [next_attempt(policy, n, T0) for n in range(1, 6)]
    assert [d - T0 for d in delays[:4] if d] == [timedelta(minutes=m) for m in (1, 2, 4, 5)]
    assert delays[4] is None


held = st.lists(
    st.builds(
        Held,
        st.uuids().map(str),
        st.integers(0, 1000),
        st.integers(0, 10_000).map(lambda s: T0 + timedelta(seconds=s)),
    ),
    unique_by=lambda h: h.cache_id,
    max_size=30,
)


@given(held, st.integers(0, 40), st.integers(0, 20_000))
def test_lru_keeps_a_most_recent_prefix_within_limits(
    entries: list[Held], keep: int, budget: int
) -> None:
    victims = set(lru_victims(entries, keep, budget))
    kept = [e for e in entries if e.cache_id not in victims]
    assert len(kept) <= keep and sum(e.size for e in kept) <= budget
    if kept and victims:  # nothing evicted was used more recently than something kept
        newest_victim = max((e.last_used, e.cache_id) for e in entries if e.cache_id in victims)
        assert newest_victim < min((e.last_used, e.cache_id) for e in kept)
