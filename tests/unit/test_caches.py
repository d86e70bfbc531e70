"""The small in-process caches: single flight, recent values, hot objects."""

from __future__ import annotations

import asyncio

import pytest

from media_service.bytecache import BytesCache
from media_service.recent import RecentValues
from media_service.singleflight import SingleFlight


async def test_single_flight_runs_identical_work_once_and_shares_the_result() -> None:
    flights: SingleFlight[int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def work() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    waiters = [asyncio.create_task(flights.run("k", work)) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert flights.in_flight() == 1
    release.set()
    assert await asyncio.gather(*waiters) == [42] * 5
    assert calls == 1 and flights.started == 1 and flights.joined == 4
    assert flights.in_flight() == 0


async def test_single_flight_shares_a_failure_and_then_runs_again() -> None:
    flights: SingleFlight[int] = SingleFlight()

    async def boom() -> int:
        await asyncio.sleep(0.01)
        raise RuntimeError("no")

    results = await asyncio.gather(
        flights.run("k", boom), flights.run("k", boom), return_exceptions=True
    )
    assert all(isinstance(result, RuntimeError) for result in results)

    async def fine() -> int:
        return 1

    assert await flights.run("k", fine) == 1
    assert flights.started == 2


async def test_a_caller_going_away_does_not_cancel_the_work_for_the_others() -> None:
    flights: SingleFlight[str] = SingleFlight()

    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "done"

    first = asyncio.create_task(flights.run("k", slow))
    second = asyncio.create_task(flights.run("k", slow))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == "done"


def test_recent_values_expire_after_their_ttl() -> None:
    now = [100.0]
    recent: RecentValues[str] = RecentValues(ttl=1.0, clock=lambda: now[0])
    recent.put("a", "x")
    assert recent.get("a") == "x"
    now[0] += 0.99
    assert recent.get("a") == "x"
    now[0] += 0.02
    assert recent.get("a") is None
    recent.put("b", "y")
    recent.forget("b")
    assert recent.get("b") is None


def test_forgetting_a_prefix_drops_only_the_keys_that_start_with_it() -> None:
    recent: RecentValues[int] = RecentValues()
    keys = ("file_1", "file_1@current", "file_1@2", "file_10@current", "file_2")
    for key in keys:
        recent.put(key, 1)
    recent.forget_prefix("file_1@")
    assert [key for key in keys if recent.get(key) is not None] == [
        "file_1", "file_10@current", "file_2",
    ]  # fmt: skip


def test_recent_values_are_bounded() -> None:
    recent: RecentValues[int] = RecentValues(max_items=3)
    for index in range(5):
        recent.put(str(index), index)
    assert [recent.get(str(i)) for i in range(5)] == [None, None, 2, 3, 4]


class Loader:
    """A load that waits for ``release`` and counts its calls."""

    def __init__(self, values: list[str | None]) -> None:
        self.values = values
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self) -> str | None:
        self.calls += 1
        value = self.values[min(self.calls, len(self.values)) - 1]
        await self.release.wait()
        return value


async def test_callers_missing_at_once_share_one_load_and_its_value_is_remembered() -> None:
    recent: RecentValues[str] = RecentValues(ttl=1.0)
    load = Loader(["file"])
    waiters = [asyncio.create_task(recent.get_or_load("a", load)) for _ in range(32)]
    await asyncio.sleep(0.01)
    load.release.set()
    assert await asyncio.gather(*waiters) == ["file"] * 32
    assert load.calls == 1
    assert await recent.get_or_load("a", load) == "file" and load.calls == 1


async def test_nothing_found_and_failures_are_not_remembered() -> None:
    recent: RecentValues[str] = RecentValues(ttl=1.0)
    load = Loader([None, "later"])
    load.release.set()
    assert await recent.get_or_load("a", load) is None
    assert await recent.get_or_load("a", load) == "later"
    assert load.calls == 2

    async def broken() -> str | None:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await recent.get_or_load("b", broken)
    assert recent.get("b") is None


async def test_a_load_under_way_when_the_key_is_forgotten_is_not_remembered() -> None:
    recent: RecentValues[str] = RecentValues(ttl=1.0)
    stale = Loader(["before the change"])
    first = asyncio.create_task(recent.get_or_load("a", stale))
    await asyncio.sleep(0.01)
    recent.forget("a")  # the change committed while the old row was being read
    fresh = Loader(["after the change"])
    fresh.release.set()
    assert await recent.get_or_load("a", fresh) == "after the change"  # not joined
    stale.release.set()
    assert await first == "before the change"
    assert recent.get("a") == "after the change"


async def test_an_entry_in_the_last_fifth_of_its_ttl_is_reloaded_without_waiting() -> None:
    now = [100.0]
    recent: RecentValues[str] = RecentValues(ttl=1.0, clock=lambda: now[0])
    recent.put("a", "old")
    load = Loader(["new"])
    now[0] += 0.7  # not yet in the last fifth
    assert await recent.get_or_load("a", load) == "old" and load.calls == 0
    now[0] += 0.15
    assert await recent.get_or_load("a", load) == "old"  # answered at once
    assert await recent.get_or_load("a", load) == "old"
    await asyncio.sleep(0)
    assert load.calls == 1  # one reload in the background
    load.release.set()
    await asyncio.sleep(0.01)
    assert await recent.get_or_load("a", load) == "new"
    now[0] += 0.95  # the reloaded value lives a full ttl from when it was put
    assert recent.get("a") == "new"


async def test_a_reload_ahead_that_finds_nothing_drops_the_entry() -> None:
    now = [100.0]
    recent: RecentValues[str] = RecentValues(ttl=1.0, clock=lambda: now[0])
    recent.put("a", "file")
    now[0] += 0.9
    gone = Loader([None])
    gone.release.set()
    assert await recent.get_or_load("a", gone) == "file"  # still valid: answered at once
    await asyncio.sleep(0.01)
    assert gone.calls == 1
    assert recent.get("a") is None  # deleted meanwhile: not served for the rest of its ttl


def test_bytes_cache_evicts_the_least_recently_used_within_its_budget() -> None:
    cache = BytesCache(budget=10, max_item=6)
    cache.put("a", b"aaaa")
    cache.put("b", b"bbbb")
    assert cache.get("a") == b"aaaa"  # a is now the most recent
    cache.put("c", b"cccc")  # 12 bytes > 10: b goes
    assert cache.get("b") is None and cache.get("a") == b"aaaa" and cache.get("c") == b"cccc"
    assert cache.size == 8
    cache.put("big", b"x" * 7)  # over max_item: not kept
    assert cache.get("big") is None
    cache.discard_prefix("a")
    assert cache.get("a") is None and cache.size == 4


@pytest.mark.parametrize("hits", [0, 3])
def test_bytes_cache_counts_hits_and_misses(hits: int) -> None:
    cache = BytesCache()
    cache.put("k", b"v")
    for _ in range(hits):
        cache.get("k")
    cache.get("missing")
    assert (cache.hits, cache.misses) == (hits, 1)
