"""Tables of the frames domain: frames, their rotation schedules (spec 003 §4) and the
per-frame photo cache (spec 003 §5)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from media_service.db.base import Base, JSONDocument, utcnow
from media_service.frames.rotation import ScheduleType


class Orientation(enum.StrEnum):
    LANDSCAPE = "LANDSCAPE"
    PORTRAIT = "PORTRAIT"


class CacheStatus(enum.StrEnum):
    PENDING = "PENDING"
    DOWNLOADING = "DOWNLOADING"
    CACHED = "CACHED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


def _enum(kind: type[enum.StrEnum], name: str, length: int) -> Enum:
    return Enum(
        kind,
        name=name,
        native_enum=False,
        length=length,
        values_callable=lambda cls: [member.value for member in cls],
    )


class Frame(Base):
    """A photo frame owned by one user of an organization. ``screen_width``/``height`` are
    the panel's pixels as mounted (``orientation`` says which side is longer)."""

    __tablename__ = "frames"

    frame_id: Mapped[str] = mapped_column(String(50), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    organization_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    time_zone: Mapped[str] = mapped_column(String(64))
    screen_width: Mapped[int] = mapped_column(Integer)
    screen_height: Mapped[int] = mapped_column(Integer)
    orientation: Mapped[Orientation] = mapped_column(_enum(Orientation, "orientation", 16))
    last_seen_at: Mapped[datetime | None] = mapped_column()
    # Device tokens carry the generation they were issued in; revoking bumps it.
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("idx_frames_user_id", "organization_id", "user_id", "frame_id"),)


class RotationSchedule(Base):
    """When a frame shows which playlist (spec 003 §4, plus ``priority``, ``occasions``,
    ``transition`` and ``recent_first``). ``start_time``/``end_time`` are ``HH:MM`` in the
    frame's time zone; ``days_of_week`` are 0 = Monday … 6 = Sunday (empty: every day)."""

    __tablename__ = "rotation_schedules"

    schedule_id: Mapped[str] = mapped_column(String(50), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    organization_id: Mapped[str] = mapped_column(String(64))
    frame_id: Mapped[str] = mapped_column(
        String(50), ForeignKey("frames.frame_id", ondelete="CASCADE")
    )
    # No foreign key: a deleted playlist leaves the schedule showing nothing (asleep).
    playlist_id: Mapped[str | None] = mapped_column(String(50))
    name: Mapped[str | None] = mapped_column(String(255))
    schedule_type: Mapped[ScheduleType] = mapped_column(_enum(ScheduleType, "schedule_type", 50))
    start_time: Mapped[str | None] = mapped_column(String(5))
    end_time: Mapped[str | None] = mapped_column(String(5))
    days_of_week: Mapped[list[int]] = mapped_column(JSONDocument, default=list)
    occasions: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument, default=list)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    rotation_interval: Mapped[int] = mapped_column(Integer, default=10)
    transition: Mapped[str] = mapped_column(String(16), default="fade")
    shuffle: Mapped[bool] = mapped_column(Boolean, default=False)
    recent_first: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("idx_rotation_schedules_frame_id", "frame_id"),
        Index("idx_rotation_schedules_user_id", "organization_id", "user_id"),
        Index("idx_rotation_schedules_playlist_id", "playlist_id"),
    )


class PhotoCache(Base):
    """One photo (one version of it) pre-rendered for one frame (spec 003 §5).

    Legal states are enforced by the database too: a CACHED entry has its stored object
    and size, a FAILED one its error. ``next_attempt_at`` is when a FAILED entry is retried.
    """

    __tablename__ = "photo_cache"

    cache_id: Mapped[str] = mapped_column(String(50), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    organization_id: Mapped[str] = mapped_column(String(64))
    frame_id: Mapped[str] = mapped_column(
        String(50), ForeignKey("frames.frame_id", ondelete="CASCADE")
    )
    photo_id: Mapped[str] = mapped_column(String(50))
    version_id: Mapped[str | None] = mapped_column(String(50))
    cache_status: Mapped[CacheStatus] = mapped_column(_enum(CacheStatus, "cache_status", 50))
    cached_url: Mapped[str | None] = mapped_column(Text)
    local_path: Mapped[str | None] = mapped_column(String(500))
    cache_size: Mapped[int | None] = mapped_column(BigInteger)
    cache_format: Mapped[str | None] = mapped_column(String(50))
    cache_quality: Mapped[str | None] = mapped_column(String(50))
    hit_count: Mapped[int] = mapped_column(Integer, default=0)
    # Accesses reported while the entry was not CACHED: with hit_count, the hit rate.
    miss_count: Mapped[int] = mapped_column(Integer, default=0)
    last_accessed_at: Mapped[datetime | None] = mapped_column()
    error_message: Mapped[str | None] = mapped_column(Text)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()

    __table_args__ = (
        # One entry per frame and photo: concurrent pre-cache runs meet here.
        UniqueConstraint("frame_id", "photo_id"),
        Index("idx_photo_cache_status", "cache_status"),
        Index("idx_photo_cache_expires_at", "expires_at"),
        Index("idx_photo_cache_last_accessed", "frame_id", "last_accessed_at"),
        Index("idx_photo_cache_photo_id", "photo_id"),
        CheckConstraint(
            "cache_status <> 'CACHED' OR (local_path IS NOT NULL AND cache_size IS NOT NULL)",
            name="cached_has_file",
        ),
        CheckConstraint(
            "cache_status <> 'FAILED' OR error_message IS NOT NULL",
            name="failed_has_error",
        ),
    )
