"""Idempotent event consumers and the dead-letter record.

An event handler is a coroutine ``handle(session, event)`` wrapped by
:func:`idempotent`: the wrapper validates the message, inserts ``handled_events``
(consumer, event_id) first and runs the handler in the same unit of work, so the effect
and the record commit together. A redelivered or re-published event (same event id)
finds the record and changes nothing; of two copies handled at the same moment, one
waits for the other's transaction and then skips. Events delivered together share a
transaction (:mod:`group_commit`). A message that is not a valid event is rejected at
once and ends up in ``dead_letters``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

import structlog
from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import ReturningInsert

from media_service.db.base import utcnow
from media_service.db.uow import unit_of_work
from media_service.events.bus import (
    DeadLetter,
    DeadLetterCallback,
    Delivery,
    DeliveryPolicy,
    EventBus,
    Handler,
    RejectMessage,
    validate_durable_name,
)
from media_service.events.envelope import Event, InvalidEvent, parse_event
from media_service.events.group_commit import GroupCommit
from media_service.events.models import DeadLetterRecord, HandledEvent
from media_service.events.observer import event_observer
from media_service.ids import new_id

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=Event)
BATCHED_IN_FLIGHT = 64  # deliveries a group-committing consumer holds at once
EventHandler = Callable[[AsyncSession, E], Awaitable[None]]


@dataclass(frozen=True)
class IdempotentConsumer(Generic[E]):
    """A named handler of one event type; ``name`` is also its durable consumer name."""

    name: str
    event_type: type[E]
    handle: EventHandler[E]
    max_batch: int = 32  # events applied in one transaction, at most

    @property
    def subjects(self) -> tuple[str, ...]:
        return (self.event_type.model_fields["event_type"].default,)

    def bind(self, sessions: async_sessionmaker[AsyncSession]) -> Handler:
        """The bus handler: validate, skip if handled, else handle and record together."""

        async def apply_batch(events: Sequence[E]) -> set[str]:
            async with unit_of_work(sessions) as session:
                ids = [event.event_id for event in events]
                new = await HandledEvents(session).record_new(self.name, ids)
                for event in events:
                    if event.event_id in new:
                        # A batch holds other deliveries' events: each handler's lines
                        # carry the id of the event it is applying.
                        with _log_context(consumer=self.name, event_id=event.event_id):
                            await self.handle(session, event)
            return new

        async def apply_one(event: E) -> bool:
            return event.event_id in await apply_batch([event])

        together = GroupCommit(apply_batch, apply_one, self.max_batch)

        async def apply(delivery: Delivery) -> bool:
            try:
                event = parse_event(delivery.payload, delivery.subject)
            except InvalidEvent as exc:
                raise RejectMessage(str(exc)) from None
            if not isinstance(event, self.event_type):
                raise RejectMessage(f"{self.name} handles {self.subjects[0]}, not {event.subject}")
            if await together.apply(event):
                return True
            log.info("event_already_handled", consumer=self.name, event_id=event.event_id)
            return False

        async def on_delivery(delivery: Delivery) -> None:
            observer = event_observer(sessions)
            if observer is None:
                await apply(delivery)
                return
            try:
                applied = await apply(delivery)
            except Exception:
                observer.failed(self.name)
                raise
            (observer.handled if applied else observer.duplicate)(self.name)

        return on_delivery


@contextmanager
def _log_context(**values: str) -> Iterator[None]:
    """Bind ``values`` to structlog's context while a handler runs. Resets with tokens:
    structlog's ``bound_contextvars`` copies the whole context twice per call, which
    showed up per event in the consumer's profile."""
    tokens = structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def idempotent(
    consumer_name: str, event_type: type[E], *, max_batch: int = 32
) -> Callable[[EventHandler[E]], IdempotentConsumer[E]]:
    """Decorate ``async def handle(session, event)`` as the idempotent consumer
    ``consumer_name`` of ``event_type``::

        @idempotent("metadata-on-file-uploaded", FileUploaded)
        async def create_metadata(session: AsyncSession, event: FileUploaded) -> None: ...

    ``max_batch`` bounds how many events share a transaction; 1 for a handler whose work
    outside the database (deleting blobs, calling a service) should not wait for others'.
    """
    validate_durable_name(consumer_name)

    def wrap(handle: EventHandler[E]) -> IdempotentConsumer[E]:
        return IdempotentConsumer(consumer_name, event_type, handle, max_batch)

    return wrap


# Core inserts: the ORM-enabled ``insert(HandledEvent)`` goes through the ORM's bulk
# persistence path, which costs CPU on every handled event.
_HANDLED = cast(Table, HandledEvent.__table__)
_INSERT_HANDLED = insert(_HANDLED)
# Executed with a list of rows (one multi-row statement, "insertmanyvalues"), never with
# ``.values(rows)``: a statement carrying its rows has no cache key and was compiled
# again for every batch (0.2 ms of CPU each).
_INSERT_NEW_HANDLED: dict[str, ReturningInsert[str]] = {
    dialect: module.insert(_HANDLED).on_conflict_do_nothing().returning(_HANDLED.c.event_id)
    for dialect, module in (("postgresql", postgresql), ("sqlite", sqlite))
}


def _insert_ignoring_conflicts(session: AsyncSession) -> ReturningInsert[str]:
    dialect = session.get_bind().dialect.name
    return _INSERT_NEW_HANDLED["postgresql" if dialect == "postgresql" else "sqlite"]


class HandledEvents:
    """The ``handled_events`` ledger: which consumer (or job type) applied which event (or
    job). Recording happens in the same transaction as the effect."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, consumer: str, event_id: str) -> bool:
        """Record that ``consumer`` handles ``event_id``; False if it already did (the
        transaction is then unusable and gets rolled back)."""
        try:
            # On PostgreSQL a concurrent copy waits here for the other transaction, then
            # fails on the primary key once that one commits.
            await self.session.execute(
                _INSERT_HANDLED,
                {"consumer": consumer, "event_id": event_id, "handled_at": utcnow()},
            )
        except IntegrityError:
            return False
        return True

    async def record_new(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        """Record that ``consumer`` handles ``event_ids`` (distinct); the ids it had not
        handled before. On PostgreSQL a copy being recorded by a concurrent transaction
        waits for it, and counts as handled once that one commits."""
        if not event_ids:
            return set()
        now = utcnow()
        rows = [{"consumer": consumer, "event_id": e, "handled_at": now} for e in event_ids]
        result = await self.session.execute(_insert_ignoring_conflicts(self.session), rows)
        return set(result.scalars())

    async def contains(self, consumer: str, event_id: str) -> bool:
        found = await self.session.scalar(
            select(HandledEvent.event_id).where(
                HandledEvent.consumer == consumer, HandledEvent.event_id == event_id
            )
        )
        return found is not None


async def start_consumer(
    bus: EventBus,
    sessions: async_sessionmaker[AsyncSession],
    consumer: IdempotentConsumer[E],
    policy: DeliveryPolicy | None = None,
) -> None:
    """Subscribe ``consumer`` to its event type, dead letters going to the database.

    A consumer that applies events in shared transactions holds more of them at once
    (``BATCHED_IN_FLIGHT``), so that its transactions fill up.
    """
    if policy is None and consumer.max_batch > 1:
        policy = DeliveryPolicy(max_in_flight=BATCHED_IN_FLIGHT)
    await bus.subscribe(
        consumer.name,
        consumer.subjects,
        consumer.bind(sessions),
        on_dead_letter=dead_letter_recorder(sessions),
        policy=policy,
    )


# -- dead letters -------------------------------------------------------------------------


def dead_letter_recorder(sessions: async_sessionmaker[AsyncSession]) -> DeadLetterCallback:
    """A dead-letter callback that stores each letter in ``dead_letters``."""
    repository = DeadLetterRepository(sessions)

    async def record(letter: DeadLetter) -> None:
        await repository.add(letter)

    return record


class DeadLetterRepository:
    """Dead letters for operators: add, list, find, and mark as retried."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(self, letter: DeadLetter) -> str:
        record_id = new_id("dlq")
        async with self._sessions.begin() as session:
            session.add(
                DeadLetterRecord(
                    id=record_id,
                    source=letter.consumer,
                    subject=letter.subject,
                    msg_id=letter.msg_id,
                    payload=letter.payload,
                    error=letter.error.replace("\x00", "\\0"),  # PostgreSQL text has no NUL
                    attempts=letter.attempts,
                    created_at=utcnow(),
                )
            )
        return record_id

    async def list(
        self, *, source: str | None = None, include_retried: bool = False, limit: int = 100
    ) -> Sequence[DeadLetterRecord]:
        query = select(DeadLetterRecord).order_by(DeadLetterRecord.created_at.desc())
        if source is not None:
            query = query.where(DeadLetterRecord.source == source)
        if not include_retried:
            query = query.where(DeadLetterRecord.retried_at.is_(None))
        async with self._sessions() as session:
            return (await session.execute(query.limit(limit))).scalars().all()

    async def count(
        self, *, include_retried: bool = False, subject_prefix: str | None = None
    ) -> int:
        """How many dead letters there are (not yet retried, by default; only those whose
        subject starts with ``subject_prefix``, when given): for metrics."""
        query = select(func.count()).select_from(DeadLetterRecord)
        if subject_prefix is not None:
            query = query.where(
                DeadLetterRecord.subject.startswith(subject_prefix, autoescape=True)
            )
        if not include_retried:
            query = query.where(DeadLetterRecord.retried_at.is_(None))
        async with self._sessions() as session:
            return int(await session.scalar(query) or 0)

    async def get(self, record_id: str) -> DeadLetterRecord | None:
        async with self._sessions() as session:
            return await session.get(DeadLetterRecord, record_id)

    async def mark_retried(self, record_id: str) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(DeadLetterRecord)
                .where(DeadLetterRecord.id == record_id, DeadLetterRecord.retried_at.is_(None))
                .values(retried_at=utcnow())
            )
        return bool(getattr(result, "rowcount", 0))


class DeadLetterQueries:
    """Dead-letter SQL inside the caller's unit of work (the admin API and the CLI), where
    :class:`DeadLetterRepository` opens transactions of its own for the bus callbacks."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def newest_before(
        self, cursor: str | None, *, include_retried: bool, limit: int
    ) -> Sequence[DeadLetterRecord]:
        """Up to ``limit`` records, newest first, older than ``cursor`` when given."""
        query = select(DeadLetterRecord).order_by(DeadLetterRecord.id.desc()).limit(limit)
        if cursor is not None:
            query = query.where(DeadLetterRecord.id < cursor)
        if not include_retried:
            query = query.where(DeadLetterRecord.retried_at.is_(None))
        return (await self._session.execute(query)).scalars().all()

    async def get_for_update(self, record_id: str) -> DeadLetterRecord | None:
        """The record, locked until the caller's transaction ends (no double retry)."""
        return await self._session.get(DeadLetterRecord, record_id, with_for_update=True)
