"""The event envelope and every event type, as in the spec's examples.

Every event is a JSON object with ``event_id``, ``event_type`` and ``timestamp`` plus the
fields of its type. The subject an event travels on is its ``event_type``. Consumers
validate what they receive with :func:`parse_event`; unknown fields are ignored (so a
newer publisher does not break an older consumer), missing or malformed ones are not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from media_service.db.base import utcnow
from media_service.ids import new_id

# Ids that come from other services are not ours to shape, but they travel in a NATS
# header (Nats-Msg-Id) and in a database key, so no whitespace or control characters.
EVENT_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
OwnerTypeName = Literal["Student", "ClassSession", "Teacher", "Other", "User"]
FileTypeName = Literal["Image", "Video", "Document"]
PlaylistTypeName = Literal["MANUAL", "SMART", "AI_CURATED"]
ENVELOPE_FIELDS = ("event_id", "event_type", "timestamp")
IdStr = Annotated[str, StringConstraints(min_length=1, max_length=128)]
OptionalId = Annotated[str, StringConstraints(min_length=1, max_length=128)] | None


class InvalidEvent(ValueError):
    """A message that is not a valid event: retrying it can never succeed."""


def new_event_id() -> str:
    return new_id("evt")


class Event(BaseModel):
    """The envelope every event shares."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: str = Field(default_factory=new_event_id, pattern=EVENT_ID_PATTERN)
    event_type: str
    timestamp: AwareDatetime = Field(default_factory=utcnow)

    @property
    def subject(self) -> str:
        """The bus subject this event is published on."""
        return self.event_type

    def to_document(self) -> dict[str, Any]:
        """The event as a JSON-compatible dict (what the outbox stores)."""
        return self.model_dump(mode="json")

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_document())


class FileUploaded(Event):
    """A file was stored. ``user_id`` is who uploaded it (the spec's owner of the photo)."""

    event_type: Literal["file.uploaded"] = "file.uploaded"
    file_id: IdStr
    user_id: IdStr
    organization_id: IdStr
    # Always set by this service; optional so that an external storage service may
    # publish the spec's minimal form (file_id and user_id) plus the organization.
    owner_id: OptionalId = None
    owner_type: OwnerTypeName | None = None
    file_type: FileTypeName | None = None
    content_type: str | None = Field(default=None, max_length=100)
    file_size: int | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class FileDeleted(Event):
    """A file and everything derived from it are gone."""

    event_type: Literal["file.deleted"] = "file.deleted"
    file_id: IdStr
    user_id: IdStr
    organization_id: IdStr


class MediaVersionCreated(Event):
    """A new version (original, AI-enhanced, styled…) of a photo exists."""

    event_type: Literal["media.version.created"] = "media.version.created"
    photo_id: IdStr
    version_id: IdStr
    version_type: str = Field(min_length=1, max_length=50)
    user_id: IdStr
    file_id: IdStr
    organization_id: OptionalId = None


class MediaMetadataUpdated(Event):
    """A photo's metadata (EXIF, AI labels, quality) changed."""

    event_type: Literal["media.metadata.updated"] = "media.metadata.updated"
    file_id: IdStr
    user_id: IdStr
    ai_labels: list[str] = Field(default_factory=list)
    quality_score: float | None = Field(default=None, ge=0.0, le=1.0)
    organization_id: OptionalId = None


class MediaPlaylistUpdated(Event):
    """A playlist's content changed."""

    event_type: Literal["media.playlist.updated"] = "media.playlist.updated"
    playlist_id: IdStr
    user_id: IdStr
    photo_count: int = Field(ge=0)
    playlist_type: PlaylistTypeName
    organization_id: OptionalId = None


class MediaCacheReady(Event):
    """A photo is cached for a frame and can be downloaded from ``cached_url``."""

    event_type: Literal["media.cache.ready"] = "media.cache.ready"
    cache_id: IdStr
    frame_id: IdStr
    photo_id: IdStr
    cached_url: str = Field(min_length=1, max_length=2048)
    organization_id: OptionalId = None


EVENT_TYPES: Mapping[str, type[Event]] = {
    model.model_fields["event_type"].default: model
    for model in (
        FileUploaded,
        FileDeleted,
        MediaVersionCreated,
        MediaMetadataUpdated,
        MediaPlaylistUpdated,
        MediaCacheReady,
    )
}


def parse_event(payload: bytes | str | Mapping[str, Any], subject: str | None = None) -> Event:
    """Validate a received message into its event model.

    Raises :class:`InvalidEvent` for malformed JSON, a missing or malformed field, an
    unknown ``event_type``, or a subject that is not the event's type (or a subject
    below it, such as ``file.uploaded.org_1``).
    """
    document = _decode(payload)
    missing = [name for name in ENVELOPE_FIELDS if name not in document]
    if missing:
        raise InvalidEvent(f"missing envelope field(s): {', '.join(missing)}")
    event_type = document.get("event_type")
    model = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        raise InvalidEvent(f"unknown event_type {str(event_type)[:80]!r}")
    if subject is not None and subject != event_type and not subject.startswith(f"{event_type}."):
        raise InvalidEvent(f"event_type {event_type!r} published on subject {subject[:200]!r}")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid {event_type}: {_summary(exc)}") from None


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every event type (as received), keyed by ``event_type``."""
    schemas = {}
    for name, model in EVENT_TYPES.items():
        schema = model.model_json_schema()
        # Defaults fill these in when we publish; a received event must carry them.
        schema["required"] = [*ENVELOPE_FIELDS, *schema.get("required", [])]
        schemas[name] = schema
    return schemas


def _decode(payload: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(payload, Mapping):
        return dict(payload)
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidEvent(f"an event is a JSON object, not {type(document).__name__}")
    return document


def _summary(exc: ValidationError) -> str:
    # Field paths and messages only: input values may be huge or hostile.
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or '(root)'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    ]
    return "; ".join(parts)[:1000]


__all__ = [
    "EVENT_TYPES",
    "Event",
    "FileDeleted",
    "FileUploaded",
    "InvalidEvent",
    "MediaCacheReady",
    "MediaMetadataUpdated",
    "MediaPlaylistUpdated",
    "MediaVersionCreated",
    "json_schemas",
    "new_event_id",
    "parse_event",
]
