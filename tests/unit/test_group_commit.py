"""GroupCommit: concurrent events share transactions, failures stay with their event, and
a stopped leader never leaves the others waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from media_service.events.envelope import FileDeleted
from media_service.events.group_commit import BatchAbandoned, GroupCommit


def event(n: int) -> FileDeleted:
    return FileDeleted(event_id=f"evt_{n}", file_id=f"file_{n}", user_id="u", organization_id="o")


class Ledger:
    """A fake transaction log: which batches ran, which ids were applied for good."""

    def __init__(self, *, failing: set[str] = frozenset(), pause: float = 0.01) -> None:  # type: ignore[assignment]
        self.failing = set(failing)
        self.pause = pause
        self.applied: set[str] = set()
        self.batches: list[list[str]] = []
        self.started = asyncio.Event()

    async def apply_batch(self, events: Sequence[FileDeleted]) -> set[str]:
        ids = [e.event_id for e in events]
        self.batches.append(ids)
        self.started.set()
        await asyncio.sleep(self.pause)  # the transaction's round trips
        if self.failing & set(ids):
            raise RuntimeError(f"handler failed on {sorted(self.failing & set(ids))}")
        new = set(ids) - self.applied
        self.applied |= new
        return new

    async def apply_one(self, e: FileDeleted) -> bool:
        return e.event_id in await self.apply_batch([e])

    def commit(self, max_batch: int = 32) -> GroupCommit[FileDeleted]:
        return GroupCommit(self.apply_batch, self.apply_one, max_batch)


async def test_events_arriving_together_share_transactions() -> None:
    ledger = Ledger()
    together = ledger.commit()
    results = await asyncio.gather(*(together.apply(event(n)) for n in range(20)))
    assert results == [True] * 20
    assert ledger.applied == {f"evt_{n}" for n in range(20)}
    # The first leads alone; the 19 that queued behind it go in the next transaction.
    assert [len(b) for b in ledger.batches] == [1, 19]


async def test_batches_are_bounded() -> None:
    ledger = Ledger()
    together = ledger.commit(max_batch=4)
    assert all(await asyncio.gather(*(together.apply(event(n)) for n in range(13))))
    assert max(len(b) for b in ledger.batches) == 4
    assert sorted(x for b in ledger.batches for x in b) == sorted(f"evt_{n}" for n in range(13))


async def test_a_lone_event_is_applied_without_waiting_for_company() -> None:
    ledger = Ledger(pause=0)
    together = ledger.commit()
    async with asyncio.timeout(1):
        assert await together.apply(event(1)) is True
    assert ledger.batches == [["evt_1"]]


async def test_a_failing_event_fails_alone_and_the_others_are_applied() -> None:
    ledger = Ledger(failing={"evt_5"})
    together = ledger.commit()
    results = await asyncio.gather(
        *(together.apply(event(n)) for n in range(10)), return_exceptions=True
    )
    failed = [n for n, r in enumerate(results) if isinstance(r, RuntimeError)]
    assert failed == [5]
    assert [n for n, r in enumerate(results) if r is True] == [n for n in range(10) if n != 5]
    assert "evt_5" not in ledger.applied
    assert ["evt_5"] in ledger.batches  # retried on its own after the shared batch failed


async def test_copies_of_one_event_are_applied_once() -> None:
    ledger = Ledger()
    together = ledger.commit()
    results = await asyncio.gather(*(together.apply(event(7)) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    assert ledger.applied == {"evt_7"}


async def test_a_leader_stopped_mid_batch_releases_the_others() -> None:
    ledger = Ledger(pause=0.2)
    together = ledger.commit()
    leader = asyncio.create_task(together.apply(event(0)))
    await ledger.started.wait()
    followers = [asyncio.create_task(together.apply(event(n))) for n in range(1, 4)]
    await asyncio.sleep(0)
    ledger.started.clear()
    await ledger.started.wait()  # the second batch (the followers) is running
    second_leader = followers[0]
    second_leader.cancel()
    results = await asyncio.gather(leader, *followers, return_exceptions=True)
    assert results[0] is True
    assert isinstance(results[1], asyncio.CancelledError)
    assert all(isinstance(r, BatchAbandoned) for r in results[2:])
    # Nobody is left leading: the next event is applied at once.
    async with asyncio.timeout(1):
        assert await together.apply(event(9)) is True


async def test_a_waiting_delivery_that_is_stopped_leaves_the_queue() -> None:
    ledger = Ledger(pause=0.1)
    together = ledger.commit()
    leader = asyncio.create_task(together.apply(event(0)))
    await ledger.started.wait()
    gone = asyncio.create_task(together.apply(event(1)))
    stays = asyncio.create_task(together.apply(event(2)))
    await asyncio.sleep(0)
    gone.cancel()
    assert await leader is True and await stays is True
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert "evt_1" not in ledger.applied


def test_max_batch_must_be_positive() -> None:
    ledger = Ledger()
    with pytest.raises(ValueError, match="max_batch"):
        ledger.commit(max_batch=0)
