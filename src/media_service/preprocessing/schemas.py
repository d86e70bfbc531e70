"""Request and response bodies of the preprocessing endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from media_service.imaging.faces import Face
from media_service.imaging.specs import Fit


class RenditionOut(BaseModel):
    name: str
    content_type: str
    width: int
    height: int
    byte_size: int
    quality: int
    url: str = Field(description="Path of the rendition's bytes (bearer token required)")


class AnalysisOut(BaseModel):
    status: str = Field(description="done, failed, or pending (faces found before the rest)")
    error_code: str | None
    error: str | None
    source_format: str | None
    width: int | None
    height: int | None
    frames: int | None
    orientation: int | None
    duration_seconds: float | None
    video_codec: str | None
    page_count: int | None
    analysed_at: datetime


class PreprocessingOut(BaseModel):
    file_id: str
    processed: bool
    processed_at: datetime | None
    analysis: AnalysisOut | None
    renditions: list[RenditionOut]


class PointOut(BaseModel):
    x: float
    y: float


class BoxOut(BaseModel):
    x: int
    y: int
    width: int
    height: int


class FaceOut(BaseModel):
    index: int
    box: BoxOut = Field(description="In upright pixels of the original")
    confidence: float = Field(ge=0, le=1)
    left_eye: PointOut = Field(description="The eye on the image's left")
    right_eye: PointOut
    crop_url: str

    @classmethod
    def of(cls, index: int, face: Face, crop_url: str) -> FaceOut:
        x, y, width, height = face.box
        return cls(
            index=index,
            box=BoxOut(x=x, y=y, width=width, height=height),
            confidence=round(face.confidence, 4),
            left_eye=PointOut(x=face.left_eye[0], y=face.left_eye[1]),
            right_eye=PointOut(x=face.right_eye[0], y=face.right_eye[1]),
            crop_url=crop_url,
        )


class FacesOut(BaseModel):
    file_id: str
    count: int
    faces: list[FaceOut]


class RenditionSignRequest(BaseModel):
    """The rendition a signed URL is for, and how long it lives."""

    model_config = ConfigDict(extra="forbid")

    width: int | None = Field(default=None, ge=1)
    height: int | None = Field(default=None, ge=1)
    fit: Fit = Fit.CONTAIN
    format: Literal["jpeg", "webp", "avif", "png", "auto"] = "auto"
    quality: int | None = Field(default=None, ge=1, le=100)
    expires_in: int | None = Field(default=None, ge=1)
