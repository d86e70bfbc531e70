"""Event faults on the production stack (PostgreSQL + S3 + NATS JetStream), the service
in-process: nothing committed is lost, nothing is applied twice, a poison message does
not block the ones after it.

Each test has a NATS server of its own (``sync_interval: always``) so it may stop it. A
test consumer of ``file.uploaded`` (idempotent, like every consumer) counts how often its
effect runs per event; the stream's message count shows what NATS stored.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import httpx
import nats
import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Role
from media_service.events import (
    DeadLetterRepository,
    DeliveryPolicy,
    FileDeleted,
    FileUploaded,
    OutboxRelay,
    OutboxRepository,
    idempotent,
    start_consumer,
)
from media_service.events.models import HandledEvent
from media_service.events.nats import EVENTS_STREAM
from media_service.media.consumers import PURGE_CONSUMER

from conftest import Stack
from harness.nats import NatsServer

ORG = "org_faults"
COUNTER = "test-count-uploads"
POLICY = DeliveryPolicy(max_deliver=3, backoff=(0.1, 0.2), handler_timeout=5.0, ack_margin=1.0)
QUIET = 0.5


@pytest.fixture
def stack_name() -> str:
    return "postgres-s3"


@pytest.fixture
def settings_overrides(fault_nats: NatsServer) -> dict[str, object]:
    return {"events_url": fault_nats.events_url}


class UploadCounter:
    """An idempotent consumer of ``file.uploaded`` that counts its effect per file."""

    def __init__(self) -> None:
        self.applied: Counter[str] = Counter()

        @idempotent(COUNTER, FileUploaded)
        async def count(session: AsyncSession, event: FileUploaded) -> None:
            self.applied[event.file_id] += 1

        self.consumer = count

    async def start(self, stack: Stack) -> None:
        await start_consumer(stack.state.bus, stack.state.sessions, self.consumer, POLICY)

    async def wait_for(self, file_ids: Sequence[str], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not set(file_ids) <= set(self.applied):
                await asyncio.sleep(0.05)
        await asyncio.sleep(QUIET)  # give duplicates the chance to show up


@pytest.fixture
async def counter(stack: Stack, client: httpx.AsyncClient) -> UploadCounter:
    counting = UploadCounter()
    await counting.start(stack)
    return counting


@pytest.fixture
async def wire(fault_nats: NatsServer) -> AsyncIterator[list[nats.aio.msg.Msg]]:
    """Every message on ``file.>`` seen by a plain NATS subscriber (duplicates included:
    a core subscriber sees each publish, even one JetStream drops as a duplicate)."""
    seen: list[nats.aio.msg.Msg] = []
    connection = await nats.connect(fault_nats.url, reconnect_time_wait=0.1)

    async def on_message(message: nats.aio.msg.Msg) -> None:
        seen.append(message)

    await connection.subscribe("file.>", cb=on_message)
    await connection.flush()
    yield seen
    await connection.close()


async def upload(client: httpx.AsyncClient, stack: Stack, n: int) -> httpx.Response:
    return await client.post(
        "/api/v1/media/files",
        headers={
            **stack.auth("admin-1", ORG, Role.ADMIN),
            "Content-Type": "application/octet-stream",
        },
        params={"owner_type": "Other", "owner_id": "fault-test"},
        content=b"%PDF-1.7\n" + uuid.uuid4().bytes * (n + 1),
    )


async def stream_messages(server: NatsServer) -> int:
    connection = await nats.connect(server.url)
    try:
        info = await connection.jetstream().stream_info(EVENTS_STREAM.name)
    finally:
        await connection.close()
    return int(info.state.messages)


async def handled_records(stack: Stack, consumer: str) -> int:
    async with stack.state.sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(HandledEvent).where(HandledEvent.consumer == consumer)
        )
    return int(count or 0)


async def drained(stack: Stack, timeout: float = 30.0) -> None:
    repository = OutboxRepository(stack.state.sessions)
    async with asyncio.timeout(timeout):
        while (await repository.backlog()).pending:
            await asyncio.sleep(0.1)


# -- (a) NATS stopped during a burst of uploads ---------------------------------------------


async def test_uploads_go_on_while_nats_is_down_and_every_event_arrives_once_after(
    client: httpx.AsyncClient, stack: Stack, counter: UploadCounter, fault_nats: NatsServer
) -> None:
    before = [(await upload(client, stack, n)) for n in range(3)]
    await asyncio.to_thread(fault_nats.stop)
    during = [(await upload(client, stack, n)) for n in range(3, 15)]
    assert [r.status_code for r in before + during] == [201] * 15, [
        r.text for r in before + during if r.status_code != 201
    ]
    backlog = await OutboxRepository(stack.state.sessions).backlog()
    assert backlog.pending >= 12, "the uploads during the outage should wait in the outbox"
    ready = await client.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["bus"]["ok"] is False

    await asyncio.to_thread(fault_nats.start)
    file_ids = [r.json()["file_id"] for r in before + during]
    await counter.wait_for(file_ids)
    await drained(stack)
    assert set(counter.applied) == set(file_ids), "an event was lost"
    assert set(counter.applied.values()) == {1}, f"applied twice: {counter.applied}"
    assert await handled_records(stack, COUNTER) == 15
    assert await stream_messages(fault_nats) == 15, "NATS stored a duplicate"


# -- (b) relay killed after the bus acknowledged, before it marked the row ------------------


class RelayKilled(BaseException):
    """Stands for the relay's process dying: nothing after it runs."""


class KilledBeforeMark(OutboxRepository):
    """The real repository, except that the relay dies where it would mark rows sent."""

    async def mark_published(self, ids: Sequence[str]) -> None:
        if ids:
            raise RelayKilled(ids)


async def test_relay_killed_between_ack_and_mark_publishes_again_and_applies_once(
    client: httpx.AsyncClient,
    stack: Stack,
    counter: UploadCounter,
    fault_nats: NatsServer,
    wire: list[nats.aio.msg.Msg],
) -> None:
    """Simulation: the app's relay is stopped; a second ``OutboxRelay`` runs its real
    ``run_once`` (claim with a short lease, publish, NATS acknowledges) and dies at the
    exact point where it would mark the row published. The app's relay, started again,
    finds the row due once the lease ends and publishes it again."""
    await stack.state.relay.stop()
    file_id = (await upload(client, stack, 0)).json()["file_id"]
    doomed = OutboxRelay(stack.state.sessions, stack.state.bus, lease=0.5)
    doomed.repository = KilledBeforeMark(stack.state.sessions)
    with pytest.raises(RelayKilled):
        await doomed.run_once()
    assert await stream_messages(fault_nats) == 1, "the bus did not acknowledge the publish"
    assert (await OutboxRepository(stack.state.sessions).backlog()).pending == 1

    stack.state.relay.start()
    await drained(stack)
    await counter.wait_for([file_id])
    assert counter.applied == Counter({file_id: 1})
    assert len(wire) == 2, "the row was not published a second time"
    assert {(m.headers or {}).get("Nats-Msg-Id") for m in wire} == {
        orjson.loads(wire[0].data)["event_id"]
    }
    assert await stream_messages(fault_nats) == 1, "NATS kept the re-published duplicate"


# -- (c) an external service publishes one event twice ---------------------------------------


async def test_an_event_published_twice_by_an_external_service_is_applied_once(
    client: httpx.AsyncClient, stack: Stack, counter: UploadCounter, fault_nats: NatsServer
) -> None:
    """Twice with the same ``Nats-Msg-Id`` (NATS drops the copy) and twice more with none
    (NATS keeps both: the consumer's record of event ids keeps the effect single)."""
    event = FileUploaded(file_id="ext-file-1", user_id="storage-service", organization_id=ORG)
    body = event.to_json()
    connection = await nats.connect(fault_nats.url)
    try:
        js = connection.jetstream()
        first = await js.publish("file.uploaded", body, headers={"Nats-Msg-Id": event.event_id})
        copy = await js.publish("file.uploaded", body, headers={"Nats-Msg-Id": event.event_id})
        assert copy.duplicate and copy.seq == first.seq
        for _ in range(2):
            await js.publish("file.uploaded", body)
    finally:
        await connection.close()
    assert await stream_messages(fault_nats) == 3

    await counter.wait_for([event.file_id])
    async with asyncio.timeout(10):
        while (await stack.state.bus.check()).consumer_lag.get(COUNTER):
            await asyncio.sleep(0.05)
    assert counter.applied == Counter({event.file_id: 1})
    assert await handled_records(stack, COUNTER) == 1


# -- (d) poison messages ---------------------------------------------------------------------


async def test_poison_messages_become_dead_letters_and_do_not_block_the_next(
    client: httpx.AsyncClient, stack: Stack, fault_nats: NatsServer
) -> None:
    file_id = (await upload(client, stack, 0)).json()["file_id"]
    malformed = b'{"event_type": "file.deleted", "file_id": '
    no_id = orjson.dumps(
        {"event_type": "file.deleted", "timestamp": "2025-01-01T00:00:00Z", "file_id": file_id,
         "user_id": "storage", "organization_id": ORG}
    )  # fmt: skip
    valid = FileDeleted(file_id=file_id, user_id="storage", organization_id=ORG)
    connection = await nats.connect(fault_nats.url)
    try:
        js = connection.jetstream()
        await js.publish("file.deleted", malformed, headers={"Nats-Msg-Id": "poison-1"})
        await js.publish("file.deleted", no_id)
        await js.publish("file.deleted", valid.to_json(), headers={"Nats-Msg-Id": valid.event_id})
    finally:
        await connection.close()

    headers = stack.auth("admin-1", ORG, Role.ADMIN)
    async with asyncio.timeout(15):  # the valid event after the poison is applied
        while (
            await client.get(f"/api/v1/media/files/{file_id}", headers=headers)
        ).status_code != 404:
            await asyncio.sleep(0.05)
    dead = DeadLetterRepository(stack.state.sessions)
    # Every consumer of file.deleted dead-letters both poisons, each in its own time (and
    # purge's valid event may be applied first): wait for purge's own two letters.
    async with asyncio.timeout(10):
        while len(await dead.list(source=PURGE_CONSUMER)) < 2:
            await asyncio.sleep(0.05)
    letters = {letter.payload: letter for letter in await dead.list(source=PURGE_CONSUMER)}
    assert set(letters) == {malformed, no_id}, "the poison was not kept byte for byte"
    assert letters[malformed].msg_id == "poison-1"
    assert letters[no_id].msg_id is None
    assert "event_id" in letters[no_id].error
    assert all(letter.attempts == 1 for letter in letters.values()), "poison was retried"
    assert await handled_records(stack, PURGE_CONSUMER) == 1
    async with asyncio.timeout(10):
        while [info async for info in stack.state.blobs.list("files/")]:
            await asyncio.sleep(0.05)
