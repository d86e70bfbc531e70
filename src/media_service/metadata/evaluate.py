"""The criteria language in plain Python: the oracle the SQL compiler is tested against.

Rows are mappings or objects with PhotoMetadata's attribute names. Every rule here has its
twin in compiler.py; docs/criteria.md states them once for people.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from functools import total_ordering
from typing import Any

from media_service.metadata.criteria import (
    LIST_FIELDS,
    SCORE_FIELDS,
    BoundingBox,
    Camera,
    CountRange,
    Criteria,
    NameSet,
    Sort,
    TimeRange,
    ascii_lower,
)
from media_service.metadata.geo import is_near, plan_near


def field(row: Any, name: str) -> Any:
    """``row[name]`` for a mapping, ``row.name`` otherwise."""
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def matches(criteria: Criteria, row: Any, processed: bool) -> bool:
    """Whether one photo (its metadata row, and its file's ``processed``) meets ``criteria``."""
    return all(check(criteria, row, processed) for check in _CHECKS)


def evaluate(criteria: Criteria, rows: Iterable[Any]) -> list[str]:
    """The file_ids of the matching rows, in the order the SQL gives. Each row also carries
    ``processed`` (the MediaFile column)."""
    kept = [row for row in rows if matches(criteria, row, bool(field(row, "processed")))]
    kept.sort(key=sort_key(criteria.sort))
    return [str(field(row, "file_id")) for row in kept]


def sort_key(sort: Sort) -> Callable[[Any], tuple[Any, ...]]:
    """A key for ``sorted``: NULLs last in both directions, then file_id the same way."""
    wrap: Callable[[Any], Any] = _Reversed if sort.direction == "desc" else _identity

    def key(row: Any) -> tuple[Any, ...]:
        value = field(row, sort.field)
        # 0 stands in for NULL: the first element already puts NULLs last.
        return (value is None, wrap(0 if value is None else value), wrap(field(row, "file_id")))

    return key


def _identity(value: Any) -> Any:
    return value


@total_ordering
class _Reversed:
    """Wraps a value so that it sorts the other way round."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and bool(self.value == other.value)

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)

    __hash__ = None  # type: ignore[assignment]


# -- one check per criterion -----------------------------------------------------------------


def _lists(criteria: Criteria, row: Any, processed: bool) -> bool:
    return all(
        _name_set(getattr(criteria, name), field(row, column) or [])
        for name, column in LIST_FIELDS.items()
    )


def _colors(criteria: Criteria, row: Any, processed: bool) -> bool:
    colors = field(row, "ai_colors") or []
    names = [color.get("name") for color in colors if isinstance(color, dict)]
    return _name_set(criteria.colors, names)


def _name_set(condition: NameSet | None, values: list[Any]) -> bool:
    if condition is None:
        return True
    present = set(value for value in values if isinstance(value, str))
    return (
        (not condition.any or not present.isdisjoint(condition.any))
        and present.issuperset(condition.all)
        and present.isdisjoint(condition.none)
    )


def _scores(criteria: Criteria, row: Any, processed: bool) -> bool:
    for name, column in SCORE_FIELDS.items():
        condition = getattr(criteria, name)
        if condition is not None and not _in_range(field(row, column), *condition.bounds()):
            return False
    return True


def _in_range(value: Decimal | int | None, low: Any, high: Any) -> bool:
    if low is None and high is None:
        return True
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def _taken(criteria: Criteria, row: Any, processed: bool) -> bool:
    taken: TimeRange | None = criteria.taken
    if taken is None or (taken.from_ is None and taken.to is None):
        return True
    value: datetime | None = field(row, "photo_taken_at")
    if value is None:
        return False
    return (taken.from_ is None or value >= taken.from_) and (taken.to is None or value < taken.to)


def _near(criteria: Criteria, row: Any, processed: bool) -> bool:
    near = criteria.near
    if near is None:
        return True
    plan = plan_near(near.latitude, near.longitude, near.radius_km)
    return is_near(plan, field(row, "latitude"), field(row, "longitude"))


def _bbox(criteria: Criteria, row: Any, processed: bool) -> bool:
    box: BoundingBox | None = criteria.bbox
    if box is None:
        return True
    latitude, longitude = field(row, "latitude"), field(row, "longitude")
    if latitude is None or longitude is None:
        return False
    south, west, north, east = box.bounds()
    if not south <= latitude <= north:
        return False
    if west > east:  # across the antimeridian
        return bool(longitude >= west or longitude <= east)
    return bool(west <= longitude <= east)


def _text(criteria: Criteria, row: Any, processed: bool) -> bool:
    if criteria.location is not None:
        location = field(row, "location_name")
        if location is None or criteria.location not in ascii_lower(location):
            return False
    camera: Camera | None = criteria.camera
    if camera is None:
        return True
    return _same(camera.make, field(row, "camera_make")) and _same(
        camera.model, field(row, "camera_model")
    )


def _same(wanted: str | None, value: str | None) -> bool:
    # trim() in SQL removes spaces only, hence strip(" ").
    return wanted is None or (value is not None and ascii_lower(value).strip(" ") == wanted)


def _faces(criteria: Criteria, row: Any, processed: bool) -> bool:
    count: int | None = field(row, "face_count")
    faces: CountRange | None = criteria.faces
    if faces is not None and not _in_range(count, faces.min, faces.max):
        return False
    if criteria.has_faces is None:
        return True
    return (count is not None and count > 0) == criteria.has_faces


def _orientation(criteria: Criteria, row: Any, processed: bool) -> bool:
    if not criteria.orientation:  # missing or empty: no condition
        return True
    return field(row, "orientation") in criteria.orientation


def _processed(criteria: Criteria, row: Any, processed: bool) -> bool:
    return criteria.processed is None or processed == criteria.processed


_CHECKS: tuple[Callable[[Criteria, Any, bool], bool], ...] = (
    _lists,
    _colors,
    _scores,
    _taken,
    _near,
    _bbox,
    _text,
    _faces,
    _orientation,
    _processed,
)
