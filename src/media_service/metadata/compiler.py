"""Criteria → SQLAlchemy conditions, ordering and keyset cursors, for PostgreSQL and SQLite.

Pure functions over column expressions of ``PhotoMetadata`` (and ``MediaFile.processed``);
the caller joins the two tables, adds its visibility rules and runs the query. evaluate.py is
the same language in Python, and the property tests hold the two to identical answers.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import (
    ARRAY,
    SQLColumnExpression,
    String,
    Text,
    and_,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlalchemy.sql.functions import FunctionElement

from media_service.media.models import MediaFile
from media_service.metadata.criteria import (
    LIST_FIELDS,
    SCORE_FIELDS,
    Criteria,
    Cursor,
    NameSet,
    Sort,
    decode_cursor,
    encode_cursor,
)
from media_service.metadata.geo import near_sql, plan_near
from media_service.metadata.models import PhotoMetadata

__all__ = ["compile_where", "cursor_where", "encode_cursor", "order_by"]

Condition = ColumnElement[bool]


def compile_where(criteria: Criteria, dialect: str) -> list[Condition]:
    """The conditions (to AND together) that select the photos ``criteria`` describes."""
    if dialect not in ("postgresql", "sqlite"):
        raise ValueError(f"unsupported dialect {dialect!r}")
    conditions = _list_conditions(criteria, dialect)
    for name, column in SCORE_FIELDS.items():
        if (score := getattr(criteria, name)) is not None:
            conditions += _range(getattr(PhotoMetadata, column), *score.bounds())
    conditions += _time(criteria) + _place(criteria) + _text(criteria) + _faces(criteria)
    if criteria.orientation:
        conditions.append(PhotoMetadata.orientation.in_([o.value for o in criteria.orientation]))
    if criteria.processed is not None:
        conditions.append(MediaFile.processed == criteria.processed)
    return conditions


def order_by(sort: Sort) -> list[UnaryExpression[Any]]:
    """ORDER BY terms: the sort column with NULLs last (both directions), then file_id."""
    file_id = _file_id_order(sort)
    if sort.field == "file_id":
        return [file_id]
    column = getattr(PhotoMetadata, sort.field)
    ordered = column.asc() if sort.direction == "asc" else column.desc()
    return [ordered.nulls_last(), file_id]


def cursor_where(sort: Sort, cursor: str) -> Condition:
    """Rows strictly after the row ``cursor`` was made from (see ``encode_cursor``), in the
    order ``order_by(sort)`` gives. ``ValueError`` for a cursor that is not valid for ``sort``."""
    position: Cursor = decode_cursor(sort, cursor)
    file_id = _bytewise(PhotoMetadata.file_id)
    ascending = sort.direction == "asc"
    after_id = file_id > position.file_id if ascending else file_id < position.file_id
    if sort.field == "file_id":
        return after_id
    column = getattr(PhotoMetadata, sort.field)
    if position.value is None:  # among the NULLs, which come last
        return and_(column.is_(None), after_id)
    beyond = column > position.value if ascending else column < position.value
    return or_(beyond, and_(column == position.value, after_id), column.is_(None))


def _file_id_order(sort: Sort) -> UnaryExpression[Any]:
    file_id = _bytewise(PhotoMetadata.file_id)
    return file_id.asc() if sort.direction == "asc" else file_id.desc()


# -- list columns ----------------------------------------------------------------------------


def _list_conditions(criteria: Criteria, dialect: str) -> list[Condition]:
    postgres = dialect == "postgresql"
    conditions: list[Condition] = []
    for name, column_name in LIST_FIELDS.items():
        column = getattr(PhotoMetadata, column_name)
        strings = _JsonbStrings(column) if postgres else _SqliteStrings(column)
        conditions += _name_set(getattr(criteria, name), strings)
    colors = _JsonbColors() if postgres else _SqliteColors()
    return conditions + _name_set(criteria.colors, colors)


class _Matcher(Protocol):
    """How one dialect tests a JSON list for any / all of some names."""

    def any(self, values: list[str]) -> Condition: ...

    def all(self, values: list[str]) -> Condition: ...


def _name_set(condition: NameSet | None, matcher: _Matcher) -> list[Condition]:
    if condition is None:
        return []
    conditions = [matcher.any(condition.any)] if condition.any else []
    if condition.all:
        conditions.append(matcher.all(condition.all))
    if condition.none:
        conditions.append(not_(matcher.any(condition.none)))
    return conditions


class _JsonbStrings:
    """``?|`` and ``@>``: both served by the GIN (jsonb_ops) indexes on the list columns."""

    def __init__(self, column: SQLColumnExpression[Any]) -> None:
        self.column = _jsonb(column)

    def any(self, values: list[str]) -> Condition:
        return self.column.has_any(literal(values, ARRAY(Text)))  # type: ignore[no-any-return]

    def all(self, values: list[str]) -> Condition:
        return self.column.contains(values)  # type: ignore[no-any-return]


class _JsonbColors:
    """``ai_colors @> '[{"name": …}]'``: an element whose name is the colour."""

    def __init__(self) -> None:
        self.column = _jsonb(PhotoMetadata.ai_colors)

    def any(self, values: list[str]) -> Condition:
        return or_(*(self.column.contains([{"name": value}]) for value in values))

    def all(self, values: list[str]) -> Condition:
        return self.column.contains([{"name": value} for value in values])  # type: ignore[no-any-return]


def _jsonb(column: SQLColumnExpression[Any]) -> Any:
    # The column is JSON with a JSONB variant; the JSONB comparator gives ?| and @>.
    # type_coerce renders no CAST, so the GIN index on the bare column still applies.
    return type_coerce(column, JSONB)


class _SqliteStrings:
    """``EXISTS (SELECT 1 FROM json_each(column) WHERE value IN (…))``."""

    def __init__(self, column: SQLColumnExpression[Any]) -> None:
        self.column = column

    def any(self, values: list[str]) -> Condition:
        elements = func.json_each(self.column).table_valued("value")
        return exists(select(1).select_from(elements).where(elements.c.value.in_(values)))

    def all(self, values: list[str]) -> Condition:
        return and_(*(self.any([value]) for value in values))


class _SqliteColors:
    """Like ``_SqliteStrings`` over ``json_extract(value, '$.name')`` of object elements."""

    def any(self, values: list[str]) -> Condition:
        elements = func.json_each(PhotoMetadata.ai_colors).table_valued("value", "type")
        named = func.json_extract(elements.c.value, "$.name")
        # The type test keeps json_extract away from string elements, which are not JSON.
        found = and_(elements.c.type == "object", named.in_(values))
        return exists(select(1).select_from(elements).where(found))

    def all(self, values: list[str]) -> Condition:
        return and_(*(self.any([value]) for value in values))


# -- scalar columns --------------------------------------------------------------------------


def _range(column: SQLColumnExpression[Any], low: Any, high: Any) -> list[Condition]:
    conditions = [] if low is None else [column >= low]
    return conditions if high is None else [*conditions, column <= high]


def _time(criteria: Criteria) -> list[Condition]:
    taken = criteria.taken
    if taken is None:
        return []
    column = PhotoMetadata.photo_taken_at
    conditions = [] if taken.from_ is None else [column >= taken.from_]
    return conditions if taken.to is None else [*conditions, column < taken.to]


def _place(criteria: Criteria) -> list[Condition]:
    latitude, longitude = PhotoMetadata.latitude, PhotoMetadata.longitude
    conditions = []
    if (near := criteria.near) is not None:
        plan = plan_near(near.latitude, near.longitude, near.radius_km)
        conditions.append(near_sql(plan, latitude, longitude))
    if (box := criteria.bbox) is not None:
        south, west, north, east = box.bounds()
        across = west > east  # the box crosses the antimeridian
        lon = or_(longitude >= west, longitude <= east) if across else longitude.between(west, east)
        conditions += [latitude.between(south, north), lon]
    return conditions


def _text(criteria: Criteria) -> list[Condition]:
    conditions = []
    if criteria.location is not None:
        location = _ascii_lower(PhotoMetadata.location_name)
        conditions.append(location.contains(criteria.location, autoescape=True))
    if (camera := criteria.camera) is not None:
        for wanted, column in (
            (camera.make, PhotoMetadata.camera_make),
            (camera.model, PhotoMetadata.camera_model),
        ):
            if wanted is not None:
                conditions.append(func.trim(_ascii_lower(column)) == wanted)
    return conditions


def _faces(criteria: Criteria) -> list[Condition]:
    count = PhotoMetadata.face_count
    conditions = (
        [] if criteria.faces is None else _range(count, criteria.faces.min, criteria.faces.max)
    )
    if criteria.has_faces is True:
        conditions.append(count > 0)
    elif criteria.has_faces is False:
        conditions.append(or_(count <= 0, count.is_(None)))
    return conditions


# -- text that compares the same on both databases -------------------------------------------


class _AsciiLower(FunctionElement[str]):
    """lower() of A-Z only (criteria.ascii_lower): SQLite's lower() already is; PostgreSQL's
    is under the "C" collation, whatever the database's locale."""

    type = String()
    name = "ascii_lower"
    inherit_cache = True


class _Bytewise(FunctionElement[str]):
    """Text compared by code point, as SQLite and Python do: COLLATE "C" on PostgreSQL."""

    type = String()
    name = "bytewise"
    inherit_cache = True


def _ascii_lower(column: SQLColumnExpression[str | None]) -> _AsciiLower:
    return _AsciiLower(column)


def _bytewise(column: SQLColumnExpression[str]) -> _Bytewise:
    return _Bytewise(column)


@compiles(_AsciiLower)
def _ascii_lower_sqlite(element: _AsciiLower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(_AsciiLower, "postgresql")
def _ascii_lower_postgres(element: _AsciiLower, compiler: SQLCompiler, **kw: Any) -> str:
    return f'lower(({compiler.process(element.clauses, **kw)}) COLLATE "C")'


@compiles(_Bytewise)
def _bytewise_sqlite(element: _Bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_Bytewise, "postgresql")
def _bytewise_postgres(element: _Bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    return f'({compiler.process(element.clauses, **kw)}) COLLATE "C"'
