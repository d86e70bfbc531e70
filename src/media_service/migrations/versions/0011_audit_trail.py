"""audit trail

``audit_events``: who read, changed, shared or deleted which media of students and class
sessions, and when (issue 8, point 4). No foreign keys: the rows outlive the files.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import media_service.db.base

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_audit_events_org": ["organization_id", "audit_id"],
    "ix_audit_events_org_owner": ["organization_id", "owner_id", "audit_id"],
    "ix_audit_events_org_file": ["organization_id", "file_id", "audit_id"],
    "ix_audit_events_org_actor": ["organization_id", "actor_id", "audit_id"],
    "ix_audit_events_occurred_at": ["occurred_at"],
}


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16)


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("audit_id", sa.String(length=50), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", media_service.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(length=128), nullable=False),
        sa.Column("actor_roles", _json(), nullable=False),
        sa.Column(
            "action", _enum("audit_action", "read", "change", "share", "delete"), nullable=False
        ),
        sa.Column(
            "resource_type",
            _enum(
                "audit_resource",
                "file",
                "content",
                "rendition",
                "faces",
                "face_crop",
                "version",
                "metadata",
            ),
            nullable=False,
        ),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("file_id", sa.String(length=50), nullable=False),
        sa.Column(
            "owner_type",
            _enum("owner_type", "Student", "ClassSession", "Teacher", "Other", "User"),
            nullable=False,
        ),
        sa.Column("owner_id", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("detail", _json(), nullable=False),
        sa.PrimaryKeyConstraint("audit_id", name=op.f("pk_audit_events")),
    )
    for name, columns in _INDEXES.items():
        op.create_index(name, "audit_events", columns, unique=False)


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name="audit_events")
    op.drop_table("audit_events")
