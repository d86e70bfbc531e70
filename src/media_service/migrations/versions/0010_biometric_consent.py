"""biometric consent

``biometric_consent``: a person's choice about face processing, one row per person who
made one (no row: allowed). Its primary key is the lookup made per file processed.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import media_service.db.base

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "biometric_consent",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=128), nullable=False),
        sa.Column("face_processing", sa.Boolean(), nullable=False),
        sa.Column("updated_at", media_service.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "owner_id", name=op.f("pk_biometric_consent")),
    )
    op.create_index(
        "idx_biometric_consent_updated_by",
        "biometric_consent",
        ["organization_id", "updated_by"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("idx_biometric_consent_updated_by", table_name="biometric_consent")
    op.drop_table("biometric_consent")
