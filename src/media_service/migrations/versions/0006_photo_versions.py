"""photo versions

``photo_versions`` (spec 003 §1) with the per-photo counter that keeps version numbers
growing. At most one current version per photo is a partial unique index, which SQLite
and PostgreSQL both support.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import media_service.db.base

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _json() -> sa.JSON:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _timestamp() -> media_service.db.base.UTCDateTime:
    return media_service.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "photo_versions",
        sa.Column("version_id", sa.String(length=50), nullable=False),
        sa.Column("photo_id", sa.String(length=50), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("version_name", sa.String(length=255), nullable=False),
        sa.Column(
            "version_type",
            sa.Enum(
                "ORIGINAL",
                "EDITED",
                "STYLED",
                "AI_ENHANCED",
                name="version_type",
                native_enum=False,
                length=50,
            ),
            nullable=False,
        ),
        sa.Column("processing_mode", sa.String(length=100), nullable=True),
        sa.Column("file_id", sa.String(length=50), nullable=False),
        sa.Column("storage_path", sa.String(length=512), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("processing_params", _json(), nullable=False),
        sa.Column("metadata", _json(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.CheckConstraint(
            "version_type <> 'ORIGINAL' OR version_number = 1",
            name=op.f("ck_photo_versions_original_is_first"),
        ),
        sa.ForeignKeyConstraint(
            ["photo_id"],
            ["media_files.file_id"],
            name=op.f("fk_photo_versions_photo_id_media_files"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_photo_versions")),
        sa.UniqueConstraint(
            "photo_id",
            "version_number",
            name=op.f("uq_photo_versions_photo_id_version_number"),
        ),
    )
    with op.batch_alter_table("photo_versions", schema=None) as batch_op:
        batch_op.create_index(
            "idx_photo_versions_user_id", ["organization_id", "user_id"], unique=False
        )
        batch_op.create_index(
            "uq_photo_versions_current",
            ["photo_id"],
            unique=True,
            postgresql_where=sa.text("is_current"),
            sqlite_where=sa.text("is_current"),
        )
    op.create_table(
        "photo_version_counters",
        sa.Column("photo_id", sa.String(length=50), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["photo_id"],
            ["media_files.file_id"],
            name=op.f("fk_photo_version_counters_photo_id_media_files"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("photo_id", name=op.f("pk_photo_version_counters")),
    )


def downgrade() -> None:
    op.drop_table("photo_version_counters")
    with op.batch_alter_table("photo_versions", schema=None) as batch_op:
        batch_op.drop_index("uq_photo_versions_current")
        batch_op.drop_index("idx_photo_versions_user_id")
    op.drop_table("photo_versions")
