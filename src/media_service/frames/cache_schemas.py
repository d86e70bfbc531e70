"""Request and response bodies of ``/api/v1/media/cache`` (spec 003 §5)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from media_service.frames.models import CacheStatus

IdField = Field(min_length=1, max_length=50)


class CacheCreate(BaseModel):
    """Ask for a photo to be cached for a frame (the pre-cache job downloads it)."""

    model_config = ConfigDict(extra="forbid")

    frame_id: str = IdField
    photo_id: str = IdField


class CacheOut(BaseModel):
    """One cache entry."""

    model_config = ConfigDict(from_attributes=True)

    cache_id: str
    user_id: str
    frame_id: str
    photo_id: str
    version_id: str | None
    cache_status: CacheStatus
    cached_url: str | None
    cache_size: int | None
    cache_format: str | None
    cache_quality: str | None
    hit_count: int
    miss_count: int
    last_accessed_at: datetime | None
    error_message: str | None
    retry_count: int
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime


class FrameCache(BaseModel):
    """A frame's cache entries, most recently used first."""

    frame_id: str
    items: list[CacheOut]
