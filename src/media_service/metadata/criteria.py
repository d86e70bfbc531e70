"""The criteria language: one JSON filter that finds photos by their metadata.

``POST /api/v1/media/metadata/query`` takes it and smart playlists will store it. These are
the models only: ``compiler.py`` turns a ``Criteria`` into SQL for PostgreSQL and SQLite and
``evaluate.py`` into plain Python (the oracle the property tests compare the SQL with).
docs/criteria.md describes the language for API users.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

MAX_VALUES = 50
# No C0/C1 control characters: PostgreSQL rejects NUL in text and none belong in a name.
_PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]*$"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SCORE_PLACES = Decimal("0.01")  # quality_score & co. are NUMERIC(3, 2)
_DEGREE_PLACES = Decimal("0.00000001")  # latitude/longitude are NUMERIC(_, 8)


def ascii_lower(value: str) -> str:
    """Lower-case A-Z only: the case folding SQLite's lower() and PostgreSQL's
    ``lower(x COLLATE "C")`` both do, so text matches the same on both databases."""
    return value.translate(_ASCII_LOWER)


def _stripped(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


def _name(value: str) -> str:
    value = _stripped(value).lower()
    if len(value) > 100:  # lower() can lengthen a few characters (e.g. "İ")
        raise ValueError("must be at most 100 characters")
    return value


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


# A label, scene, object or colour name: stripped and lower-cased like the stored ones.
Name = Annotated[
    str, Field(min_length=1, max_length=100, pattern=_PRINTABLE), AfterValidator(_name)
]
Names = Annotated[list[Name], Field(max_length=MAX_VALUES), AfterValidator(_unique)]
# Free text matched case-insensitively for A-Z (see ascii_lower).
Text = Annotated[
    str,
    Field(min_length=1, max_length=100, pattern=_PRINTABLE),
    AfterValidator(_stripped),
    AfterValidator(ascii_lower),
]
Place = Annotated[
    str,
    Field(min_length=1, max_length=255, pattern=_PRINTABLE),
    AfterValidator(_stripped),
    AfterValidator(ascii_lower),
]
Score = Annotated[Decimal, Field(ge=0, le=1)]
Latitude = Annotated[Decimal, Field(ge=-90, le=90)]
Longitude = Annotated[Decimal, Field(ge=-180, le=180)]


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+01:00
        raise ValueError("out of range once converted to UTC") from exc


Instant = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class NameSet(_Model):
    """Conditions on a list column; an empty (or missing) list adds no condition."""

    any: Names = Field(default_factory=list)  # at least one of these
    all: Names = Field(default_factory=list)  # every one of these
    none: Names = Field(default_factory=list)  # not one of these


class ScoreRange(_Model):
    """An inclusive range over a 0..1 score with two decimal places."""

    min: Score | None = None
    max: Score | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        return self

    def bounds(self) -> tuple[Decimal | None, Decimal | None]:
        """The bounds rounded inwards to the column's two places: the same rows match, and
        SQLite (which compares floats) and PostgreSQL (exact decimals) then agree."""
        low = None if self.min is None else self.min.quantize(_SCORE_PLACES, ROUND_CEILING)
        high = None if self.max is None else self.max.quantize(_SCORE_PLACES, ROUND_FLOOR)
        return low, high


class CountRange(_Model):
    """An inclusive range over a count."""

    min: Annotated[int, Field(ge=0, le=100_000)] | None = None
    max: Annotated[int, Field(ge=0, le=100_000)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        return self


class TimeRange(_Model):
    """``from`` inclusive, ``to`` exclusive; both need a UTC offset."""

    from_: Instant | None = Field(default=None, alias="from")
    to: Instant | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.from_ is not None and self.to is not None and self.from_ >= self.to:
            raise ValueError("from must be before to")
        return self


class Near(_Model):
    """Within ``radius_km`` of a point (equirectangular approximation, see geo.py)."""

    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)]
    radius_km: Annotated[float, Field(gt=0, le=20_000)]


class BoundingBox(_Model):
    """Inclusive box; ``west > east`` means it crosses the antimeridian."""

    south: Latitude
    west: Longitude
    north: Latitude
    east: Longitude

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.south > self.north:
            raise ValueError("south must not be greater than north")
        return self

    def bounds(self) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """(south, west, north, east) rounded inwards to the columns' eight places: the same
        rows match, and float (SQLite) and decimal (PostgreSQL) comparisons agree."""
        inward = (ROUND_CEILING, ROUND_CEILING, ROUND_FLOOR, ROUND_FLOOR)
        values = (self.south, self.west, self.north, self.east)
        return tuple(  # type: ignore[return-value]
            value.quantize(_DEGREE_PLACES, rounding)
            for value, rounding in zip(values, inward, strict=True)
        )


class Camera(_Model):
    """Camera make and/or model, equal ignoring A-Z case and surrounding spaces."""

    make: Text | None = None
    model: Text | None = None


class Orientation(enum.StrEnum):
    LANDSCAPE = "landscape"
    PORTRAIT = "portrait"
    SQUARE = "square"


SortField = Literal[
    "quality_score",
    "photo_taken_at",
    "brightness",
    "contrast",
    "blur_score",
    "created_at",
    "file_id",
]
DECIMAL_SORT_FIELDS = frozenset({"quality_score", "brightness", "contrast", "blur_score"})
TIME_SORT_FIELDS = frozenset({"photo_taken_at", "created_at"})


class Sort(_Model):
    """Order of the results: NULLs last in both directions, then ``file_id`` the same way."""

    field: SortField = "photo_taken_at"
    direction: Literal["asc", "desc"] = "desc"


class Criteria(_Model):
    """Every field is optional; the conditions of the fields given must all hold."""

    labels: NameSet | None = None
    scenes: NameSet | None = None
    objects: NameSet | None = None
    colors: NameSet | None = None
    quality: ScoreRange | None = None
    blur: ScoreRange | None = None
    brightness: ScoreRange | None = None
    contrast: ScoreRange | None = None
    taken: TimeRange | None = None
    near: Near | None = None
    bbox: BoundingBox | None = None
    location: Place | None = None  # a substring of location_name
    camera: Camera | None = None
    faces: CountRange | None = None
    has_faces: bool | None = None
    orientation: Annotated[list[Orientation], Field(max_length=3)] | None = None
    processed: bool | None = None
    sort: Sort = Field(default_factory=Sort)


# Criteria field → PhotoMetadata column, for the list and score conditions.
LIST_FIELDS = {"labels": "ai_labels", "scenes": "ai_scenes", "objects": "ai_objects"}
SCORE_FIELDS = {
    "quality": "quality_score",
    "blur": "blur_score",
    "brightness": "brightness",
    "contrast": "contrast",
}


# -- keyset cursors --------------------------------------------------------------------------

CursorValue = Decimal | datetime | None
_MAX_CURSOR = 400


@dataclass(frozen=True)
class Cursor:
    """A position in a sorted listing: the last row's sort value and file_id."""

    value: CursorValue
    file_id: str


def encode_cursor(sort: Sort, row: Any) -> str:
    """An opaque, URL-safe cursor pointing just after ``row`` (a PhotoMetadata or a mapping /
    result row with its columns) in the order of ``sort``."""
    file_id = _get(row, "file_id")
    value = None if sort.field == "file_id" else _get(row, sort.field)
    text = (
        None
        if value is None
        else (value.isoformat() if isinstance(value, datetime) else str(value))
    )
    body = json.dumps([sort.field, sort.direction, text, file_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_cursor(sort: Sort, cursor: str) -> Cursor:
    """The position in ``cursor``; ``ValueError`` if it is malformed or was made for another
    sort (the API answers 422)."""
    try:
        if len(cursor) > _MAX_CURSOR:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        field, direction, text, file_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValueError("invalid cursor") from exc
    if [field, direction] != [sort.field, sort.direction]:
        raise ValueError("the cursor belongs to a different sort")
    if not isinstance(file_id, str) or not 1 <= len(file_id) <= 50:
        raise ValueError("invalid cursor")
    if not (file_id.isascii() and file_id.isprintable()):  # NUL: a database error, not 422
        raise ValueError("invalid cursor")
    return Cursor(_cursor_value(field, text), file_id)


def _cursor_value(field: str, text: object) -> CursorValue:
    if text is None or field == "file_id":
        return None
    if not isinstance(text, str):
        raise ValueError("invalid cursor")
    if field in DECIMAL_SORT_FIELDS:
        return _cursor_decimal(text)
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError("invalid cursor") from exc
    if value.tzinfo is None:
        raise ValueError("invalid cursor")
    try:
        return _to_utc(value)  # binding 0001-01-01T00:00+01:00 would overflow later
    except ValueError as exc:
        raise ValueError("invalid cursor") from exc


def _cursor_decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except ArithmeticError as exc:
        raise ValueError("invalid cursor") from exc
    if not value.is_finite():
        raise ValueError("invalid cursor")
    return value


def _get(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, Mapping) else getattr(row, name)
