"""erasures

``erasures`` (one row per erasure of a person, with its report; at most one unfinished per
person, a partial unique index) and ``erasure_items`` (what an unfinished erasure has
removed so far, so that a resumed run can finish the work).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import media_service.db.base

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UNFINISHED = "status <> 'done'"


def _time(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, media_service.db.base.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    statuses = sa.Enum(
        "queued", "running", "done", name="erasure_status", native_enum=False, length=16
    )
    op.create_table(
        "erasures",
        sa.Column("erasure_id", sa.String(length=50), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("subject_digest", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("status", statuses, nullable=False),
        sa.Column("step", sa.String(length=32), nullable=True),
        sa.Column(
            "counts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        _time("created_at"),
        _time("started_at", nullable=True),
        _time("finished_at", nullable=True),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("erasure_id", name=op.f("pk_erasures")),
    )
    op.create_index(
        "idx_erasures_subject",
        "erasures",
        ["organization_id", "subject_digest", "created_at"],
        unique=False,
    )
    op.create_index(
        "uq_erasures_unfinished",
        "erasures",
        ["organization_id", "subject_digest"],
        unique=True,
        postgresql_where=sa.text(UNFINISHED),
        sqlite_where=sa.text(UNFINISHED),
    )
    op.create_table(
        "erasure_items",
        sa.Column("erasure_id", sa.String(length=50), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("item_id", sa.String(length=128), nullable=False),
        _time("created_at"),
        sa.ForeignKeyConstraint(
            ["erasure_id"],
            ["erasures.erasure_id"],
            name=op.f("fk_erasure_items_erasure_id_erasures"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("erasure_id", "kind", "item_id", name=op.f("pk_erasure_items")),
    )


def downgrade() -> None:
    op.drop_table("erasure_items")
    op.drop_index("uq_erasures_unfinished", table_name="erasures")
    op.drop_index("idx_erasures_subject", table_name="erasures")
    op.drop_table("erasures")
