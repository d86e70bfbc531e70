"""The ``photo_versions`` table (spec 003 §1) and the per-photo version counter."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from media_service.db.base import Base, JSONDocument, utcnow


class VersionType(enum.StrEnum):
    """What made a version."""

    ORIGINAL = "ORIGINAL"  # the uploaded file itself (version 1)
    EDITED = "EDITED"  # an edited file uploaded by a person
    STYLED = "STYLED"  # a built-in processing mode rendered by the imaging pool
    AI_ENHANCED = "AI_ENHANCED"  # returned by the external AI service


def _file_fk() -> ForeignKey:
    # A photo's versions go with it; their bytes go with its folder (file.deleted).
    return ForeignKey("media_files.file_id", ondelete="CASCADE")


class PhotoVersion(Base):
    """One version of a photo. ``photo_id`` is the media file of the original; the bytes
    of every other version live under that file's folder (``storage_path``)."""

    __tablename__ = "photo_versions"

    version_id: Mapped[str] = mapped_column(String(50), primary_key=True)
    photo_id: Mapped[str] = mapped_column(String(50), _file_fk())
    user_id: Mapped[str] = mapped_column(String(128))  # who created this version
    organization_id: Mapped[str] = mapped_column(String(64))
    version_name: Mapped[str] = mapped_column(String(255))
    version_type: Mapped[VersionType] = mapped_column(
        Enum(VersionType, name="version_type", native_enum=False, length=50)
    )
    processing_mode: Mapped[str | None] = mapped_column(String(100))
    # The media file that holds the bytes: the photo's own file (see docs/versions.md).
    file_id: Mapped[str] = mapped_column(String(50))
    storage_path: Mapped[str] = mapped_column(String(512))
    file_size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    processing_params: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    # "metadata" is reserved on declarative classes; the column keeps the spec's name.
    version_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONDocument, default=dict)
    is_current: Mapped[bool] = mapped_column(default=False)
    version_number: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("photo_id", "version_number"),
        # At most one current version per photo, whatever the code does; switching is one
        # transaction that clears the old one first (see VersionService.set_current).
        Index(
            "uq_photo_versions_current",
            "photo_id",
            unique=True,
            postgresql_where=text("is_current"),
            sqlite_where=text("is_current"),
        ),
        # With the unique (photo_id, version_number): one original per photo.
        CheckConstraint(
            "version_type <> 'ORIGINAL' OR version_number = 1", name="original_is_first"
        ),
        Index("idx_photo_versions_user_id", "organization_id", "user_id"),
    )


class PhotoVersionCounter(Base):
    """The last version number given out for a photo, so that numbers only ever grow
    (deleting the newest version does not hand its number out again)."""

    __tablename__ = "photo_version_counters"

    photo_id: Mapped[str] = mapped_column(String(50), _file_fk(), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)
