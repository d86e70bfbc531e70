"""Tables of the media domain: the MediaFile record and upload idempotency keys."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Enum, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from media_service.db.base import Base, utcnow


class OwnerType(enum.StrEnum):
    """Who a file belongs to (spec 000, plus User for the owners of photo frames)."""

    STUDENT = "Student"
    CLASS_SESSION = "ClassSession"
    TEACHER = "Teacher"
    OTHER = "Other"
    USER = "User"


# Owner types whose owner_id is a person (a class session is not one, even when its id
# equals a user's): what a person's erasure and export cover.
PERSONAL_OWNER_TYPES = tuple(t for t in OwnerType if t is not OwnerType.CLASS_SESSION)


class FileType(enum.StrEnum):
    IMAGE = "Image"
    VIDEO = "Video"
    DOCUMENT = "Document"


class FileStatus(enum.StrEnum):
    """``active`` files are served; ``deleting`` ones are on their way out."""

    ACTIVE = "active"
    DELETING = "deleting"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=16, values_callable=_values)


def _values(cls: type[enum.Enum]) -> list[str]:
    return [member.value for member in cls]


class MediaFile(Base):
    """One stored object: an original upload or a derived file (a version, a rendition)."""

    __tablename__ = "media_files"

    file_id: Mapped[str] = mapped_column(String(50), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[str] = mapped_column(String(128))
    owner_type: Mapped[OwnerType] = mapped_column(_enum(OwnerType, "owner_type"))
    uploaded_by: Mapped[str] = mapped_column(String(128))
    file_name: Mapped[str] = mapped_column(String(1024))
    file_type: Mapped[FileType] = mapped_column(_enum(FileType, "file_type"))
    content_type: Mapped[str] = mapped_column(String(100))
    file_size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_path: Mapped[str] = mapped_column(String(512))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[FileStatus] = mapped_column(
        _enum(FileStatus, "file_status"), default=FileStatus.ACTIVE
    )
    processed: Mapped[bool] = mapped_column(default=False)
    processed_at: Mapped[datetime | None]
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        # The same bytes uploaded again for the same owner are the same file.
        UniqueConstraint("organization_id", "owner_type", "owner_id", "sha256"),
        Index("ix_media_files_org_owner", "organization_id", "owner_type", "owner_id", "file_id"),
        Index("ix_media_files_org_file", "organization_id", "file_id"),
        Index("ix_media_files_uploaded_by", "organization_id", "uploaded_by"),
    )


class IdempotencyKey(Base):
    """A client's Idempotency-Key and what its first request produced."""

    __tablename__ = "idempotency_keys"

    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    file_id: Mapped[str] = mapped_column(String(50))
    status_code: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
