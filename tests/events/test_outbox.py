"""Outbox and relay: nothing leaves before the commit, nothing committed is lost, and
nothing is applied twice — on SQLite and PostgreSQL, with the in-process bus and NATS."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta

import nats
import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from events.conftest import (
    POLICY,
    BusFactory,
    Recorder,
    Sessions,
    delete_stream,
    eventually,
    settled,
)
from media_service.db.uow import unit_of_work
from media_service.events.bus import DeadLetterCallback, Delivery, EventBus
from media_service.events.consumers import idempotent
from media_service.events.envelope import FileUploaded, parse_event
from media_service.events.models import BusDelivery, HandledEvent, OutboxMessage
from media_service.events.nats import EVENTS_STREAM, NatsEventBus
from media_service.events.outbox import (
    OutboxBacklog,
    OutboxRepository,
    record_event,
    wake_on_commit,
)
from media_service.events.relay import OutboxRelay

from harness.nats import NatsServer

EFFECT = "effect"  # handled_events rows under this name stand for a consumer's effect
QUIET = 0.3


@pytest.fixture(params=["memory", "nats"])
def bus_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def uploaded(n: int = 0) -> FileUploaded:
    return FileUploaded(
        file_id=f"file_{n}", user_id="alice", organization_id="org_a", owner_id="alice",
        owner_type="User", file_type="Image", content_type="image/jpeg", file_size=3 + n,
        sha256="ab" * 32,
    )  # fmt: skip


@idempotent("apply-upload", FileUploaded)
async def apply_upload(session: AsyncSession, event: FileUploaded) -> None:
    session.add(HandledEvent(consumer=EFFECT, event_id=f"{event.file_id}:{uuid.uuid4().hex}"))


async def start_effect_consumer(
    bus: EventBus, sessions: Sessions, seen: Recorder | None = None
) -> Recorder:
    """Subscribe the idempotent ``apply_upload`` and record every delivery it gets."""
    seen = seen or Recorder()
    handler = apply_upload.bind(sessions)

    async def on_delivery(delivery: Delivery) -> None:
        await seen.handler(delivery)
        await handler(delivery)

    on_dead_letter: DeadLetterCallback = seen.on_dead_letter
    await bus.subscribe(
        apply_upload.name, apply_upload.subjects, on_delivery, on_dead_letter=on_dead_letter,
        policy=POLICY,
    )  # fmt: skip
    return seen


async def effects(sessions: Sessions) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(HandledEvent).where(HandledEvent.consumer == EFFECT)
        )
    return int(count or 0)


async def commit_events(sessions: Sessions, *events: FileUploaded) -> None:
    async with unit_of_work(sessions) as session:
        for event in events:
            record_event(session, event)


def relay_for(sessions: Sessions, bus: EventBus, **options: object) -> OutboxRelay:
    defaults: dict[str, object] = {"poll_interval": 0.1, "lease": 0.2, "retry_backoff": (0.1, 0.2)}
    return OutboxRelay(sessions, bus, **{**defaults, **options})  # type: ignore[arg-type]


class CountingBus:
    """Passes everything to a real bus and counts publishes per message id."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.url = bus.url
        self.published: Counter[str] = Counter()

    async def publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        await self.bus.publish(subject, payload, msg_id)
        self.published[msg_id] += 1
        await asyncio.sleep(0)  # let the other relay in

    def __getattr__(self, name: str) -> object:
        return getattr(self.bus, name)


# -- tests --------------------------------------------------------------------------------


async def test_rolled_back_transaction_publishes_nothing(
    make_bus: BusFactory, sessions: Sessions
) -> None:
    bus = await make_bus()
    seen = await start_effect_consumer(bus, sessions)

    async def change_then_fail() -> None:
        async with unit_of_work(sessions) as session:
            record_event(session, uploaded())
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await change_then_fail()

    relay = relay_for(sessions, bus)
    assert await relay.run_once() == 0
    assert await relay.repository.backlog() == OutboxBacklog(0, None)
    await asyncio.sleep(QUIET)
    assert seen.deliveries == []
    assert await effects(sessions) == 0


async def test_committed_event_is_published_exactly_once(
    make_bus: BusFactory, sessions: Sessions, bus_kind: str
) -> None:
    bus = await make_bus()
    seen = await start_effect_consumer(bus, sessions)
    wire: list[nats.aio.msg.Msg] = []
    if bus_kind == "nats":
        assert isinstance(bus, NatsEventBus)
        plain = await nats.connect(bus.url.split("?")[0])

        async def on_wire(msg: nats.aio.msg.Msg) -> None:
            wire.append(msg)

        await plain.subscribe("file.>", cb=on_wire)
    event = uploaded()
    await commit_events(sessions, event)

    relay = relay_for(sessions, bus)
    assert await relay.run_once() == 1
    assert await relay.run_once() == 0
    [delivery] = await seen.wait_deliveries(1)
    assert parse_event(delivery.payload, delivery.subject) == event
    assert delivery.msg_id == event.event_id
    await settled(bus, apply_upload.name)
    await asyncio.sleep(QUIET)
    assert len(seen.deliveries) == 1 and await effects(sessions) == 1
    async with sessions() as session:
        row = await session.get(OutboxMessage, event.event_id)
    assert row is not None and row.published_at is not None and row.attempts == 1
    if bus_kind == "nats":
        await plain.close()
        assert len(wire) == 1, "a plain NATS subscriber saw the event more than once"
        assert wire[0].subject == "file.uploaded"
        assert (wire[0].headers or {})["Nats-Msg-Id"] == event.event_id
        assert parse_event(wire[0].data) == event


async def test_relay_killed_after_publish_before_mark_republishes_once(
    make_bus: BusFactory, sessions: Sessions, bus_kind: str
) -> None:
    bus = await make_bus()
    seen = await start_effect_consumer(bus, sessions)
    event = uploaded()
    await commit_events(sessions, event)

    # The first relay claims and publishes (the bus acknowledges) and dies before marking.
    repository = OutboxRepository(sessions)
    [claimed] = await repository.claim_pending(10, lease=timedelta(seconds=0.2))
    await bus.publish(claimed.subject, orjson.dumps(claimed.payload), claimed.id)
    assert (await repository.backlog()).pending == 1

    # Another relay picks the row up once the lease is over and publishes it again.
    relay = relay_for(sessions, bus)
    assert await relay.run_once() == 0, "the lease of the dead relay was ignored"
    await asyncio.sleep(0.25)
    assert await relay.run_once() == 1
    assert (await repository.backlog()).pending == 0

    await seen.wait_deliveries(1)
    await settled(bus, apply_upload.name)
    await asyncio.sleep(QUIET)
    assert await effects(sessions) == 1
    assert len(seen.deliveries) == 1, "the bus did not drop the re-published duplicate"
    if bus_kind == "nats":
        client = await nats.connect(bus.url.split("?")[0])
        info = await client.jetstream().stream_info(EVENTS_STREAM.name)
        await client.close()
        assert info.state.messages == 1
    else:
        async with sessions() as session:
            rows = await session.scalar(select(func.count()).select_from(BusDelivery))
        assert rows == 1


async def test_two_relays_publish_each_row_once(make_bus: BusFactory, sessions: Sessions) -> None:
    bus = await make_bus()
    await start_effect_consumer(bus, sessions)
    events = [uploaded(n) for n in range(30)]
    for start in range(0, 30, 10):
        await commit_events(sessions, *events[start : start + 10])

    counting = CountingBus(bus)
    relays = [relay_for(sessions, counting, batch_size=4, lease=30.0) for _ in range(2)]  # type: ignore[arg-type]

    async def drain(relay: OutboxRelay) -> None:
        while await relay.run_once():
            pass

    await asyncio.gather(*(drain(relay) for relay in relays))
    assert (await relays[0].repository.backlog()).pending == 0
    assert set(counting.published) == {e.event_id for e in events}
    assert set(counting.published.values()) == {1}, "a row was published twice"

    async def all_applied() -> bool:
        return await effects(sessions) == 30

    await eventually(all_applied)


async def test_relay_wakes_on_commit(make_bus: BusFactory, sessions: Sessions) -> None:
    bus = await make_bus()
    seen = await start_effect_consumer(bus, sessions)
    relay = relay_for(sessions, bus, poll_interval=60.0)
    wake_on_commit(sessions, relay.notify)
    relay.start()
    try:
        await asyncio.sleep(0.1)  # the relay's first pass found nothing and sleeps
        await commit_events(sessions, uploaded())
        await seen.wait_deliveries(1, timeout=3.0)
    finally:
        await relay.stop()


async def test_backlog_counts_pending_rows_and_their_age(
    make_bus: BusFactory, sessions: Sessions
) -> None:
    bus = await make_bus()
    repository = OutboxRepository(sessions)
    await commit_events(sessions, uploaded(1), uploaded(2))
    await asyncio.sleep(0.2)
    backlog = await repository.backlog()
    assert backlog.pending == 2
    assert backlog.oldest_age_seconds is not None and 0.2 <= backlog.oldest_age_seconds < 30

    assert await relay_for(sessions, bus).run_once() == 2
    assert await repository.backlog() == OutboxBacklog(0, None)


# -- NATS faults --------------------------------------------------------------------------


async def test_rows_recorded_while_nats_is_down_are_delivered_after_restart(
    fault_nats: NatsServer, sessions: Sessions
) -> None:
    bus = NatsEventBus(fault_nats.events_url, reconnect_wait=0.1, publish_timeout=1.0)
    await bus.start()
    try:
        await start_effect_consumer(bus, sessions)
        relay = relay_for(sessions, bus)
        relay.start()
        fault_nats.stop()
        events = [uploaded(n) for n in range(5)]
        for event in events:  # the service goes on committing while NATS is away
            await commit_events(sessions, event)
        await asyncio.sleep(0.5)

        repository = OutboxRepository(sessions)
        assert (await repository.backlog()).pending == 5
        async with sessions() as session:
            tried = (
                (await session.execute(select(OutboxMessage).where(OutboxMessage.attempts > 0)))
                .scalars()
                .all()
            )
        assert tried and all(row.last_error for row in tried)

        fault_nats.start()

        async def drained() -> bool:
            return (await repository.backlog()).pending == 0 and await effects(sessions) == 5

        await eventually(drained, timeout=20)
        await relay.stop()
    finally:
        await bus.close()


async def test_message_refused_by_nats_stays_pending_and_others_go_on(
    nats_server: NatsServer, sessions: Sessions
) -> None:
    await delete_stream(nats_server.events_url)
    bus = NatsEventBus(nats_server.events_url)
    await bus.start()
    try:
        too_big = uploaded(1).model_copy(update={"content_type": None})
        async with unit_of_work(sessions) as session:
            row = record_event(session, too_big)
            row.payload = {**row.payload, "padding": "x" * 2_000_000}  # over max_payload
            record_event(session, uploaded(2))
        relay = relay_for(sessions, bus)
        assert await relay.run_once() == 1
        async with sessions() as session:
            refused = await session.get(OutboxMessage, too_big.event_id)
        assert refused is not None and refused.published_at is None
        assert refused.attempts == 1 and "payload" in (refused.last_error or "").lower()
    finally:
        await bus.close()


async def test_claims_skip_locked_rows_on_postgresql_and_wait_on_sqlite(
    sessions: Sessions, database: str
) -> None:
    events = [uploaded(n) for n in range(4)]
    await commit_events(sessions, *events)
    repository = OutboxRepository(sessions)

    async with sessions.begin() as other_relay:  # holds its claim's locks, not committed
        held = (
            (
                await other_relay.execute(
                    select(OutboxMessage.id).order_by(OutboxMessage.id).limit(2).with_for_update()
                )
            )
            .scalars()
            .all()
        )
        claim = asyncio.create_task(repository.claim_pending(10, timedelta(seconds=30)))
        await asyncio.sleep(0.3)
        if database == "postgres":
            assert claim.done(), "a claim waited for rows another relay had locked"
            claimed = {m.id for m in claim.result()}
            assert claimed == {e.event_id for e in events} - set(held)
        else:
            assert not claim.done(), "two SQLite claims ran at the same time"
    if database == "sqlite":
        assert {m.id for m in await claim} == {e.event_id for e in events}
