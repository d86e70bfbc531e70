"""frames

``frames``, ``rotation_schedules`` (spec 003 §4) and ``photo_cache`` (spec 003 §5). The
cache's legal states are check constraints; one entry per frame and photo is a unique
constraint, where concurrent pre-cache runs meet.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import media_service.db.base

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _time(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, media_service.db.base.UTCDateTime(timezone=True), nullable=nullable)


def _enum(name: str, length: int, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=length)


def _frame_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["frame_id"],
        ["frames.frame_id"],
        name=op.f(f"fk_{table}_frame_id_frames"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    _frames()
    _schedules()
    _cache()


def _frames() -> None:
    op.create_table(
        "frames",
        sa.Column("frame_id", sa.String(length=50), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("screen_width", sa.Integer(), nullable=False),
        sa.Column("screen_height", sa.Integer(), nullable=False),
        sa.Column("orientation", _enum("orientation", 16, "LANDSCAPE", "PORTRAIT"), nullable=False),
        _time("last_seen_at", nullable=True),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("frame_id", name=op.f("pk_frames")),
    )
    op.create_index(
        "idx_frames_user_id", "frames", ["organization_id", "user_id", "frame_id"], unique=False
    )


def _schedules() -> None:
    kinds = ("CONTINUOUS", "TIME_BASED", "EVENT_BASED")
    op.create_table(
        "rotation_schedules",
        sa.Column("schedule_id", sa.String(length=50), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("frame_id", sa.String(length=50), nullable=False),
        sa.Column("playlist_id", sa.String(length=50), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("schedule_type", _enum("schedule_type", 50, *kinds), nullable=False),
        sa.Column("start_time", sa.String(length=5), nullable=True),
        sa.Column("end_time", sa.String(length=5), nullable=True),
        sa.Column("days_of_week", _json(), nullable=False),
        sa.Column("occasions", _json(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("rotation_interval", sa.Integer(), nullable=False),
        sa.Column("transition", sa.String(length=16), nullable=False),
        sa.Column("shuffle", sa.Boolean(), nullable=False),
        sa.Column("recent_first", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        _frame_fk("rotation_schedules"),
        sa.PrimaryKeyConstraint("schedule_id", name=op.f("pk_rotation_schedules")),
    )
    op.create_index(
        "idx_rotation_schedules_frame_id", "rotation_schedules", ["frame_id"], unique=False
    )
    op.create_index(
        "idx_rotation_schedules_user_id",
        "rotation_schedules",
        ["organization_id", "user_id"],
        unique=False,
    )
    op.create_index(
        "idx_rotation_schedules_playlist_id", "rotation_schedules", ["playlist_id"], unique=False
    )


def _cache() -> None:
    statuses = ("PENDING", "DOWNLOADING", "CACHED", "FAILED", "EXPIRED")
    op.create_table(
        "photo_cache",
        sa.Column("cache_id", sa.String(length=50), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("frame_id", sa.String(length=50), nullable=False),
        sa.Column("photo_id", sa.String(length=50), nullable=False),
        sa.Column("version_id", sa.String(length=50), nullable=True),
        sa.Column("cache_status", _enum("cache_status", 50, *statuses), nullable=False),
        sa.Column("cached_url", sa.Text(), nullable=True),
        sa.Column("local_path", sa.String(length=500), nullable=True),
        sa.Column("cache_size", sa.BigInteger(), nullable=True),
        sa.Column("cache_format", sa.String(length=50), nullable=True),
        sa.Column("cache_quality", sa.String(length=50), nullable=True),
        sa.Column("hit_count", sa.Integer(), nullable=False),
        sa.Column("miss_count", sa.Integer(), nullable=False),
        _time("last_accessed_at", nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        _time("next_attempt_at", nullable=True),
        _time("created_at"),
        _time("updated_at"),
        _time("expires_at"),
        sa.CheckConstraint(
            "cache_status <> 'CACHED' OR (local_path IS NOT NULL AND cache_size IS NOT NULL)",
            name=op.f("ck_photo_cache_cached_has_file"),
        ),
        sa.CheckConstraint(
            "cache_status <> 'FAILED' OR error_message IS NOT NULL",
            name=op.f("ck_photo_cache_failed_has_error"),
        ),
        _frame_fk("photo_cache"),
        sa.PrimaryKeyConstraint("cache_id", name=op.f("pk_photo_cache")),
        sa.UniqueConstraint("frame_id", "photo_id", name=op.f("uq_photo_cache_frame_id_photo_id")),
    )
    for name, columns in (
        ("idx_photo_cache_status", ["cache_status"]),
        ("idx_photo_cache_expires_at", ["expires_at"]),
        ("idx_photo_cache_last_accessed", ["frame_id", "last_accessed_at"]),
        ("idx_photo_cache_photo_id", ["photo_id"]),
    ):
        op.create_index(name, "photo_cache", columns, unique=False)


def downgrade() -> None:
    op.drop_table("photo_cache")
    op.drop_table("rotation_schedules")
    op.drop_table("frames")
