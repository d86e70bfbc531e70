"""Request and response bodies of the media files API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from media_service.instants import Instant
from media_service.media.models import FileStatus, FileType, OwnerType

# No control characters (C0, C1) and no invisible direction or zero-width marks: an owner
# id is shown to people and compared by other services.
OwnerId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]+$",
    ),
]


class MediaFileOut(BaseModel):
    """A stored file. ``media_id`` is the spec's name for ``file_id``."""

    model_config = ConfigDict(from_attributes=True)

    file_id: str
    media_id: str
    organization_id: str
    owner_id: str
    owner_type: OwnerType
    uploaded_by: str
    file_name: str
    file_type: FileType
    content_type: str
    file_size: int
    sha256: str
    storage_path: str
    width: int | None
    height: int | None
    status: FileStatus
    processed: bool
    processed_at: datetime | None
    uploaded_at: datetime
    updated_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _media_id(cls, data: object) -> object:
        if isinstance(data, dict):
            return {**data, "media_id": data.get("file_id")}
        return {
            **{name: getattr(data, name) for name in cls.model_fields if name != "media_id"},
            "media_id": data.file_id,  # type: ignore[attr-defined]
        }


class MediaFilePage(BaseModel):
    """One page of a listing; pass ``next_cursor`` back as ``cursor`` for the next."""

    items: list[MediaFileOut]
    next_cursor: str | None


class UploadFields(BaseModel):
    """Form fields (or query parameters) that describe an upload."""

    model_config = ConfigDict(extra="ignore")

    owner_type: OwnerType | None = None
    owner_id: OwnerId | None = None
    file_name: Annotated[str | None, Field(max_length=10_000)] = None


class MediaFilePatch(BaseModel):
    """Fields that may change after upload; unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")

    processed: bool | None = None
    owner_type: OwnerType | None = None
    owner_id: OwnerId | None = None
    file_name: Annotated[str | None, Field(min_length=1, max_length=10_000)] = None


class SignedUrlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_in: int | None = Field(
        default=None, ge=1, description="Lifetime in seconds (default 900, at most 7 days)"
    )


class SignedUrlOut(BaseModel):
    url: str
    method: str = "GET"
    expires_at: datetime


class ListFilters(BaseModel):
    """Filters of ``GET /files``; every one optional."""

    model_config = ConfigDict(extra="forbid")

    owner_id: OwnerId | None = None
    owner_type: OwnerType | None = None
    file_type: FileType | None = None
    processed: bool | None = None
    uploaded_after: Instant | None = None
    uploaded_before: Instant | None = None
    limit: int = Field(default=50, ge=1, le=500)
    cursor: Annotated[str | None, Field(max_length=64)] = None

    @model_validator(mode="after")
    def _range(self) -> ListFilters:
        if (
            self.uploaded_after
            and self.uploaded_before
            and self.uploaded_after > self.uploaded_before
        ):
            raise ValueError("uploaded_after is later than uploaded_before")
        return self
