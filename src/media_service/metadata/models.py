"""The ``photo_metadata`` table (spec 003 §2), with a few columns added for fast filters."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from media_service.db.base import Base, JSONDocument, utcnow

# Lists the criteria language matches with "any/all/none" (GIN-indexed on PostgreSQL).
LIST_COLUMNS = ("ai_labels", "ai_objects", "ai_scenes")
# PostgreSQL indexes in the criteria query's sort order (migration 0005): expression
# indexes that SQLAlchemy's metadata does not describe, so the schema check skips them.
SORT_INDEXES = {
    "idx_photo_metadata_sort_taken": "photo_taken_at",
    "idx_photo_metadata_sort_quality": "quality_score",
}
OWNER_SORT_INDEX = "idx_photo_metadata_sort_owner_taken"


class PhotoMetadata(Base):
    """Everything known about one photo, one row per file."""

    __tablename__ = "photo_metadata"

    file_id: Mapped[str] = mapped_column(
        String(50), ForeignKey("media_files.file_id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(128))  # the photo's owner (owner_id)
    organization_id: Mapped[str] = mapped_column(String(64))

    # EXIF
    camera_make: Mapped[str | None] = mapped_column(String(100))
    camera_model: Mapped[str | None] = mapped_column(String(100))
    lens_model: Mapped[str | None] = mapped_column(String(100))
    focal_length: Mapped[str | None] = mapped_column(String(50))  # "35 mm"
    aperture: Mapped[str | None] = mapped_column(String(50))  # "f/1.8"
    shutter_speed: Mapped[str | None] = mapped_column(String(50))  # "1/250 s"
    iso: Mapped[int | None] = mapped_column(Integer)
    flash_used: Mapped[bool | None] = mapped_column(Boolean)

    # Location and time
    latitude: Mapped[Decimal | None] = mapped_column(Numeric(10, 8))
    longitude: Mapped[Decimal | None] = mapped_column(Numeric(11, 8))
    location_name: Mapped[str | None] = mapped_column(String(255))
    photo_taken_at: Mapped[datetime | None]  # UTC when the offset is known, else local time
    photo_taken_offset_minutes: Mapped[int | None] = mapped_column(Integer)

    # AI analysis (lists of plain strings, so that containment uses the GIN indexes)
    ai_labels: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    ai_objects: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    ai_scenes: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    ai_colors: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument, default=list)
    # Where each came from: {"labels": {"person": "faces"}, "scenes": {"beach": "ai:vision-2"}}
    label_sources: Mapped[dict[str, dict[str, str]]] = mapped_column(JSONDocument, default=dict)
    face_detection: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    text_detection: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)

    # Quality, 0.00 to 1.00
    quality_score: Mapped[Decimal | None] = mapped_column(Numeric(3, 2))
    blur_score: Mapped[Decimal | None] = mapped_column(Numeric(3, 2))
    brightness: Mapped[Decimal | None] = mapped_column(Numeric(3, 2))
    contrast: Mapped[Decimal | None] = mapped_column(Numeric(3, 2))

    # Added for filters: faces found, upright size and its orientation, near-duplicates
    face_count: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    orientation: Mapped[str | None] = mapped_column(String(10))  # landscape/portrait/square
    perceptual_hash: Mapped[str | None] = mapped_column(String(16))  # 64-bit DCT pHash, hex

    full_metadata: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    analysed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("idx_photo_metadata_user_id", "organization_id", "user_id", "photo_taken_at"),
        Index("idx_photo_metadata_quality_score", "organization_id", "quality_score"),
        Index("idx_photo_metadata_taken_at", "organization_id", "photo_taken_at"),
        *(
            Index(f"idx_photo_metadata_{name}", name, postgresql_using="gin").ddl_if(
                dialect="postgresql"
            )
            for name in LIST_COLUMNS
        ),
    )
