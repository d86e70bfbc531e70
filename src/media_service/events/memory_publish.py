"""The in-process bus's publishes, written in shared transactions.

A publish stores one ``bus_deliveries`` row per durable consumer whose subjects match. The
relay publishes a batch of outbox rows concurrently, and on SQLite each transaction of its
own took the write lock and read ``bus_consumers`` again. Here the publishes that arrive
while a transaction is being written wait for the next one, which reads the consumers
once and inserts every delivery of the batch in one statement. A lone publish is written
at once, as before. A failed transaction fails every publish in it (the database is the
bus: "not accepted"), and the relay retries each of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media_service.db.base import utcnow
from media_service.db.uow import conflict_insert, unit_of_work
from media_service.events.bus import subject_matches
from media_service.events.models import BusConsumer, BusDelivery

MAX_BATCH = 64  # publishes per transaction: rows × columns stay far below 32,767 parameters


@dataclass(eq=False)
class _Publish:
    subject: str
    payload: bytes
    msg_id: str
    names: asyncio.Future[set[str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class DeliveryWriter:
    """Stores publishes as deliveries, the concurrent ones in one transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._queue: list[_Publish] = []
        self._writing: asyncio.Task[None] | None = None

    async def write(self, subject: str, payload: bytes, msg_id: str) -> set[str]:
        """Store the message for every consumer whose subjects match; their names.

        Raises what the transaction raised. The write goes on in a task of its own, so a
        caller that goes away does not abandon the others' publishes half-way."""
        publish = _Publish(subject, payload, msg_id)
        self._queue.append(publish)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.ensure_future(self._drain())
        return await asyncio.shield(publish.names)

    async def close(self) -> None:
        """Wait for the transaction under way, if any."""
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)

    async def _drain(self) -> None:
        # No await between the empty check and the return: a publish queued while this
        # task runs is always taken by it.
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                names = await self._store(batch)
            except Exception as exc:
                for publish in batch:
                    _settle(publish, exc)
                continue
            except BaseException:  # cancelled: no publish may wait for ever
                stopped = RuntimeError("the bus stopped before the message was stored")
                for publish in batch + self._queue:
                    _settle(publish, stopped)
                self._queue = []
                raise
            for publish, matched in zip(batch, names, strict=True):
                _settle(publish, matched)

    async def _store(self, batch: list[_Publish]) -> list[set[str]]:
        now = utcnow()
        async with unit_of_work(self._sessions) as session:
            result = await session.execute(select(BusConsumer.name, BusConsumer.subjects))
            consumers = [(name, list(patterns)) for name, patterns in result.all()]
            names = [_matching(consumers, publish.subject) for publish in batch]
            values = [
                {"consumer": name, "msg_id": publish.msg_id, "subject": publish.subject,
                 "payload": publish.payload, "attempts": 0, "available_at": now,
                 "created_at": now}
                for publish, matched in zip(batch, names, strict=True)
                for name in sorted(matched)
            ]  # fmt: skip
            if values:
                insert = conflict_insert(session, BusDelivery)
                await session.execute(insert.values(values).on_conflict_do_nothing())
        return names


def _matching(consumers: Sequence[tuple[str, list[str]]], subject: str) -> set[str]:
    return {
        name
        for name, patterns in consumers
        if any(subject_matches(pattern, subject) for pattern in patterns)
    }


def _settle(publish: _Publish, outcome: set[str] | Exception) -> None:
    if isinstance(outcome, Exception):
        publish.names.set_exception(outcome)
        publish.names.exception()  # its caller may have gone: not "never retrieved"
    else:
        publish.names.set_result(outcome)
