"""Request and response bodies of ``/api/v1/media/frames``, ``/schedules`` and ``/cache``."""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Literal, Self
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from media_service.frames.models import Orientation
from media_service.frames.occasions import supported_subdivisions
from media_service.frames.rotation import ScheduleType, parse_hhmm

_NAME = r"^[^\x00-\x1f\x7f-\x9f]*$"
Name = Annotated[str, Field(min_length=1, max_length=255, pattern=_NAME)]
ScreenSide = Annotated[int, Field(ge=16, le=16384)]
Transition = Literal["fade", "slide", "zoom", "none"]
MAX_OCCASIONS = 50


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _known_zone(value: str) -> str:
    if value not in _zones():
        raise ValueError("not an IANA time zone (e.g. Europe/Berlin)")
    return value


def _hhmm(value: str) -> str:
    parse_hhmm(value)
    return value


TimeZoneName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_known_zone)]
HHMM = Annotated[str, Field(min_length=5, max_length=5), AfterValidator(_hhmm)]


# -- frames --------------------------------------------------------------------------------------


class FrameCreate(BaseModel):
    """A frame: its screen's native pixels and how it is mounted."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    time_zone: TimeZoneName = "UTC"
    screen_width: ScreenSide = 1920
    screen_height: ScreenSide = 1080
    orientation: Orientation = Orientation.LANDSCAPE


class FrameUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    time_zone: TimeZoneName | None = None
    screen_width: ScreenSide | None = None
    screen_height: ScreenSide | None = None
    orientation: Orientation | None = None


class FrameOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    frame_id: str
    user_id: str
    organization_id: str
    name: str
    time_zone: str
    screen_width: int
    screen_height: int
    orientation: Orientation
    last_seen_at: datetime | None
    created_at: datetime
    updated_at: datetime


class FramePage(BaseModel):
    items: list[FrameOut]


class FrameTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_days: int = Field(default=365, ge=1, le=3650)


class FrameTokenOut(BaseModel):
    """A device token: it reads only this frame's schedule, feed and cached photos."""

    frame_id: str
    token: str
    expires_at: datetime


# -- schedules -----------------------------------------------------------------------------------


class DateRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["DATE_RANGE"]
    start_date: date
    end_date: date

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end_date < self.start_date:
            raise ValueError("end_date must not be before start_date")
        return self


class YearlyDate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["YEARLY"]
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)
    label: Name | None = None

    @model_validator(mode="after")
    def _real_day(self) -> Self:
        date(2000, self.month, self.day)  # a leap year: 29 February is allowed
        return self


class PublicHolidays(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["HOLIDAYS"]
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    subdivision: str | None = Field(default=None, max_length=10)

    @model_validator(mode="after")
    def _supported(self) -> Self:
        subdivisions = supported_subdivisions(self.country)
        if subdivisions is None:
            raise ValueError(f"no public holidays are known for country {self.country!r}")
        if self.subdivision is not None and self.subdivision not in subdivisions:
            raise ValueError(f"{self.country} has no subdivision {self.subdivision!r}")
        return self


class OnThisDay(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["ON_THIS_DAY"]


OccasionIn = Annotated[
    DateRange | YearlyDate | PublicHolidays | OnThisDay, Field(discriminator="kind")
]


class ScheduleFields(BaseModel):
    """Every setting of a schedule, checked together (a PUT is checked after merging)."""

    model_config = ConfigDict(extra="forbid")

    playlist_id: str | None = Field(default=None, max_length=50)
    name: Name | None = None
    schedule_type: ScheduleType
    start_time: HHMM | None = Field(default=None, description="HH:MM, frame's local time")
    end_time: HHMM | None = Field(default=None, description="HH:MM; before start: overnight")
    days_of_week: list[Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=list, max_length=7, description="0 = Monday … 6 = Sunday; empty: all"
    )
    occasions: list[OccasionIn] = Field(default_factory=list, max_length=MAX_OCCASIONS)
    priority: int = Field(default=0, ge=-1000, le=1000)
    rotation_interval: int = Field(default=10, ge=3, le=86_400, description="Seconds per photo")
    transition: Transition = "fade"
    shuffle: bool = False
    recent_first: bool = Field(default=False, description="Photos added in the last 7 days first")
    is_active: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.days_of_week)) != len(self.days_of_week):
            raise ValueError("days_of_week must not repeat a day")
        if (self.start_time is None) != (self.end_time is None):
            raise ValueError("give both start_time and end_time, or neither")
        if self.start_time is not None and self.start_time == self.end_time:
            raise ValueError("start_time and end_time must differ")
        _check_type(self)
        return self


def _check_type(fields: ScheduleFields) -> None:
    kind = fields.schedule_type
    if kind is ScheduleType.CONTINUOUS and (
        fields.start_time or fields.days_of_week or fields.occasions
    ):
        raise ValueError("a CONTINUOUS schedule has no times, days or occasions")
    if kind is ScheduleType.TIME_BASED:
        if fields.start_time is None:
            raise ValueError("a TIME_BASED schedule needs start_time and end_time")
        if fields.occasions:
            raise ValueError("occasions belong to EVENT_BASED schedules")
    if kind is ScheduleType.EVENT_BASED and not fields.occasions:
        raise ValueError("an EVENT_BASED schedule needs at least one occasion")


class ScheduleCreate(ScheduleFields):
    frame_id: str = Field(min_length=1, max_length=50)


class ScheduleUpdate(BaseModel):
    """Fields to change; the result is checked as a whole."""

    model_config = ConfigDict(extra="forbid")

    playlist_id: str | None = Field(default=None, max_length=50)
    name: Name | None = None
    schedule_type: ScheduleType | None = None
    start_time: HHMM | None = None
    end_time: HHMM | None = None
    days_of_week: list[Annotated[int, Field(ge=0, le=6)]] | None = Field(default=None, max_length=7)
    occasions: list[OccasionIn] | None = Field(default=None, max_length=MAX_OCCASIONS)
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    rotation_interval: int | None = Field(default=None, ge=3, le=86_400)
    transition: Transition | None = None
    shuffle: bool | None = None
    recent_first: bool | None = None
    is_active: bool | None = None


class ScheduleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    schedule_id: str
    user_id: str
    frame_id: str
    playlist_id: str | None
    name: str | None
    schedule_type: ScheduleType
    start_time: str | None
    end_time: str | None
    days_of_week: list[int]
    occasions: list[OccasionIn]
    priority: int
    rotation_interval: int
    transition: str
    shuffle: bool
    recent_first: bool
    is_active: bool
    created_at: datetime
    updated_at: datetime


class FrameSchedules(BaseModel):
    """A frame's schedules, and which one applies now (``active_schedule_id`` is ``null``
    while the frame sleeps) until ``next_change_at``."""

    frame_id: str
    time_zone: str
    active_schedule_id: str | None
    next_change_at: datetime | None
    schedules: list[ScheduleOut]


class SchedulePhotos(BaseModel):
    """A schedule's photos in the order of the cycle running at ``at``: each photo once per
    cycle; ``current_index`` is the one on show, until ``next_photo_at``."""

    schedule_id: str
    frame_id: str
    playlist_id: str | None
    at: datetime
    active: bool = Field(description="Whether the schedule's own times and days match at `at`")
    cycle: int
    current_index: int
    next_photo_at: datetime | None
    rotation_interval: int
    photo_count: int
    photo_ids: list[str]


# -- the feed ------------------------------------------------------------------------------------


class FeedItem(BaseModel):
    photo_id: str
    version_id: str | None = Field(description="The photo's current version")
    url: str = Field(description="The cached copy when CACHED, else a signed rendition URL")
    cached: bool


class Feed(BaseModel):
    """What a frame shows. While ``state`` is ``ACTIVE`` it shows ``items`` in order, each
    ``rotation_interval`` seconds, the first at ``cycle_started_at``; the order holds until
    ``cycle_ends_at`` or ``next_change_at``, whichever is sooner. While ``SLEEP`` it shows
    nothing until ``next_change_at`` (``null``: no schedule ahead)."""

    frame_id: str
    state: Literal["ACTIVE", "SLEEP"]
    schedule_id: str | None
    playlist_id: str | None
    rotation_interval: int | None
    transition: str | None
    transition_duration: int | None
    next_change_at: datetime | None
    cycle: int | None
    cycle_started_at: datetime | None
    cycle_ends_at: datetime | None
    screen: dict[str, int]
    items: list[FeedItem]
