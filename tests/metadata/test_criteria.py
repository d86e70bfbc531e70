"""The criteria models: validation errors point at the bad field, values are normalised,
cursors round-trip and refuse anything else, and the distance formula is as accurate as
docs/criteria.md says."""

from __future__ import annotations

import base64
import math
import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite

from media_service.metadata.compiler import compile_where
from media_service.metadata.criteria import Criteria, Sort, decode_cursor, encode_cursor
from media_service.metadata.geo import plan_near, squared_km


def _error_locs(body: dict[str, Any]) -> list[tuple[int | str, ...]]:
    with pytest.raises(ValidationError) as caught:
        Criteria.model_validate(body)
    return [error["loc"] for error in caught.value.errors()]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"colour": {"any": ["blue"]}}, ("colour",)),
        ({"labels": {"some": ["dog"]}}, ("labels", "some")),
        ({"quality": {"min": 1.5}}, ("quality", "min")),
        ({"quality": {"min": "nan"}}, ("quality", "min")),
        ({"blur": {"max": -0.1}}, ("blur", "max")),
        ({"quality": {"min": 0.8, "max": 0.2}}, ("quality",)),
        ({"labels": {"any": ["dog"] * 51}}, ("labels", "any")),
        ({"labels": {"any": ["dog", "   "]}}, ("labels", "any", 1)),
        ({"labels": {"all": ["x" * 101]}}, ("labels", "all", 0)),
        ({"scenes": {"none": ["nul\x00"]}}, ("scenes", "none", 0)),
        ({"colors": {"any": [3]}}, ("colors", "any", 0)),
        ({"taken": {"from": "2024-01-01T00:00:00"}}, ("taken", "from")),
        ({"taken": {"from": "2024-01-02T00:00:00Z", "to": "2024-01-01T00:00:00Z"}}, ("taken",)),
        ({"taken": {"since": "2024-01-01T00:00:00Z"}}, ("taken", "since")),
        ({"near": {"latitude": 91, "longitude": 0, "radius_km": 1}}, ("near", "latitude")),
        ({"near": {"latitude": 0, "longitude": "inf", "radius_km": 1}}, ("near", "longitude")),
        ({"near": {"latitude": 0, "longitude": 0, "radius_km": 0}}, ("near", "radius_km")),
        ({"near": {"latitude": 0, "longitude": 0, "radius_km": 20001}}, ("near", "radius_km")),
        ({"near": {"latitude": 0, "longitude": 0}}, ("near", "radius_km")),
        ({"bbox": {"south": 10, "west": 0, "north": 5, "east": 1}}, ("bbox",)),
        ({"bbox": {"south": 0, "west": 181, "north": 5, "east": 1}}, ("bbox", "west")),
        ({"location": ""}, ("location",)),
        ({"camera": {"lens": "x"}}, ("camera", "lens")),
        ({"faces": {"min": -1}}, ("faces", "min")),
        ({"has_faces": "maybe"}, ("has_faces",)),
        ({"orientation": ["diagonal"]}, ("orientation", 0)),
        ({"processed": "sometimes"}, ("processed",)),
        ({"sort": {"field": "file_size"}}, ("sort", "field")),
        ({"sort": {"direction": "up"}}, ("sort", "direction")),
        ({"file_type": "Image"}, ("file_type",)),
    ],
)
def test_a_bad_field_is_reported_at_its_json_path(
    body: dict[str, Any], loc: tuple[int | str, ...]
) -> None:
    assert _error_locs(body) == [loc]


def test_names_are_stripped_lower_cased_and_deduplicated() -> None:
    criteria = Criteria.model_validate(
        {"labels": {"any": [" Dog", "dog ", "CAT"]}, "colors": {"none": ["Blue"]}}
    )
    assert criteria.labels is not None and criteria.labels.any == ["dog", "cat"]
    assert criteria.colors is not None and criteria.colors.none == ["blue"]


def test_free_text_is_folded_for_a_to_z_only() -> None:
    criteria = Criteria.model_validate(
        {"location": " MÜNCHEN ", "camera": {"make": "Canon ", "model": "EOS R5"}}
    )
    assert criteria.location == "mÜnchen"
    assert criteria.camera is not None
    assert (criteria.camera.make, criteria.camera.model) == ("canon", "eos r5")


def test_score_bounds_round_inwards_to_two_places() -> None:
    criteria = Criteria.model_validate({"quality": {"min": 0.701, "max": 0.899}})
    assert criteria.quality is not None
    assert criteria.quality.bounds() == (Decimal("0.71"), Decimal("0.89"))


def test_times_become_utc_and_the_json_round_trips() -> None:
    body = {
        "taken": {"from": "2024-05-01T12:00:00+02:00", "to": "2024-06-01T00:00:00Z"},
        "near": {"latitude": 52.5, "longitude": 13.4, "radius_km": 5},
        "sort": {"field": "quality_score", "direction": "asc"},
    }
    criteria = Criteria.model_validate(body)
    assert criteria.taken is not None
    assert criteria.taken.from_ == datetime(2024, 5, 1, 10, tzinfo=UTC)
    dumped = criteria.model_dump(mode="json", exclude_none=True)
    assert dumped["taken"]["from"] == "2024-05-01T10:00:00Z"
    assert Criteria.model_validate(dumped) == criteria


def test_the_default_sort_is_newest_photo_first() -> None:
    assert Criteria().sort == Sort(field="photo_taken_at", direction="desc")


# -- cursors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quality_score", Decimal("0.70")),
        ("quality_score", None),
        ("photo_taken_at", datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)),
        ("created_at", datetime(2024, 1, 2, tzinfo=UTC)),
        ("file_id", None),
    ],
)
def test_a_cursor_round_trips(field: str, value: Any) -> None:
    sort = Sort.model_validate({"field": field, "direction": "asc"})
    row = {field: value} | {"file_id": "file_1"}
    token = encode_cursor(sort, row)
    assert token.replace("-", "").replace("_", "").isalnum()  # URL-safe, no padding
    position = decode_cursor(sort, token)
    assert (position.value, position.file_id) == (value, "file_1")


def _token(*parts: Any) -> str:
    import json

    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "not base64 !",
        "",
        _token("quality_score", "asc", "0.5"),  # three parts
        _token("quality_score", "desc", "0.5", "f1"),  # another direction
        _token("brightness", "asc", "0.5", "f1"),  # another field
        _token("quality_score", "asc", "NaN", "f1"),
        _token("quality_score", "asc", "zero", "f1"),
        _token("quality_score", "asc", 0.5, "f1"),
        _token("quality_score", "asc", "0.5", ""),
        _token("quality_score", "asc", "0.5", 7),
        _token("quality_score", "asc", "0.5", "file_\x00"),  # PostgreSQL text has no NUL
        _token("quality_score", "asc", "0.5", "file_\ud800"),  # a lone surrogate
        "A" * 500,
    ],
)
def test_a_bad_cursor_is_a_value_error(token: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(Sort(field="quality_score", direction="asc"), token)


def test_a_cursor_time_must_carry_its_offset() -> None:
    sort = Sort(field="photo_taken_at", direction="asc")
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(sort, _token("photo_taken_at", "asc", "2024-01-01T00:00:00", "f1"))


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_cursor_time_out_of_range_in_utc_is_a_value_error(instant: str) -> None:
    sort = Sort(field="photo_taken_at", direction="desc")
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(sort, _token("photo_taken_at", "desc", instant, "f1"))


def test_a_cursor_time_comes_back_in_utc() -> None:
    sort = Sort(field="created_at", direction="asc")
    position = decode_cursor(sort, _token("created_at", "asc", "2024-01-01T02:00:00+02:00", "f"))
    assert position.value == datetime(2024, 1, 1, tzinfo=UTC)
    assert isinstance(position.value, datetime) and position.value.tzinfo is UTC


# -- compilation -----------------------------------------------------------------------------


def test_postgres_uses_the_jsonb_operators_the_gin_index_serves() -> None:
    criteria = Criteria.model_validate(
        {"scenes": {"any": ["beach"], "all": ["sea", "sun"], "none": ["dog"]}}
    )
    sql = " AND ".join(
        str(c.compile(dialect=postgresql.dialect())) for c in compile_where(criteria, "postgresql")
    )
    assert sql.count("photo_metadata.ai_scenes ?|") == 2
    assert "photo_metadata.ai_scenes @>" in sql
    assert "NOT (photo_metadata.ai_scenes ?|" in sql


def test_sqlite_uses_json_each() -> None:
    criteria = Criteria.model_validate({"colors": {"all": ["red", "blue"]}})
    sql = [str(c.compile(dialect=sqlite.dialect())) for c in compile_where(criteria, "sqlite")]
    assert sql[0].count("json_each(photo_metadata.ai_colors)") == 2


def test_no_criteria_compile_to_no_conditions() -> None:
    assert compile_where(Criteria(), "sqlite") == []


def test_an_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="dialect"):
        compile_where(Criteria(), "mysql")


# -- distance accuracy (the numbers docs/criteria.md gives) ----------------------------------


def _haversine_km(lat0: float, lon0: float, lat: float, lon: float) -> float:
    p0, p1 = math.radians(lat0), math.radians(lat)
    h = (
        math.sin((p1 - p0) / 2) ** 2
        + math.cos(p0) * math.cos(p1) * math.sin(math.radians(lon - lon0) / 2) ** 2
    )
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


@pytest.mark.parametrize(
    ("max_latitude", "max_km", "max_error"),
    [(30, 500, 0.01), (45, 200, 0.01), (60, 500, 0.025), (70, 200, 0.02)],
)
def test_the_approximation_stays_within_the_documented_error(
    max_latitude: float, max_km: float, max_error: float
) -> None:
    generator = random.Random(7)
    worst = 0.0
    for _ in range(5000):
        lat0 = generator.uniform(-max_latitude, max_latitude)
        lon0 = generator.uniform(-179, 179)
        bearing, km = generator.uniform(0, 2 * math.pi), generator.uniform(1, max_km)
        plan = plan_near(lat0, lon0, max_km)
        lat = lat0 + km * math.cos(bearing) / 110.574
        lon = lon0 + km * math.sin(bearing) / plan.kx
        approx = math.sqrt(squared_km(plan, plan.windows[0], lat, lon))
        true = _haversine_km(lat0, lon0, lat, lon)
        worst = max(worst, abs(approx - true) / true)
    assert worst < max_error


def test_longitude_wraps_around_the_antimeridian() -> None:
    plan = plan_near(0.0, 179.9, 50)
    centres = sorted(window.center_longitude for window in plan.windows)
    assert centres == [pytest.approx(-180.1), 179.9]
    assert min(squared_km(plan, w, 0.0, -179.9) for w in plan.windows) < 50 * 50
