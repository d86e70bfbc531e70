"""Query parameters and bodies of the audit API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from media_service.audit.models import AuditAction, AuditResource
from media_service.instants import Instant
from media_service.media.models import OwnerType
from media_service.media.schemas import OwnerId

MAX_PAGE = 500


class AuditFilters(BaseModel):
    """Filters of ``GET /api/v1/media/audit``; every one optional. ``since`` is
    inclusive, ``until`` exclusive."""

    model_config = ConfigDict(extra="forbid")

    # No control characters: a NUL byte would be a driver error on PostgreSQL.
    owner_id: OwnerId | None = None
    owner_type: OwnerType | None = None
    file_id: OwnerId | None = None
    actor_id: OwnerId | None = None
    action: AuditAction | None = None
    since: Instant | None = None
    until: Instant | None = None
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: Annotated[str | None, Field(max_length=64, pattern=r"^aud_[0-9a-z]{26}$")] = None

    @model_validator(mode="after")
    def _range(self) -> AuditFilters:
        if self.since and self.until and self.since > self.until:
            raise ValueError("since is later than until")
        return self


class AuditEventOut(BaseModel):
    """One entry of the trail. ``actor_id`` is ``signed-url`` for downloads through a
    signed URL (``detail.key_id`` then names the signing key)."""

    model_config = ConfigDict(from_attributes=True)

    audit_id: str
    occurred_at: datetime
    actor_id: str
    actor_roles: list[str]
    action: AuditAction
    resource_type: AuditResource
    resource_id: str
    file_id: str
    owner_type: OwnerType
    owner_id: str
    request_id: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    """One page, newest first; pass ``next_cursor`` back as ``cursor`` for the next."""

    items: list[AuditEventOut]
    next_cursor: str | None
