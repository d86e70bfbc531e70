"""Tables of the erasure of a person: one row per erasure, and what it has removed so far.

While an erasure runs, ``erasures.user_id`` holds the person's id (the job's payload holds
only the erasure id); once it is done the column holds their pseudonym, like
``subject_digest`` always does, so the report outlives the person without naming them.
``erasure_items`` lists the files, frames and playlists removed so far, so a resumed run
knows whose stored objects to wait for and which ids to forget in the event history;
the rows go when the erasure finishes.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from media_service.db.base import Base, JSONDocument, utcnow


class ErasureStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


class Erasure(Base):
    """One erasure of a person's data in one organization, and its report."""

    __tablename__ = "erasures"

    erasure_id: Mapped[str] = mapped_column(String(50), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))  # the pseudonym once done
    subject_digest: Mapped[str] = mapped_column(String(64))  # the pseudonym, always
    requested_by: Mapped[str] = mapped_column(String(128))  # the pseudonym if the person
    status: Mapped[ErasureStatus] = mapped_column(
        Enum(
            ErasureStatus,
            name="erasure_status",
            native_enum=False,
            length=16,
            values_callable=lambda cls: [member.value for member in cls],
        ),
        default=ErasureStatus.QUEUED,
    )
    step: Mapped[str | None] = mapped_column(String(32))  # the last step finished
    counts: Mapped[dict[str, int]] = mapped_column(JSONDocument, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("idx_erasures_subject", "organization_id", "subject_digest", "created_at"),
        # One unfinished erasure per person: a second request meets the first here.
        Index(
            "uq_erasures_unfinished",
            "organization_id",
            "subject_digest",
            unique=True,
            postgresql_where=text("status <> 'done'"),
            sqlite_where=text("status <> 'done'"),
        ),
    )


class ErasureItem(Base):
    """Something an unfinished erasure has removed: a ``file``, ``frame`` or ``playlist``."""

    __tablename__ = "erasure_items"

    erasure_id: Mapped[str] = mapped_column(
        String(50), ForeignKey("erasures.erasure_id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
