"""The in-process bus's watcher: one read per poll interval for all the consumers of a
process, instead of one per consumer (an idle service's CPU), and still every delivery
published by another process on the same database found within about one interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from events.conftest import POLICY, Recorder, Sessions
from media_service.events.memory import MemoryEventBus

POLL = 0.05
CONSUMERS = 6


@contextmanager
def reads_of_deliveries(sessions: Sessions) -> Iterator[list[str]]:
    """The SELECTs over ``bus_deliveries`` run while the block runs."""
    engine: AsyncEngine = sessions.kw["bind"]
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        text = statement.lstrip().upper()
        if text.startswith("SELECT") and "BUS_DELIVERIES" in text:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)


async def subscribe_idle_consumers(bus: MemoryEventBus, recorder: Recorder) -> None:
    for n in range(CONSUMERS):
        await bus.subscribe(
            f"idle-{n}", [f"idle.{n}"], recorder.handler,
            on_dead_letter=recorder.on_dead_letter, policy=POLICY,
        )  # fmt: skip


async def test_idle_consumers_share_one_read_per_interval(sessions: Sessions) -> None:
    bus = MemoryEventBus(sessions, poll_interval=POLL)
    recorder = Recorder()
    try:
        await subscribe_idle_consumers(bus, recorder)
        await asyncio.sleep(3 * POLL)  # the consumers' first claims are done
        seconds = 1.0
        with reads_of_deliveries(sessions) as reads:
            await asyncio.sleep(seconds)
        intervals = seconds / POLL
        # One consumer polling on its own would read once an interval: six, six times.
        assert len(reads) <= 1.5 * intervals, f"{len(reads)} reads in {intervals:.0f} intervals"
        assert len(reads) >= intervals / 4, "the watcher stopped reading"
        assert recorder.deliveries == []
    finally:
        await bus.close()


async def test_a_message_from_another_process_wakes_an_idle_consumer(
    sessions: Sessions,
) -> None:
    consuming = MemoryEventBus(sessions, poll_interval=POLL)
    publishing = MemoryEventBus(sessions, poll_interval=POLL)  # "another process": no wake
    recorder = Recorder()
    try:
        await subscribe_idle_consumers(consuming, recorder)
        await asyncio.sleep(3 * POLL)
        for n in (0, 3, 5):
            sent = time.monotonic()
            await publishing.publish(f"idle.{n}", b"{}", f"from-elsewhere-{n}")
            [*_, delivery] = await recorder.wait_deliveries(len(recorder.deliveries) + 1)
            assert delivery.msg_id == f"from-elsewhere-{n}"
            assert delivery.subject == f"idle.{n}"
            # Found by the watcher's next read: well inside the 60 s an idle consumer
            # would otherwise wait before looking again.
            assert recorder.times[-1] - sent < 10 * POLL + 1.0
    finally:
        await publishing.close()
        await consuming.close()


async def test_closing_the_bus_stops_the_watcher(sessions: Sessions) -> None:
    bus = MemoryEventBus(sessions, poll_interval=POLL)
    recorder = Recorder()
    await subscribe_idle_consumers(bus, recorder)
    await bus.close()
    with reads_of_deliveries(sessions) as reads:
        await asyncio.sleep(5 * POLL)
    assert reads == []
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "bus-due-watcher"]


async def test_a_consumer_woken_by_a_publish_claims_without_reading_first(
    sessions: Sessions,
) -> None:
    bus = MemoryEventBus(sessions, poll_interval=30.0)  # the watcher reads once, at start
    recorder = Recorder()
    events = 6
    try:
        await bus.subscribe(
            "woken", ["woken.>"], recorder.handler,
            on_dead_letter=recorder.on_dead_letter, policy=POLICY,
        )  # fmt: skip
        await asyncio.sleep(0.2)  # the first claim and the watcher's first read are done
        with reads_of_deliveries(sessions) as reads:
            for n in range(events):
                await bus.publish(f"woken.{n}", b"{}", f"woken-{n}")
                await recorder.wait_deliveries(n + 1)
                await asyncio.sleep(0.05)  # settled, and the consumer idle again
        own = [text for text in reads if "GROUP BY" not in text.upper()]
        # One read after each batch (is more due? when?), none before its claim: reading
        # first as well made two per event.
        assert len(own) <= events + 1, f"{len(own)} reads for {events} events"
        assert [d.msg_id for d in recorder.deliveries] == [f"woken-{n}" for n in range(events)]
    finally:
        await bus.close()


async def test_concurrent_publishes_share_a_transaction(sessions: Sessions) -> None:
    bus = MemoryEventBus(sessions, poll_interval=30.0)
    recorder = Recorder()
    engine: AsyncEngine = sessions.kw["bind"]
    reads: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM bus_consumers" in statement:
            reads.append(statement)

    try:
        for name in ("first", "second"):
            await bus.subscribe(
                name, ["shared.>"], recorder.handler,
                on_dead_letter=recorder.on_dead_letter, policy=POLICY,
            )  # fmt: skip
        event.listen(engine.sync_engine, "before_cursor_execute", before)
        try:
            await asyncio.gather(
                *(bus.publish(f"shared.{n}", b"{}", f"shared-{n}") for n in range(20))
            )
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", before)
        # The first publish is written at once; the 19 that came meanwhile share the next
        # transaction (one read of the consumers each: one per publish before).
        assert len(reads) <= 2, f"{len(reads)} reads of the consumers for 20 publishes"
        delivered = await recorder.wait_deliveries(40)
        assert sorted((d.consumer, d.msg_id) for d in delivered) == sorted(
            (name, f"shared-{n}") for name in ("first", "second") for n in range(20)
        )
    finally:
        await bus.close()
