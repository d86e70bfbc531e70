"""Tables of the event machinery: outbox, handled events, dead letters, in-process bus.

``outbox`` holds every event and job written in the same transaction as the change that
caused it, until the relay has published it. ``handled_events`` is what makes consumers
idempotent. ``dead_letters`` keeps every message that could not be handled, with its
exact bytes, for an operator to inspect and replay. ``bus_consumers`` and
``bus_deliveries`` are the in-process bus's durable consumers and their per-consumer
delivery state (NATS keeps the same state on its server).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from media_service.db.base import Base, JSONDocument, utcnow

OutboxKind = Literal["event", "job"]
MSG_ID_LENGTH = 128
SUBJECT_LENGTH = 255
CONSUMER_LENGTH = 64


class OutboxMessage(Base):
    """One event or job waiting to be published (``published_at`` is null until then).

    ``id`` is the message id: the event id (or job id), sent as ``Nats-Msg-Id``, so a
    re-publish after a crash is recognised as a duplicate. ``available_at`` is when the
    relay may next try it: now, after a back-off, or after another relay's lease.
    """

    __tablename__ = "outbox"

    id: Mapped[str] = mapped_column(String(MSG_ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(SUBJECT_LENGTH))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    published_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # Only pending rows are indexed: published ones are never looked up by time.
        Index(
            "ix_outbox_pending",
            "available_at",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        Index("ix_outbox_published_at", "published_at"),
    )


class HandledEvent(Base):
    """``consumer`` has applied ``event_id``; written in the same transaction as the effect."""

    __tablename__ = "handled_events"

    consumer: Mapped[str] = mapped_column(String(CONSUMER_LENGTH), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(MSG_ID_LENGTH), primary_key=True)
    handled_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class DeadLetterRecord(Base):
    """A message given up on: its exact bytes, where it came from and the last error."""

    __tablename__ = "dead_letters"

    id: Mapped[str] = mapped_column(String(50), primary_key=True)
    source: Mapped[str] = mapped_column(String(CONSUMER_LENGTH))
    subject: Mapped[str] = mapped_column(String(SUBJECT_LENGTH))
    msg_id: Mapped[str | None] = mapped_column(String(MSG_ID_LENGTH))
    # Bytes, not JSON: a malformed message must be kept exactly as it arrived.
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    retried_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_dead_letters_source", "source", "created_at"),)


class BusConsumer(Base):
    """A durable consumer of the in-process bus and the subjects it filters on."""

    __tablename__ = "bus_consumers"

    name: Mapped[str] = mapped_column(String(CONSUMER_LENGTH), primary_key=True)
    subjects: Mapped[list[str]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BusDelivery(Base):
    """One message for one durable consumer of the in-process bus.

    Pending while ``settled_at`` is null. A consumer claims it by pushing
    ``available_at`` one ack-wait ahead (a lease) and counting the attempt; a failure
    pushes it back by the back-off; success or dead-lettering settles it.
    """

    __tablename__ = "bus_deliveries"

    consumer: Mapped[str] = mapped_column(String(CONSUMER_LENGTH), primary_key=True)
    msg_id: Mapped[str] = mapped_column(String(MSG_ID_LENGTH), primary_key=True)
    subject: Mapped[str] = mapped_column(String(SUBJECT_LENGTH))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    settled_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index(
            "ix_bus_deliveries_pending",
            "consumer",
            "available_at",
            postgresql_where=text("settled_at IS NULL"),
            sqlite_where=text("settled_at IS NULL"),
        ),
        Index("ix_bus_deliveries_settled_at", "settled_at"),
    )
