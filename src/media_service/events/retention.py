"""How long the event machinery remembers what it has done, and the clean-up after that.

Three tables grow with every event: published ``outbox`` rows (kept for inspection),
``handled_events`` (what makes consumers idempotent) and settled ``bus_deliveries`` (the
in-process bus's delivery state). Rows older than the retention period are deleted in
chunks, so a large backlog never holds a long lock. An event redelivered or re-published
after its ``handled_events`` row is gone would be applied again, so the retention must be
far longer than any redelivery (NATS: minutes) or external re-publish; the default is two
weeks. Dead letters are kept until an operator deals with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import cast

import structlog
from sqlalchemy import ColumnElement, Table, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media_service.db.base import utcnow
from media_service.events.models import BusDelivery, HandledEvent, OutboxMessage

log = structlog.get_logger(__name__)

CHUNK = 5000  # rows per delete statement


@dataclass(frozen=True, slots=True)
class EventHistoryPurge:
    """How many rows of each table were deleted."""

    outbox: int
    handled_events: int
    bus_deliveries: int


async def purge_event_history(
    sessions: async_sessionmaker[AsyncSession], older_than: timedelta, *, chunk: int = CHUNK
) -> EventHistoryPurge:
    """Delete published outbox rows, handled-event records and settled in-process
    deliveries older than ``older_than``."""
    cutoff = utcnow() - older_than
    outbox = cast(Table, OutboxMessage.__table__)
    handled = cast(Table, HandledEvent.__table__)
    deliveries = cast(Table, BusDelivery.__table__)
    purge = EventHistoryPurge(
        outbox=await _delete_in_chunks(
            sessions, outbox, outbox.c.published_at < cutoff, chunk
        ),
        handled_events=await _delete_in_chunks(
            sessions, handled, handled.c.handled_at < cutoff, chunk
        ),
        bus_deliveries=await _delete_in_chunks(
            sessions, deliveries, deliveries.c.settled_at < cutoff, chunk
        ),
    )  # fmt: skip
    if purge.outbox or purge.handled_events or purge.bus_deliveries:
        log.info(
            "event_history_purged",
            outbox=purge.outbox,
            handled_events=purge.handled_events,
            bus_deliveries=purge.bus_deliveries,
            older_than_days=round(older_than.total_seconds() / 86400, 2),
        )
    return purge


async def _delete_in_chunks(
    sessions: async_sessionmaker[AsyncSession],
    table: Table,
    expired: ColumnElement[bool],
    chunk: int,
) -> int:
    """Delete the rows of ``table`` matching ``expired``, ``chunk`` rows per transaction."""
    key = tuple_(*table.primary_key.columns)
    some = select(*table.primary_key.columns).where(expired).limit(chunk)
    total = 0
    while True:
        async with sessions.begin() as session:
            result = await session.execute(delete(table).where(key.in_(some)))
        deleted = int(getattr(result, "rowcount", 0) or 0)
        total += deleted
        if deleted < chunk:
            return total
