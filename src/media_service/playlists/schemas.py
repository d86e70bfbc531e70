"""Request and response bodies of ``/api/v1/media/playlists``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from media_service.metadata.criteria import Criteria, Instant
from media_service.playlists.models import PlaylistType

MAX_PHOTO_IDS_SHOWN = 1000  # photo_ids in a playlist body; the rest through /photos
MAX_PHOTOS_PER_REQUEST = 500
MAX_MANUAL_PHOTOS = 5000
MAX_CURATED = 500
# No C0/C1 control characters in a name; a description may have line breaks, never NUL.
_NAME = r"^[^\x00-\x1f\x7f-\x9f]*$"
_DESCRIPTION = r"^[^\x00]*$"


def _stripped(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


Name = Annotated[str, Field(min_length=1, max_length=255, pattern=_NAME), AfterValidator(_stripped)]
Description = Annotated[str, Field(max_length=2000, pattern=_DESCRIPTION)]
PhotoId = Annotated[str, Field(min_length=1, max_length=50)]
TransitionSeconds = Annotated[int, Field(ge=1, le=3600)]
PlaylistTypeName = Literal["MANUAL", "SMART", "AI_CURATED"]


class CurationGoal(BaseModel):
    """What an AI-curated playlist is for: the best ``count`` photos of a time window (the
    last ``last_days`` days, or ``since``/``until``) that match ``criteria``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    goal: Annotated[str, Field(min_length=1, max_length=200, pattern=_NAME)] | None = Field(
        default=None, description='Free text, e.g. "best of the last year"'
    )
    count: int = Field(default=20, ge=1, le=MAX_CURATED)
    last_days: int | None = Field(default=None, ge=1, le=36_500)
    since: Instant | None = None
    until: Instant | None = None
    criteria: Criteria | None = None
    duplicate_distance: int = Field(
        default=6, ge=0, le=32, description="pHash bits within which two photos are duplicates"
    )

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.last_days is not None and (self.since is not None or self.until is not None):
            raise ValueError("give last_days or since/until, not both")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlaylistCreate(_Body):
    """A new playlist. ``smart_criteria`` (the criteria language of the metadata query) is
    required for SMART playlists, ``curation`` describes an AI_CURATED one, ``photo_ids``
    fill a MANUAL one."""

    name: Name
    description: Description | None = None
    playlist_type: PlaylistType = PlaylistType.MANUAL
    smart_criteria: Criteria | None = None
    curation: CurationGoal | None = None
    photo_ids: list[PhotoId] = Field(default_factory=list, max_length=MAX_PHOTOS_PER_REQUEST)
    shared: bool = False
    shuffle: bool = False
    loop: bool = True
    transition_duration: TransitionSeconds = 5

    @model_validator(mode="after")
    def _fits_type(self) -> Self:
        kind = self.playlist_type
        if (self.smart_criteria is not None) != (kind is PlaylistType.SMART):
            raise ValueError("smart_criteria is required for SMART playlists and only for them")
        if self.curation is not None and kind is not PlaylistType.AI_CURATED:
            raise ValueError("curation is only for AI_CURATED playlists")
        if self.photo_ids and kind is not PlaylistType.MANUAL:
            raise ValueError("photo_ids are only given for MANUAL playlists")
        return self


class PlaylistUpdate(_Body):
    """The fields to change (PUT with the fields given; ``description: null`` clears it).
    The type cannot change; photos change through ``/photos``."""

    name: Name | None = None
    description: Description | None = None
    playlist_type: PlaylistType | None = Field(default=None, description="must stay the same")
    smart_criteria: Criteria | None = None
    curation: CurationGoal | None = None
    shared: bool | None = None
    shuffle: bool | None = None
    loop: bool | None = None
    transition_duration: TransitionSeconds | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nullable = {"description"}
        for name in self.model_fields_set - nullable:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class PhotoIds(_Body):
    """Photos to add (appended in this order; ones already there stay where they are)."""

    photo_ids: list[PhotoId] = Field(min_length=1, max_length=MAX_PHOTOS_PER_REQUEST)


class PhotoOrder(_Body):
    """Every photo of the playlist, once each, in the new order."""

    photo_ids: list[PhotoId] = Field(max_length=MAX_MANUAL_PHOTOS)


class PlaylistSummary(BaseModel):
    """A playlist as listed: everything but its photos."""

    playlist_id: str
    name: str
    description: str | None
    user_id: str
    organization_id: str
    playlist_type: PlaylistTypeName
    shared: bool
    smart_criteria: dict[str, Any] | None
    curation: dict[str, Any] | None
    curated_at: datetime | None
    photo_count: int
    shuffle: bool
    loop: bool
    transition_duration: int
    created_at: datetime
    updated_at: datetime


class PlaylistOut(PlaylistSummary):
    """A playlist with its first photos in playing order (all of them up to 1000; page
    through ``/photos`` for more)."""

    photo_ids: list[str]


class PlaylistPage(BaseModel):
    items: list[PlaylistSummary]
    next_cursor: str | None


class PlaylistItemOut(BaseModel):
    """One photo of a playlist and why it is there: for a smart playlist the criteria it
    matched now and its quality score, for a curated one its score and what it adds."""

    photo_id: str
    position: int | None
    added_at: datetime
    reason: dict[str, Any] | None


class PlaylistItemPage(BaseModel):
    items: list[PlaylistItemOut]
    next_cursor: str | None
