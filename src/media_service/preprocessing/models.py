"""Tables of the preprocessing engine: stored renditions and what analysis found."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from media_service.db.base import Base, JSONDocument, utcnow


# A file's derived rows go with it: its objects are removed by the file.deleted consumer.
def _file_fk() -> ForeignKey:
    return ForeignKey("media_files.file_id", ondelete="CASCADE")


class StoredRendition(Base):
    """A named rendition made by the preprocessing job (thumbnail, preview)."""

    __tablename__ = "media_renditions"

    file_id: Mapped[str] = mapped_column(String(50), _file_fk(), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    storage_key: Mapped[str] = mapped_column(String(512))
    content_type: Mapped[str] = mapped_column(String(100))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    byte_size: Mapped[int] = mapped_column(BigInteger)
    quality: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MediaAnalysis(Base):
    """What decoding the original found: size, duration, pages, faces, or why it failed."""

    __tablename__ = "media_analysis"

    file_id: Mapped[str] = mapped_column(String(50), _file_fk(), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # "done" or "failed"
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    source_format: Mapped[str | None] = mapped_column(String(32))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    frames: Mapped[int | None] = mapped_column(Integer)
    orientation: Mapped[int | None] = mapped_column(Integer)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    video_codec: Mapped[str | None] = mapped_column(String(32))
    page_count: Mapped[int | None] = mapped_column(Integer)
    poster_key: Mapped[str | None] = mapped_column(String(512))
    faces: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONDocument)
    faces_detected_at: Mapped[datetime | None]
    analysed_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
