"""The ``biometric_consent`` table: one row per person who made a choice about face
processing. No row means the default applies (allowed; see docs/privacy.md)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from media_service.db.base import Base, utcnow


class BiometricConsent(Base):
    """A person's (``owner_id`` within an organization) choice about face processing."""

    __tablename__ = "biometric_consent"

    # The primary key is the one indexed lookup made per file processed.
    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    face_processing: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(128))  # the person, or an admin

    __table_args__ = (
        # Erasing an admin replaces their id where they changed someone else's choice.
        Index("idx_biometric_consent_updated_by", "organization_id", "updated_by"),
    )
