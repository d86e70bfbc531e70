"""The transactional outbox: events and jobs leave only after the change that made them.

A service calls :func:`record_event` inside its unit of work; the row commits or rolls
back with the change. The relay (``events.relay``) publishes pending rows through
:class:`OutboxRepository`, which claims them with a short lease so that two relays never
publish the same row at the same time, and a relay that dies mid-batch leaves its rows
to the other after the lease.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media_service.db.base import utcnow
from media_service.db.uow import after_commit
from media_service.events.bus import validate_subject
from media_service.events.envelope import Event
from media_service.events.models import OutboxKind, OutboxMessage

# session.info key: a callable run after a commit that recorded outbox rows (the relay's
# notify), installed on a session factory by :func:`wake_on_commit`.
OUTBOX_WAKEUP = "outbox_wakeup"


def record_event(session: AsyncSession, event: Event) -> OutboxMessage:
    """Add ``event`` to the outbox in the caller's transaction (never commits)."""
    return record_message(session, "event", event.subject, event.to_document(), event.event_id)


def record_message(
    session: AsyncSession, kind: OutboxKind, subject: str, payload: dict[str, Any], msg_id: str
) -> OutboxMessage:
    """Add any outbox row (an event or a job) in the caller's transaction."""
    validate_subject(subject)
    now = utcnow()
    row = OutboxMessage(
        id=msg_id,
        kind=kind,
        subject=subject,
        payload=payload,
        created_at=now,
        available_at=now,
        attempts=0,
    )
    session.add(row)
    _wake_relay_after_commit(session)
    return row


def wake_on_commit(sessions: async_sessionmaker[AsyncSession], notify: Callable[[], None]) -> None:
    """Make every session of ``sessions`` call ``notify`` after committing outbox rows,
    so the relay publishes at once instead of at its next poll."""
    info = dict(sessions.kw.get("info") or {})
    info[OUTBOX_WAKEUP] = notify
    sessions.configure(info=info)


def _wake_relay_after_commit(session: AsyncSession) -> None:
    notify = session.info.get(OUTBOX_WAKEUP)
    if notify is None:
        return

    async def wake() -> None:
        notify()

    after_commit(session, wake)


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    """An outbox row leased to one relay for publishing."""

    id: str
    kind: str
    subject: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    """Rows not yet published, and how long the oldest has waited."""

    pending: int
    oldest_age_seconds: float | None


_OUTBOX = cast(Table, OutboxMessage.__table__)
_CLAIMED_COLUMNS = (
    _OUTBOX.c.id, _OUTBOX.c.kind, _OUTBOX.c.subject, _OUTBOX.c.payload, _OUTBOX.c.attempts
)  # fmt: skip


class OutboxRepository:
    """SQL for the relay and for metrics; each method is its own short transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def claim_pending(self, limit: int, lease: timedelta) -> list[ClaimedMessage]:
        """Lease up to ``limit`` due rows, oldest first.

        PostgreSQL skips rows another relay has locked (``FOR UPDATE SKIP LOCKED``); on
        SQLite the transaction holds the database's write lock, so claims take turns.
        A claimed row is due again only when its lease ends.
        """
        now = utcnow()
        due = (
            select(_OUTBOX.c.id)
            .where(_OUTBOX.c.published_at.is_(None), _OUTBOX.c.available_at <= now)
            .order_by(_OUTBOX.c.available_at, _OUTBOX.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        # One statement (no ORM objects loaded and flushed row by row): the relay's CPU
        # per event was mostly this claim.
        claim = (
            update(_OUTBOX)
            .where(_OUTBOX.c.id.in_(due.scalar_subquery()))
            .values(available_at=now + lease)
            .returning(_OUTBOX.c.created_at, *_CLAIMED_COLUMNS)
        )
        async with self._sessions.begin() as session:
            rows = (await session.execute(claim)).all()
        in_order = sorted(rows, key=lambda row: (row[0], row[1]))  # RETURNING has no order
        return [ClaimedMessage(*row[1:]) for row in in_order]

    async def mark_published(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        now = utcnow()
        async with self._sessions.begin() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids), OutboxMessage.published_at.is_(None))
                .values(published_at=now, attempts=OutboxMessage.attempts + 1, last_error=None)
            )

    async def mark_failed(self, message_id: str, error: str, retry_in: timedelta) -> None:
        """Count a failed publish and make the row due again after ``retry_in``."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_id, OutboxMessage.published_at.is_(None))
                .values(
                    attempts=OutboxMessage.attempts + 1,
                    last_error=error,
                    available_at=utcnow() + retry_in,
                )
            )

    async def release(self, ids: Sequence[str], retry_in: timedelta) -> None:
        """End the lease of rows that were claimed but not tried."""
        if not ids:
            return
        async with self._sessions.begin() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids), OutboxMessage.published_at.is_(None))
                .values(available_at=utcnow() + retry_in)
            )

    async def backlog(self, *, kind: OutboxKind | None = None) -> OutboxBacklog:
        """Unpublished rows (of ``kind`` only, when given) and the age of the oldest."""
        query = select(func.count(), func.min(OutboxMessage.created_at)).where(
            OutboxMessage.published_at.is_(None)
        )
        if kind is not None:
            query = query.where(OutboxMessage.kind == kind)
        async with self._sessions() as session:
            count, oldest = (await session.execute(query)).one()
        age = None if oldest is None else max((utcnow() - _aware(oldest)).total_seconds(), 0.0)
        return OutboxBacklog(int(count), age)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
