"""Request and response bodies of the erasure API, and the job's payload."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter

from media_service.media.schemas import OwnerId

# A person is named as files name their owner: the same characters, the same length.
USER_ID = TypeAdapter(OwnerId)

# What the report counts, in the order it lists them.
COUNTED = (
    "files",
    "versions",
    "metadata_rows",
    "renditions",
    "analysis_rows",
    "objects",
    "playlists",
    "playlist_entries",
    "frames",
    "schedules",
    "cache_entries",
    "pseudonymised_references",
    "idempotency_keys",
    "event_rows",
    "stream_messages",
)
StatusName = Literal["queued", "running", "done"]


class ErasePersonJob(BaseModel):
    """Payload of ``media.erase-person``: the erasure's id, never the person's."""

    erasure_id: str
    organization_id: str  # lets admins see the job's dead letter


class ErasureAccepted(BaseModel):
    """The answer to an erasure request: where to follow it."""

    erasure_id: str
    status: StatusName
    status_url: str


class ErasureReport(BaseModel):
    """An erasure and what it has removed so far (all of it once ``done``).

    ``subject`` is the person's pseudonym: the same for every erasure of the same person
    in the organization, and never their id.
    """

    model_config = ConfigDict(from_attributes=True)

    erasure_id: str
    organization_id: str
    subject: str
    status: StatusName
    step: str | None
    counts: dict[str, int]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ErasureList(BaseModel):
    items: list[ErasureReport]
