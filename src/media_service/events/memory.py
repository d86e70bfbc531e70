"""The in-process bus: handlers run in this process, state lives in the database.

Publishing writes one ``bus_deliveries`` row per durable consumer whose subjects match
(in a transaction that concurrent publishes share, see ``memory_publish``; as durable as
the outbox it comes from) and wakes the consumers of this process; consumers of other
processes on the same database find it within one poll interval: one read per interval
for all the consumers of a process (the bus's watcher), which wakes those with a delivery
due; an idle consumer reads nothing itself. A consumer claims due rows by pushing them one
ack-wait ahead (a lease), so a crashed consumer's messages come back after ``ack_wait`` —
the same redelivery, back-off and dead-letter rules as on NATS (see :func:`bus.deliver`).

Unlike a JetStream consumer created later with "deliver all", a durable consumer here
receives only what was published after it was first subscribed; message ids are
de-duplicated for as long as their rows are kept, not only inside a window.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import structlog
from sqlalchemy import ColumnElement, Table, Update, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media_service.db.base import utcnow
from media_service.db.engine import create_read_session_factory
from media_service.db.uow import unit_of_work
from media_service.events.bus import (
    BusError,
    BusHealth,
    BusUnavailable,
    DeadLetterCallback,
    Delivery,
    DeliveryPolicy,
    Handler,
    deliver,
    validate_subject,
    validate_subscription,
)
from media_service.events.memory_publish import DeliveryWriter
from media_service.events.models import BusConsumer, BusDelivery
from media_service.events.scrub import Mentions
from media_service.tasks import cancel_and_wait, stop_gracefully

log = structlog.get_logger(__name__)

DEFAULT_POLL_INTERVAL = 1.0
IDLE_WAIT_CAP = 60.0  # seconds; an idle consumer is woken, it does not poll
SETTLE_TIMEOUT = 10.0  # seconds; an unsettled lease comes back after ack_wait anyway
# Subjects that must reach a consumer (jobs): like NATS's work-queue stream, which keeps
# them until a consumer comes, rather than the events' "nobody listens, nothing kept".
QUEUED_PREFIX = "jobs."


class MemoryEventBus:
    """The default bus: no server, durable through the database."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        url: str = "memory://",
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        self.url = url
        self._sessions = sessions
        self._poll_interval = poll_interval
        self._consumers: list[_Consumer] = []
        # Idle polling reads without taking SQLite's write lock (see _Consumer._claim).
        self._readers = create_read_session_factory(sessions.kw["bind"])
        self._watcher: asyncio.Task[None] | None = None
        self._writer = DeliveryWriter(sessions)

    async def start(self) -> None:
        """Nothing to connect: the database is opened by whoever built ``sessions``."""

    async def publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        validate_subject(subject)
        try:
            names = await self._writer.write(subject, payload, msg_id)
        except Exception as exc:  # any database error means "not accepted"
            raise BusUnavailable(f"in-process bus could not store {msg_id}: {exc}") from exc
        if not names and subject.startswith(QUEUED_PREFIX):
            # A job nobody consumes yet would be lost: refuse it, so it stays in the outbox
            # (retried by the relay) until a worker of its type has subscribed once.
            raise BusError(f"no worker has ever subscribed to {subject!r}; {msg_id} waits")
        for consumer in self._consumers:
            if consumer.name in names:
                consumer.wake()

    async def subscribe(
        self,
        durable_name: str,
        subjects: Sequence[str],
        handler: Handler,
        *,
        on_dead_letter: DeadLetterCallback,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        patterns = validate_subscription(durable_name, subjects)
        async with unit_of_work(self._sessions) as session:
            row = await session.get(BusConsumer, durable_name)
            if row is None:
                session.add(BusConsumer(name=durable_name, subjects=patterns))
            else:
                row.subjects = patterns
        consumer = _Consumer(
            durable_name, self._sessions, self._readers, handler, on_dead_letter,
            policy or DeliveryPolicy(), self._poll_interval,
        )  # fmt: skip
        self._consumers.append(consumer)
        consumer.start()
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="bus-due-watcher")

    async def check(self) -> BusHealth:
        try:
            async with self._sessions() as session:
                names = (await session.execute(select(BusConsumer.name))).scalars().all()
                rows = await session.execute(
                    select(BusDelivery.consumer, func.count())
                    .where(BusDelivery.settled_at.is_(None))
                    .group_by(BusDelivery.consumer)
                )
                lag = dict.fromkeys(names, 0) | {name: int(n) for name, n in rows.all()}
        except Exception as exc:  # the database is the bus: its error is the bus's
            raise BusUnavailable(f"in-process bus cannot read its state: {exc}") from exc
        return BusHealth(self.url, "in-process, stored in the database", lag)

    async def forget_messages(self, mentions_: Mentions) -> int:
        """Delete the ``bus_deliveries`` rows (pending or settled) that mention the person."""
        total = 0
        async with unit_of_work(self._sessions) as session:
            dialect = session.get_bind().dialect.name
            for condition in mentions_.in_json(_DELIVERIES.c.payload, dialect):
                result = await session.execute(delete(_DELIVERIES).where(condition))
                total += int(result.rowcount)  # type: ignore[attr-defined]
        return total

    async def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await cancel_and_wait(watcher)  # it only reads: nothing to finish
        consumers, self._consumers = self._consumers, []
        await asyncio.gather(*(consumer.stop() for consumer in consumers))
        await self._writer.close()

    async def _watch(self) -> None:
        """Every poll interval, one read for all of this process's consumers; wakes each
        one with a delivery due: published by another process, or a lease run out. (A
        consumer waits for its own retries' delays itself.) Fifteen consumers each
        reading once a second were most of an idle service's CPU."""
        failures = 0
        while True:
            try:
                due = await self._due_by_consumer()
                failures = 0
            except Exception as exc:  # database down: the consumers' own waits go on
                failures += 1
                log.warning("bus_watch_failed", error=str(exc))
                await asyncio.sleep(min(self._poll_interval * 2**failures, 30.0))
                continue
            now = utcnow()
            for consumer in self._consumers:
                when = due.get(consumer.name)
                if when is not None and when <= now:
                    consumer.wake()
            await asyncio.sleep(self._poll_interval)

    async def _due_by_consumer(self) -> dict[str, datetime]:
        names = sorted({consumer.name for consumer in self._consumers})
        async with self._readers() as session:
            rows = await session.execute(
                select(BusDelivery.consumer, func.min(BusDelivery.available_at))
                .where(BusDelivery.consumer.in_(names), BusDelivery.settled_at.is_(None))
                .group_by(BusDelivery.consumer)
            )
            return {name: when for name, when in rows.all() if when is not None}


# -- one durable consumer -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Claimed:
    msg_id: str
    subject: str
    payload: bytes
    attempts: int


_DELIVERIES = cast(Table, BusDelivery.__table__)


class _Consumer:
    def __init__(
        self,
        name: str,
        sessions: async_sessionmaker[AsyncSession],
        readers: async_sessionmaker[AsyncSession],
        handler: Handler,
        on_dead_letter: DeadLetterCallback,
        policy: DeliveryPolicy,
        poll_interval: float,
    ) -> None:
        self.name = name
        self._sessions = sessions
        self._readers = readers
        self._handler = handler
        self._on_dead_letter = on_dead_letter
        self._policy = policy
        self._poll_interval = poll_interval
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"bus-consumer-{self.name}")

    def wake(self) -> None:
        self._wakeup.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await stop_gracefully(task, self._request_stop)

    def _request_stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            woken = self._wakeup.is_set()  # by a publish here or the watcher: something is due
            self._wakeup.clear()
            try:
                batch, next_due = await self._claim(known_due=woken)
                failures = 0
            except Exception as exc:  # database down: keep the consumer alive
                failures += 1
                log.warning("bus_consumer_claim_failed", consumer=self.name, error=str(exc))
                await self._sleep(min(self._poll_interval * 2**failures, 30.0))
                continue
            if batch:
                await self._handle(batch)
                continue
            await self._sleep(self._idle_wait(next_due))

    async def _handle(self, batch: list[_Claimed]) -> None:
        """Run the batch's handlers concurrently, then settle them in one transaction."""
        settles = [_Settle(claimed) for claimed in batch]
        try:
            await asyncio.gather(*(self._process(settle) for settle in settles))
        finally:
            # Also when stopping: unfinished deliveries are handed back at once.
            try:
                # Bounded: on a busy SQLite the write lock can take up to busy_timeout.
                await asyncio.shield(asyncio.wait_for(self._apply(settles), SETTLE_TIMEOUT))
            except Exception as exc:  # the leases bring these messages back later
                log.warning("bus_settle_failed", consumer=self.name, error=str(exc))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()

    def _idle_wait(self, next_due: datetime | None) -> float:
        """Until the next delayed delivery is due, or (nothing pending) until woken: by a
        publish in this process or by the bus's watcher. The cap is a safety net only."""
        if next_due is None:
            return IDLE_WAIT_CAP
        wait = (next_due - utcnow()).total_seconds()
        return float(min(max(wait, 0.0), IDLE_WAIT_CAP))

    def _pending(self) -> tuple[ColumnElement[bool], ...]:
        return (BusDelivery.consumer == self.name, BusDelivery.settled_at.is_(None))

    async def _claim(self, *, known_due: bool = False) -> tuple[list[_Claimed], datetime | None]:
        """The deliveries claimed now, or none and when the next one is due.

        Unless ``known_due`` (woken because a delivery is due), a read without the write
        lock first asks whether anything is; woken, the claim goes first, and the read
        follows only when it found nothing (another process's consumer was quicker). The
        reads before claims were about 6% of the statements of an upload with its jobs."""
        if not known_due:
            next_due = await self._next_due()
            if next_due is None or next_due > utcnow():
                return [], next_due  # the common case, answered without the write lock
        claimed = await self._claim_due()
        if claimed or not known_due:
            return claimed, None
        return [], await self._next_due()

    async def _claim_due(self) -> list[_Claimed]:
        now = utcnow()
        lease_until = now + timedelta(seconds=self._policy.ack_wait)
        due = (
            select(_DELIVERIES.c.msg_id)
            .where(*self._pending(), BusDelivery.available_at <= now)
            .order_by(BusDelivery.available_at, BusDelivery.created_at)
            .limit(self._policy.max_in_flight)
            .with_for_update(skip_locked=True)
        )
        # One statement, no ORM objects: claiming is per event on an idle service.
        claim = (
            update(_DELIVERIES)
            .where(_DELIVERIES.c.consumer == self.name, _DELIVERIES.c.msg_id.in_(due))
            .values(attempts=_DELIVERIES.c.attempts + 1, available_at=lease_until)
            .returning(
                _DELIVERIES.c.created_at,
                _DELIVERIES.c.msg_id,
                _DELIVERIES.c.subject,
                _DELIVERIES.c.payload,
                _DELIVERIES.c.attempts,
            )
        )
        async with unit_of_work(self._sessions) as session:
            rows = (await session.execute(claim)).all()
        in_order = sorted(rows, key=lambda row: (row[0], row[1]))  # RETURNING has no order
        return [_Claimed(*row[1:]) for row in in_order]

    async def _next_due(self) -> datetime | None:
        """When the earliest unsettled delivery is (or was) due: one read per idle poll,
        which answers both "claim now?" and "how long to sleep?"."""
        async with self._readers() as session:
            return await session.scalar(
                select(func.min(BusDelivery.available_at)).where(*self._pending())
            )

    async def _process(self, settle: _Settle) -> None:
        claimed = settle.claimed
        delivery = Delivery(
            self.name, claimed.subject, claimed.payload, claimed.msg_id, claimed.attempts
        )
        await deliver(delivery, self._handler, self._policy, self._on_dead_letter, settle)

    async def _apply(self, settles: list[_Settle]) -> None:
        # The attempt count is the fencing token: a row claimed again since is left alone.
        # Verdicts of one kind are written by one executemany.
        by_kind: dict[tuple[str, ...], list[dict[str, object]]] = {}
        for settle in settles:
            values = settle.outcome()
            by_kind.setdefault(tuple(sorted(values)), []).append(
                {"b_msg_id": settle.claimed.msg_id, "b_attempts": settle.claimed.attempts}
                | {f"b_{column}": value for column, value in values.items()}
            )
        async with unit_of_work(self._sessions) as session:
            for columns, params in by_kind.items():
                await session.execute(
                    self._settle_statement(columns), params[0] if len(params) == 1 else params
                )

    def _settle_statement(self, columns: tuple[str, ...]) -> Update:
        table = _DELIVERIES
        return (
            update(table)
            .where(
                table.c.consumer == self.name,
                table.c.msg_id == bindparam("b_msg_id"),
                table.c.attempts == bindparam("b_attempts"),
                table.c.settled_at.is_(None),
            )
            .values({column: bindparam(f"b_{column}") for column in columns})
        )


class _Settle:
    """The verdict on one claimed row, written with the rest of its batch."""

    def __init__(self, claimed: _Claimed) -> None:
        self.claimed = claimed
        self._values: dict[str, datetime | str] | None = None

    async def ack(self) -> None:
        self._values = {"settled_at": utcnow()}

    async def nak(self, delay: float, error: str) -> None:
        self._values = {"available_at": utcnow() + timedelta(seconds=delay), "last_error": error}

    async def term(self, error: str) -> None:
        self._values = {"settled_at": utcnow(), "last_error": error}

    def outcome(self) -> dict[str, datetime | str]:
        """What to write; no verdict (the consumer is stopping) hands the row back now."""
        return self._values if self._values is not None else {"available_at": utcnow()}
