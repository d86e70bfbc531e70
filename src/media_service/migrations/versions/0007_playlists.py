"""playlists

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import media_service.db.base

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _time(name: str) -> sa.Column[Any]:
    return sa.Column(name, media_service.db.base.UTCDateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "playlists",
        sa.Column("playlist_id", sa.String(length=50), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("owner_roles", _json(), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "playlist_type",
            sa.Enum(
                "MANUAL", "SMART", "AI_CURATED", name="playlist_type", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("smart_criteria", _json(), nullable=True),
        sa.Column("curation", _json(), nullable=True),
        sa.Column("shuffle", sa.Boolean(), nullable=False),
        sa.Column("loop", sa.Boolean(), nullable=False),
        sa.Column("transition_duration", sa.Integer(), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("playlist_id", name=op.f("pk_playlists")),
    )
    with op.batch_alter_table("playlists", schema=None) as batch_op:
        batch_op.create_index(
            "idx_playlists_user_id", ["organization_id", "user_id", "playlist_id"], unique=False
        )
        batch_op.create_index(
            "idx_playlists_type", ["organization_id", "playlist_type"], unique=False
        )
    op.create_table(
        "playlist_items",
        sa.Column("playlist_id", sa.String(length=50), nullable=False),
        sa.Column("file_id", sa.String(length=50), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("reason", _json(), nullable=True),
        _time("added_at"),
        sa.ForeignKeyConstraint(
            ["playlist_id"],
            ["playlists.playlist_id"],
            name=op.f("fk_playlist_items_playlist_id_playlists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("playlist_id", "file_id", name=op.f("pk_playlist_items")),
    )
    with op.batch_alter_table("playlist_items", schema=None) as batch_op:
        batch_op.create_index("idx_playlist_items_file_id", ["file_id"], unique=False)
        batch_op.create_index(
            "idx_playlist_items_position", ["playlist_id", "position"], unique=False
        )
    op.create_table(
        "smart_playlist_generations",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_smart_playlist_generations")),
    )


def downgrade() -> None:
    op.drop_table("smart_playlist_generations")
    with op.batch_alter_table("playlist_items", schema=None) as batch_op:
        batch_op.drop_index("idx_playlist_items_position")
        batch_op.drop_index("idx_playlist_items_file_id")
    op.drop_table("playlist_items")
    with op.batch_alter_table("playlists", schema=None) as batch_op:
        batch_op.drop_index("idx_playlists_type")
        batch_op.drop_index("idx_playlists_user_id")
    op.drop_table("playlists")
