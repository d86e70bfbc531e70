"""Distance for the ``near`` criterion: one formula, written once for SQL and once for Python.

A point is near when it passes a bounding box on the raw columns (index-friendly, exact
decimal bounds) and then an equirectangular distance test in double precision::

    dx = (lon - lon0) * kx      where kx = cos(lat0) * 111.320, a constant computed here
    dy = (lat - lat0) * 110.574
    dx * dx + dy * dy <= r * r

Only ``-``, ``*`` and ``+`` on IEEE doubles, in the same order, with the same constants: SQLite,
PostgreSQL (``CAST(... AS FLOAT)``) and Python compute bit-identical results, which is what lets
the property tests demand exact agreement. Longitude wraps: the centre is also tried at
``lon0 ± 360`` whenever that window reaches the valid range. Accuracy: see docs/criteria.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from sqlalchemy import Float, SQLColumnExpression, and_, cast, literal, or_
from sqlalchemy.sql.elements import ColumnElement

KM_PER_DEGREE_LATITUDE = 110.574
KM_PER_DEGREE_LONGITUDE = 111.320  # at the equator; times cos(latitude) elsewhere
_PLACES = Decimal("0.00000001")  # the columns' eight decimal places


@dataclass(frozen=True)
class Window:
    """One longitude range to test, with the centre longitude (maybe shifted by ±360°)."""

    west: Decimal
    east: Decimal
    center_longitude: float


@dataclass(frozen=True)
class NearPlan:
    """Everything both implementations need, computed once in Python."""

    south: Decimal
    north: Decimal
    center_latitude: float
    kx: float
    radius_squared: float
    windows: tuple[Window, ...]


def plan_near(latitude: float, longitude: float, radius_km: float) -> NearPlan:
    """The bounding boxes and constants for "within ``radius_km`` of this point"."""
    kx = math.cos(math.radians(latitude)) * KM_PER_DEGREE_LONGITUDE
    half_lat = radius_km / KM_PER_DEGREE_LATITUDE
    # Near a pole kx is (almost) zero and every longitude qualifies.
    half_lon = min(radius_km / kx, 360.0) if kx > 1e-9 else 360.0
    windows = tuple(
        window
        for shift in (0.0, -360.0, 360.0)
        if (window := _window(longitude + shift, half_lon)) is not None
    )
    return NearPlan(
        south=_floor(max(latitude - half_lat, -90.0)),
        north=_ceil(min(latitude + half_lat, 90.0)),
        center_latitude=latitude,
        kx=kx,
        radius_squared=radius_km * radius_km,
        windows=windows,
    )


def _window(center: float, half: float) -> Window | None:
    west, east = center - half, center + half
    if east < -180.0 or west > 180.0:
        return None
    return Window(_floor(max(west, -180.0)), _ceil(min(east, 180.0)), center)


def _floor(value: float) -> Decimal:
    return Decimal(value).quantize(_PLACES, ROUND_FLOOR)


def _ceil(value: float) -> Decimal:
    return Decimal(value).quantize(_PLACES, ROUND_CEILING)


# -- Python ----------------------------------------------------------------------------------


def is_near(plan: NearPlan, latitude: Decimal | None, longitude: Decimal | None) -> bool:
    """Whether a stored point passes ``plan``; a missing coordinate never does."""
    if latitude is None or longitude is None or not plan.south <= latitude <= plan.north:
        return False
    lat, lon = float(latitude), float(longitude)
    return any(
        window.west <= longitude <= window.east
        and squared_km(plan, window, lat, lon) <= plan.radius_squared
        for window in plan.windows
    )


def squared_km(plan: NearPlan, window: Window, latitude: float, longitude: float) -> float:
    """The squared approximate distance in km² (mirrors ``squared_km_sql`` operation by
    operation: change both or neither)."""
    dx = (longitude - window.center_longitude) * plan.kx
    dy = (latitude - plan.center_latitude) * KM_PER_DEGREE_LATITUDE
    return dx * dx + dy * dy


# -- SQL -------------------------------------------------------------------------------------


def near_sql(
    plan: NearPlan,
    latitude: SQLColumnExpression[Decimal | None],
    longitude: SQLColumnExpression[Decimal | None],
) -> ColumnElement[bool]:
    """The SQL form of ``is_near`` over the latitude and longitude columns."""
    per_window = [
        and_(
            longitude.between(window.west, window.east),
            squared_km_sql(plan, window, latitude, longitude) <= _double(plan.radius_squared),
        )
        for window in plan.windows
    ]
    return and_(latitude.between(plan.south, plan.north), or_(*per_window))


def squared_km_sql(
    plan: NearPlan,
    window: Window,
    latitude: SQLColumnExpression[Decimal | None],
    longitude: SQLColumnExpression[Decimal | None],
) -> ColumnElement[float]:
    """``squared_km`` in SQL: doubles throughout, so PostgreSQL does not switch to numeric."""
    dx = (cast(longitude, Float) - _double(window.center_longitude)) * _double(plan.kx)
    dy = (cast(latitude, Float) - _double(plan.center_latitude)) * _double(KM_PER_DEGREE_LATITUDE)
    # SQLAlchemy flattens "dx * dx" into "(a - b) * k * (a - b) * k", which rounds
    # differently from Python's dx * dx; a no-op CAST keeps each factor whole.
    whole_dx, whole_dy = cast(dx, Float), cast(dy, Float)
    return whole_dx * whole_dx + whole_dy * whole_dy


def _double(value: float) -> ColumnElement[float]:
    return literal(value, Float())
