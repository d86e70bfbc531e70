"""The EventBus contract, run against every bus: in-process (on SQLite and PostgreSQL) and
NATS JetStream. Same delivery, retry, dead-letter and durability behaviour everywhere."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from events.conftest import POLICY, BusFactory, Recorder, Sessions, settled
from media_service.events.bus import DeadLetter, Delivery, RejectMessage
from media_service.events.consumers import idempotent
from media_service.events.envelope import FileDeleted, FileUploaded
from media_service.events.models import OutboxMessage
from media_service.events.outbox import record_event

BUSES = ["memory-sqlite", "memory-postgres", "nats"]
QUIET = 0.2  # how long "nothing more arrives" is watched, beyond what is awaited


@pytest.fixture(params=BUSES)
def bus_variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bus_kind(bus_variant: str) -> str:
    return "nats" if bus_variant == "nats" else "memory"


@pytest.fixture
def database(bus_variant: str) -> str:
    # The in-process bus runs on either database; NATS tests keep their state on SQLite.
    return "postgres" if bus_variant == "memory-postgres" else "sqlite"


async def subscribe(bus_factory: BusFactory, recorder: Recorder, name: str = "c1") -> None:
    bus = await bus_factory()
    await bus.subscribe(
        name, ["file.>"], recorder.handler, on_dead_letter=recorder.on_dead_letter, policy=POLICY
    )


async def test_published_message_is_received_once(make_bus: BusFactory) -> None:
    recorder = Recorder()
    bus = await make_bus()
    await bus.subscribe(
        "c1", ["file.>"], recorder.handler, on_dead_letter=recorder.on_dead_letter, policy=POLICY
    )
    await bus.publish("file.uploaded", b'{"n": 1}', "m1")

    [delivery] = await recorder.wait_deliveries(1)
    assert delivery == Delivery("c1", "file.uploaded", b'{"n": 1}', "m1", 1)
    # Past ack_wait: an acknowledged message is not delivered again.
    await asyncio.sleep(POLICY.ack_wait + QUIET)
    assert len(recorder.deliveries) == 1
    assert recorder.dead == []


async def test_subjects_outside_the_filter_are_not_delivered(make_bus: BusFactory) -> None:
    recorder = Recorder()
    bus = await make_bus()
    await bus.subscribe(
        "c1", ["file.deleted"], recorder.handler, on_dead_letter=recorder.on_dead_letter,
        policy=POLICY,
    )  # fmt: skip
    await bus.publish("file.uploaded", b"{}", "m1")
    await bus.publish("media.cache.ready", b"{}", "m2")
    await bus.publish("file.deleted", b"{}", "m3")
    await recorder.wait_deliveries(1)
    await asyncio.sleep(QUIET)
    assert recorder.msg_ids() == ["m3"]


async def test_failed_handler_is_retried_after_the_backoff(make_bus: BusFactory) -> None:
    recorder = Recorder(lambda d: RuntimeError(f"try {d.attempt}") if d.attempt < 3 else None)
    await subscribe(make_bus, recorder)
    bus = await make_bus()
    await bus.publish("file.uploaded", b"{}", "m1")

    deliveries = await recorder.wait_deliveries(3)
    assert [d.attempt for d in deliveries] == [1, 2, 3]
    gaps = [b - a for a, b in zip(recorder.times, recorder.times[1:], strict=False)]
    assert gaps[0] >= POLICY.backoff[0] - 0.05, gaps
    assert gaps[1] >= POLICY.backoff[1] - 0.05, gaps
    await asyncio.sleep(POLICY.backoff[-1] + QUIET)
    assert len(recorder.deliveries) == 3
    assert recorder.dead == []


async def test_exhausted_attempts_go_to_dead_letter_with_the_last_error(
    make_bus: BusFactory,
) -> None:
    recorder = Recorder(lambda d: ValueError(f"bad thing #{d.attempt}"))
    await subscribe(make_bus, recorder)
    bus = await make_bus()
    await bus.publish("file.uploaded", b'{"poison": true}', "m1")

    await recorder.wait_for(lambda r: len(r.dead) == 1)
    assert recorder.dead == [
        DeadLetter(
            consumer="c1",
            subject="file.uploaded",
            payload=b'{"poison": true}',
            msg_id="m1",
            attempts=POLICY.max_deliver,
            error="ValueError: bad thing #3",
        )
    ]
    assert [d.attempt for d in recorder.deliveries] == [1, 2, 3]
    await asyncio.sleep(POLICY.backoff[-1] + QUIET)
    assert len(recorder.deliveries) == 3, "a dead-lettered message was delivered again"


async def test_rejected_message_goes_to_dead_letter_at_once(make_bus: BusFactory) -> None:
    recorder = Recorder(lambda d: RejectMessage("not an event"))
    await subscribe(make_bus, recorder)
    bus = await make_bus()
    await bus.publish("file.uploaded", b"\x00garbage", "m1")

    await recorder.wait_for(lambda r: len(r.dead) == 1)
    assert recorder.dead[0].attempts == 1
    assert recorder.dead[0].error == "RejectMessage: not an event"
    assert recorder.dead[0].payload == b"\x00garbage"
    await asyncio.sleep(POLICY.backoff[0] + QUIET)
    assert len(recorder.deliveries) == 1


async def test_failing_dead_letter_callback_keeps_the_message(make_bus: BusFactory) -> None:
    calls: list[DeadLetter] = []

    async def flaky_dead_letter(letter: DeadLetter) -> None:
        calls.append(letter)
        if len(calls) == 1:
            raise ConnectionError("dead-letter store down")

    recorder = Recorder(lambda d: ValueError("always"))
    bus = await make_bus()
    await bus.subscribe(
        "c1", ["file.>"], recorder.handler, on_dead_letter=flaky_dead_letter, policy=POLICY
    )
    await bus.publish("file.uploaded", b"{}", "m1")

    async with asyncio.timeout(10):
        while len(calls) < 2:
            await asyncio.sleep(0.05)
    # The handler ran max_deliver times; the next delivery only retried the dead letter.
    assert [d.attempt for d in recorder.deliveries] == [1, 2, 3]
    assert [letter.attempts for letter in calls] == [3, 4]
    assert "gave up after 4 deliveries" in calls[1].error
    await asyncio.sleep(POLICY.backoff[-1] + QUIET)
    assert len(calls) == 2 and len(recorder.deliveries) == 3


async def test_handler_over_its_timeout_is_cancelled_and_retried(make_bus: BusFactory) -> None:
    started: list[int] = []

    async def slow_first_time(delivery: Delivery) -> None:
        started.append(delivery.attempt)
        if delivery.attempt == 1:
            await asyncio.sleep(POLICY.handler_timeout * 5)

    recorder = Recorder()
    bus = await make_bus()
    await bus.subscribe(
        "c1", ["file.>"], slow_first_time, on_dead_letter=recorder.on_dead_letter, policy=POLICY
    )
    await bus.publish("file.uploaded", b"{}", "m1")
    async with asyncio.timeout(POLICY.handler_timeout + 3):
        while started != [1, 2]:
            await asyncio.sleep(0.05)
    assert recorder.dead == []


async def test_duplicate_msg_id_is_delivered_once(make_bus: BusFactory) -> None:
    recorder = Recorder()
    await subscribe(make_bus, recorder)
    bus = await make_bus()
    await bus.publish("file.uploaded", b'{"copy": 1}', "same-id")
    await bus.publish("file.uploaded", b'{"copy": 2}', "same-id")
    await bus.publish("file.uploaded", b"{}", "other-id")

    await recorder.wait_deliveries(2)
    await asyncio.sleep(QUIET)
    assert sorted(recorder.msg_ids(), key=str) == ["other-id", "same-id"]
    assert [d.payload for d in recorder.deliveries if d.msg_id == "same-id"] == [b'{"copy": 1}']


async def test_event_published_twice_under_new_ids_is_applied_once(
    make_bus: BusFactory, sessions: Sessions
) -> None:
    """An external service that re-publishes after the duplicate window (a new message
    id, the same event id): the idempotent consumer applies it once."""

    @idempotent("enqueue-on-delete", FileDeleted)
    async def on_deleted(session: AsyncSession, event: FileDeleted) -> None:
        # The effect: an outbox row in the same transaction as handled_events.
        record_event(
            session,
            FileUploaded(
                event_id=f"evt_effect_{event.event_id}",
                file_id=event.file_id,
                user_id="u",
                organization_id="o",
            ),
        )

    seen = Recorder()
    handler = on_deleted.bind(sessions)

    async def counting(delivery: Delivery) -> None:
        await seen.handler(delivery)
        await handler(delivery)

    bus = await make_bus()
    await bus.subscribe(
        on_deleted.name, on_deleted.subjects, counting, on_dead_letter=seen.on_dead_letter,
        policy=POLICY,
    )  # fmt: skip
    event = FileDeleted(file_id="file_1", user_id="u", organization_id="o")
    await bus.publish("file.deleted", event.to_json(), "external-1")
    await bus.publish("file.deleted", event.to_json(), "external-2")

    await seen.wait_deliveries(2)
    await asyncio.sleep(QUIET)
    assert sorted(seen.msg_ids(), key=str) == ["external-1", "external-2"]
    assert seen.dead == []
    async with sessions() as session:
        effects = await session.scalar(select(func.count()).select_from(OutboxMessage))
    assert effects == 1


async def test_two_durable_consumers_each_receive_everything(make_bus: BusFactory) -> None:
    first, second = Recorder(), Recorder()
    await subscribe(make_bus, first, "c1")
    await subscribe(make_bus, second, "c2")
    bus = await make_bus()
    for n in range(3):
        await bus.publish("file.uploaded", f'{{"n": {n}}}'.encode(), f"m{n}")

    await first.wait_deliveries(3)
    await second.wait_deliveries(3)
    await asyncio.sleep(QUIET)
    assert sorted(first.msg_ids(), key=str) == ["m0", "m1", "m2"]
    assert sorted(second.msg_ids(), key=str) == ["m0", "m1", "m2"]


async def test_consumer_resumes_after_close_without_losing_messages(
    make_bus: BusFactory,
) -> None:
    before = Recorder()
    consumer_bus = await make_bus()
    await consumer_bus.subscribe(
        "c1", ["file.>"], before.handler, on_dead_letter=before.on_dead_letter, policy=POLICY
    )
    publisher = await make_bus()
    await publisher.publish("file.uploaded", b"{}", "m1")
    await before.wait_deliveries(1)
    await settled(consumer_bus, "c1")  # acknowledged, not just handled
    await consumer_bus.close()

    for n in (2, 3, 4):  # nobody is consuming now
        await publisher.publish("file.uploaded", b"{}", f"m{n}")
    after = Recorder()
    await subscribe(make_bus, after, "c1")

    await after.wait_deliveries(3)
    await asyncio.sleep(QUIET)
    assert sorted(after.msg_ids(), key=str) == ["m2", "m3", "m4"]
    assert before.msg_ids() == ["m1"]


async def test_delivery_interrupted_by_close_is_redelivered(make_bus: BusFactory) -> None:
    """A consumer stopped after its effect but before its ack gets the message again."""
    effects: list[int] = []
    release = asyncio.Event()

    async def effect_then_hang(delivery: Delivery) -> None:
        effects.append(delivery.attempt)
        if delivery.attempt == 1:
            await release.wait()

    first_bus = await make_bus()
    recorder = Recorder()
    await first_bus.subscribe(
        "c1", ["file.>"], effect_then_hang, on_dead_letter=recorder.on_dead_letter, policy=POLICY
    )
    publisher = await make_bus()
    await publisher.publish("file.uploaded", b"{}", "m1")
    async with asyncio.timeout(5):
        while not effects:
            await asyncio.sleep(0.02)
    await first_bus.close()

    second_bus = await make_bus()
    await second_bus.subscribe(
        "c1", ["file.>"], effect_then_hang, on_dead_letter=recorder.on_dead_letter, policy=POLICY
    )
    async with asyncio.timeout(POLICY.ack_wait + 3):
        while len(effects) < 2:
            await asyncio.sleep(0.02)
    assert effects == [1, 2]
    assert recorder.dead == []


async def test_check_reports_consumer_lag(make_bus: BusFactory) -> None:
    gate = asyncio.Event()

    async def blocked(delivery: Delivery) -> None:
        await gate.wait()

    recorder = Recorder()
    bus = await make_bus()
    slow = dataclasses.replace(POLICY, handler_timeout=10.0)
    await bus.subscribe(
        "lagging", ["file.>"], blocked, on_dead_letter=recorder.on_dead_letter, policy=slow
    )
    for n in range(3):
        await bus.publish("file.uploaded", b"{}", f"m{n}")
    health = await bus.check()
    assert health.consumer_lag["lagging"] == 3
    gate.set()

    await settled(bus, "lagging")
