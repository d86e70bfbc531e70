"""The audit trail's table: one row per read, change, share or delete of audited media."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from media_service.db.base import Base, JSONDocument, utcnow
from media_service.media.models import OwnerType


class AuditAction(enum.StrEnum):
    READ = "read"
    CHANGE = "change"
    SHARE = "share"  # a signed URL was issued
    DELETE = "delete"


class AuditResource(enum.StrEnum):
    """What of a file was touched."""

    FILE = "file"  # the file's record
    CONTENT = "content"  # its bytes (an original or a version)
    RENDITION = "rendition"  # a thumbnail, preview or rendition made on request
    FACES = "faces"  # the faces found in it
    FACE_CROP = "face_crop"  # the aligned crop of one face
    VERSION = "version"
    METADATA = "metadata"


def _enum(kind: type[enum.StrEnum], name: str) -> Enum:
    return Enum(
        kind,
        name=name,
        native_enum=False,
        length=16,
        values_callable=lambda cls: [member.value for member in cls],
    )


class AuditEvent(Base):
    """Who did what to which file of which owner, and when. Holds ids and a small
    ``detail`` (which rendition, a signed URL's expiry), never file contents, tokens,
    signatures, URLs or coordinates. No foreign keys: rows outlive the files."""

    __tablename__ = "audit_events"

    audit_id: Mapped[str] = mapped_column(String(50), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[str] = mapped_column(String(128))
    actor_roles: Mapped[list[str]] = mapped_column(JSONDocument)
    action: Mapped[AuditAction] = mapped_column(_enum(AuditAction, "audit_action"))
    resource_type: Mapped[AuditResource] = mapped_column(_enum(AuditResource, "audit_resource"))
    resource_id: Mapped[str] = mapped_column(String(64))
    file_id: Mapped[str] = mapped_column(String(50))
    owner_type: Mapped[OwnerType] = mapped_column(_enum(OwnerType, "owner_type"))
    owner_id: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONDocument)

    __table_args__ = (
        # Every query is one organization's, newest first (audit ids sort by time), by
        # owner, file or actor; erasure rewrites by owner and actor; retention by age.
        Index("ix_audit_events_org", "organization_id", "audit_id"),
        Index("ix_audit_events_org_owner", "organization_id", "owner_id", "audit_id"),
        Index("ix_audit_events_org_file", "organization_id", "file_id", "audit_id"),
        Index("ix_audit_events_org_actor", "organization_id", "actor_id", "audit_id"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
    )
