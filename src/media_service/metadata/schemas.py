"""Request and response bodies of ``/api/v1/media/metadata``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# No C0/C1 control characters: PostgreSQL refuses NUL in text and JSON (a 500, not the
# 422 it is), and none belong in a label.
LabelName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$"
    ),
]
MAX_LABELS = 200


class MetadataOut(BaseModel):
    """A photo's metadata as the caller may see it (location and faces only for the
    owner and admins; ``redacted`` lists what was left out)."""

    model_config = ConfigDict(from_attributes=True)

    file_id: str
    user_id: str
    organization_id: str
    camera_make: str | None
    camera_model: str | None
    lens_model: str | None
    focal_length: str | None
    aperture: str | None
    shutter_speed: str | None
    iso: int | None
    flash_used: bool | None
    latitude: Decimal | None
    longitude: Decimal | None
    location_name: str | None
    photo_taken_at: datetime | None
    photo_taken_offset_minutes: int | None
    ai_labels: list[str]
    ai_objects: list[str]
    ai_scenes: list[str]
    ai_colors: list[dict[str, Any]]
    label_sources: dict[str, dict[str, str]]
    face_detection: dict[str, Any] | None
    text_detection: dict[str, Any] | None
    quality_score: Decimal | None
    blur_score: Decimal | None
    brightness: Decimal | None
    contrast: Decimal | None
    face_count: int | None
    width: int | None
    height: int | None
    orientation: str | None
    perceptual_hash: str | None
    full_metadata: dict[str, Any]
    analysed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    redacted: list[str] = Field(default_factory=list)


class AiAnalysisUpdate(BaseModel):
    """What an AI service found (the spec's ``update_ai_analysis``). Each list given
    replaces the earlier answer of the same ``source``; labels the service derived itself
    (faces, text, orientation) stay."""

    model_config = ConfigDict(extra="forbid")

    ai_labels: list[LabelName] | None = Field(default=None, max_length=MAX_LABELS)
    ai_objects: list[LabelName] | None = Field(default=None, max_length=MAX_LABELS)
    ai_scenes: list[LabelName] | None = Field(default=None, max_length=MAX_LABELS)
    source: str = Field(
        default="external",
        min_length=1,
        max_length=60,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="The model or service that produced these (stored as ai:<source>)",
    )


class MetadataPage(BaseModel):
    items: list[MetadataOut]
    next_cursor: str | None
