"""Idempotent consumers and dead letters, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from events.conftest import POLICY, Sessions, eventually
from media_service.events.bus import DeadLetter, Delivery, RejectMessage
from media_service.events.consumers import (
    _INSERT_NEW_HANDLED,
    DeadLetterRepository,
    dead_letter_recorder,
    idempotent,
    start_consumer,
)
from media_service.events.envelope import FileDeleted, FileUploaded
from media_service.events.memory import MemoryEventBus
from media_service.events.models import HandledEvent

EFFECT = "effect"


def deleted(event_id: str | None = None) -> FileDeleted:
    extra = {"event_id": event_id} if event_id else {}
    return FileDeleted(file_id="file_1", user_id="alice", organization_id="org_a", **extra)


def delivery(payload: bytes, *, subject: str = "file.deleted", attempt: int = 1) -> Delivery:
    return Delivery("on-delete", subject, payload, f"msg-{uuid.uuid4().hex}", attempt)


async def count_effects(sessions: Sessions) -> int:
    async with sessions() as session:
        n = await session.scalar(
            select(func.count()).select_from(HandledEvent).where(HandledEvent.consumer == EFFECT)
        )
    return int(n or 0)


async def handled(sessions: Sessions, consumer: str) -> list[str]:
    async with sessions() as session:
        rows = await session.scalars(
            select(HandledEvent.event_id).where(HandledEvent.consumer == consumer)
        )
        return list(rows)


def make_consumer(fail_times: int = 0, delay: float = 0.0):  # type: ignore[no-untyped-def]
    failures = {"left": fail_times}

    @idempotent("on-delete", FileDeleted)
    async def on_delete(session: AsyncSession, event: FileDeleted) -> None:
        session.add(HandledEvent(consumer=EFFECT, event_id=uuid.uuid4().hex))
        await session.flush()
        await asyncio.sleep(delay)
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("handler failed after its effect")

    return on_delete


async def test_effect_and_record_commit_together(sessions: Sessions) -> None:
    consumer = make_consumer(fail_times=1)
    handler = consumer.bind(sessions)
    event = deleted()

    with pytest.raises(RuntimeError):
        await handler(delivery(event.to_json()))
    assert await count_effects(sessions) == 0, "the effect of a failed handler was kept"
    assert await handled(sessions, "on-delete") == []

    await handler(delivery(event.to_json(), attempt=2))
    await handler(delivery(event.to_json(), attempt=3))  # a redelivery: changes nothing
    assert await count_effects(sessions) == 1
    assert await handled(sessions, "on-delete") == [event.event_id]


async def test_concurrent_copies_of_one_event_apply_once(sessions: Sessions) -> None:
    handler = make_consumer(delay=0.05).bind(sessions)
    payload = deleted().to_json()
    results = await asyncio.gather(
        *(handler(delivery(payload)) for _ in range(4)), return_exceptions=True
    )
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert await count_effects(sessions) == 1


async def test_distinct_events_each_apply(sessions: Sessions) -> None:
    handler = make_consumer().bind(sessions)
    for _ in range(3):
        await handler(delivery(deleted().to_json()))
    assert await count_effects(sessions) == 3


@pytest.mark.parametrize(
    ("payload", "subject", "reason"),
    [
        (b"{not json", "file.deleted", "not JSON"),
        (b"[1, 2]", "file.deleted", "JSON object"),
        (
            b'{"event_type": "file.deleted", "timestamp": "2025-12-11T12:00:00Z",'
            b' "file_id": "f", "user_id": "u", "organization_id": "o"}',
            "file.deleted",
            "missing envelope field(s): event_id",
        ),
        (deleted().to_json(), "file.uploaded", "published on subject"),
        (
            FileUploaded(file_id="f", user_id="u", organization_id="o").to_json(),
            "file.uploaded",
            "handles file.deleted, not file.uploaded",
        ),
    ],
    ids=["malformed", "array", "no-event-id", "wrong-subject", "wrong-type"],
)
async def test_invalid_messages_are_rejected(
    sessions: Sessions, payload: bytes, subject: str, reason: str
) -> None:
    handler = make_consumer().bind(sessions)
    with pytest.raises(RejectMessage, match=reason.replace("(", r"\(").replace(")", r"\)")):
        await handler(delivery(payload, subject=subject))
    assert await count_effects(sessions) == 0


async def test_malformed_message_becomes_a_dead_letter_row(sessions: Sessions) -> None:
    bus = MemoryEventBus(sessions, poll_interval=0.1)
    await bus.start()
    try:
        await start_consumer(bus, sessions, make_consumer(), policy=POLICY)
        poison = b'{"event_type": "file.deleted", "file_id": \x00'
        await bus.publish("file.deleted", poison, "poison-1")
        repository = DeadLetterRepository(sessions)

        async def recorded() -> bool:
            return len(await repository.list()) == 1

        await eventually(recorded)
        [letter] = await repository.list()
        assert letter.source == "on-delete" and letter.subject == "file.deleted"
        assert letter.payload == poison and letter.msg_id == "poison-1"
        assert letter.attempts == 1 and letter.error.startswith("RejectMessage: not JSON")
        assert letter.retried_at is None
    finally:
        await bus.close()


async def test_dead_letter_repository_lists_and_marks_retried(sessions: Sessions) -> None:
    record = dead_letter_recorder(sessions)
    await record(DeadLetter("c1", "file.uploaded", b"\x00\xff", "m1", 5, "boom \x00 nul"))
    await record(DeadLetter("c2", "file.deleted", b"{}", None, 1, "bad"))
    repository = DeadLetterRepository(sessions)

    letters = await repository.list()
    assert {letter.source for letter in letters} == {"c1", "c2"}
    [first] = await repository.list(source="c1")
    assert first.payload == b"\x00\xff" and first.attempts == 5 and first.id.startswith("dlq_")
    assert first.error == "boom \\0 nul"
    assert await repository.mark_retried(first.id) is True
    assert await repository.mark_retried(first.id) is False
    assert [letter.source for letter in await repository.list()] == ["c2"]
    assert len(await repository.list(include_retried=True)) == 2
    fetched = await repository.get(first.id)
    assert fetched is not None and fetched.retried_at is not None


def test_consumer_names_are_durable_names() -> None:
    with pytest.raises(ValueError, match="durable consumer name"):
        idempotent("has.dots", FileDeleted)
    assert make_consumer().subjects == ("file.deleted",)


async def test_concurrent_deliveries_share_transactions_and_a_failure_stays_with_its_event(
    sessions: Sessions,
) -> None:
    """Group commit on the real databases: of 16 deliveries at once, the one whose handler
    fails is neither applied nor recorded, and does not keep the others from committing."""
    poisoned = deleted()

    @idempotent("on-delete", FileDeleted)
    async def on_delete(session: AsyncSession, event: FileDeleted) -> None:
        session.add(HandledEvent(consumer=EFFECT, event_id=event.event_id))
        await session.flush()
        if event.event_id == poisoned.event_id:
            raise RuntimeError("poisoned")

    handler = on_delete.bind(sessions)
    events = [deleted() for _ in range(15)] + [poisoned]
    results = await asyncio.gather(
        *(handler(delivery(e.to_json())) for e in events), return_exceptions=True
    )
    assert [type(r) for r in results] == [type(None)] * 15 + [RuntimeError]
    good = {e.event_id for e in events[:15]}
    assert set(await handled(sessions, "on-delete")) == good
    assert set(await handled(sessions, EFFECT)) == good
    for e in events[:15]:  # redelivered: nothing changes
        await handler(delivery(e.to_json(), attempt=2))
    assert await count_effects(sessions) == 15


async def test_deliveries_at_once_are_applied_in_a_few_transactions(sessions: Sessions) -> None:
    transactions: list[AsyncSession] = []  # the objects, not ids: an id can be reused

    @idempotent("on-delete", FileDeleted)
    async def on_delete(session: AsyncSession, event: FileDeleted) -> None:
        if not any(session is seen for seen in transactions):
            transactions.append(session)
        session.add(HandledEvent(consumer=EFFECT, event_id=event.event_id))

    handler = on_delete.bind(sessions)
    events = [deleted() for _ in range(16)]
    await asyncio.gather(*(handler(delivery(e.to_json())) for e in events))
    assert set(await handled(sessions, EFFECT)) == {e.event_id for e in events}
    assert len(transactions) == 2  # the first alone, the 15 that queued behind it together


def test_the_batch_insert_is_compiled_once() -> None:
    # A statement that carries its rows (``.values(rows)``) has no cache key, so it was
    # compiled again for every batch.
    for statement in _INSERT_NEW_HANDLED.values():
        assert statement._generate_cache_key() is not None
