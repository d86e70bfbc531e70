"""The compiled SQL and the Python evaluator give the same photos in the same order.

Random rows (from a small vocabulary, so that criteria match often) go into a real SQLite file
and a real PostgreSQL database, both migrated to head; random criteria then run as SQL, in
one query and page by page through the keyset cursor, and must equal ``evaluate()`` exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from media_service.db.engine import create_engine
from media_service.db.migrate import upgrade_to_head
from media_service.media.models import FileType, MediaFile, OwnerType
from media_service.metadata.compiler import compile_where, cursor_where, encode_cursor, order_by
from media_service.metadata.criteria import Criteria
from media_service.metadata.evaluate import evaluate
from media_service.metadata.models import PhotoMetadata

from harness.postgres import PostgresServer, unique_database_name

T = TypeVar("T")
ORG = "org_criteria_property"

LABELS = ["beach", "sea", "dog", "cat", "person", "sunset"]
COLORS = ["blue", "red", "green", "white"]
PLACES = ["Berlin, Germany", "BERLIN-Mitte", "München", "MÜNCHEN", "Paris 100% off", "a_b"]
MAKES = ["Canon", "CANON", "canon ", "Nikon", "NIKON CORPORATION"]
MODELS = ["EOS R5", "eos r5", "Z6"]
ORIENTATIONS = ["landscape", "portrait", "square"]
# Clusters (some by the antimeridian and the poles) so that near/bbox criteria find points.
CENTRES = [(52.52, 13.405), (0.5, 179.9), (-0.5, -179.95), (-33.87, 151.21), (89.9, 45.0)]
SORT_FIELDS = [
    "quality_score", "photo_taken_at", "brightness", "contrast", "blur_score", "created_at",
    "file_id",
]  # fmt: skip


# -- an event loop in a thread, so that hypothesis drives plain sync tests ---------------


class LoopThread:
    """One event loop for the module: the engines' connections live on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class Database:
    dialect: str
    engine: AsyncEngine


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def databases(
    loop: LoopThread, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Database]]:
    """A migrated SQLite file and a migrated PostgreSQL database of this module's own."""
    path: Path = tmp_path_factory.mktemp("criteria") / "criteria.db"
    name = unique_database_name("criteria")
    loop.run(create_icu_database(postgres, name))
    urls = {"sqlite": f"sqlite+aiosqlite:///{path}", "postgresql": postgres.url(name)}
    found = [Database(dialect, create_engine(url)) for dialect, url in urls.items()]
    try:
        for database in found:
            loop.run(upgrade_to_head(database.engine))
        yield found
    finally:
        for database in found:
            loop.run(database.engine.dispose())
        postgres.drop_database(name)


async def create_icu_database(postgres: PostgresServer, name: str) -> None:
    """A database whose default collation is ICU English, unlike the harness's "C" ones:
    its lower() folds "Ü" and its text order ignores case and punctuation at first, which is
    what COLLATE "C" in the compiled SQL must neutralise."""
    connection = await asyncpg.connect(postgres.admin_dsn, timeout=10)
    try:
        await connection.execute(
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' "
            "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    finally:
        await connection.close()


# -- random rows -------------------------------------------------------------------------


def _decimal_near(centre: float, spread: int, low: int, high: int) -> st.SearchStrategy[Decimal]:
    offsets = st.decimals(min_value=-spread, max_value=spread, places=8)
    return offsets.map(lambda d: min(max(Decimal(str(centre)) + d, Decimal(low)), Decimal(high)))


@st.composite
def coordinates(draw: st.DrawFn) -> tuple[Decimal | None, Decimal | None]:
    if draw(st.integers(0, 5)) == 0:
        return None, draw(st.none() | st.just(Decimal("1.00000000")))  # half-missing too
    latitude, longitude = draw(st.sampled_from(CENTRES))
    return draw(_decimal_near(latitude, 3, -90, 90)), draw(_decimal_near(longitude, 3, -180, 180))


scores = (
    st.none()
    | st.sampled_from([Decimal("0.00"), Decimal("0.50"), Decimal("1.00")])
    | (st.decimals(min_value=0, max_value=1, places=2))
)
instants = st.datetimes(
    min_value=datetime(2019, 1, 1), max_value=datetime(2021, 12, 31), timezones=st.just(UTC)
)
colour = st.one_of(
    st.builds(lambda name: {"hex": "#336699", "share": 0.5, "name": name}, st.sampled_from(COLORS)),
    st.just({"hex": "#000000", "share": 0.1}),  # unnamed
    st.just({"name": None}),
    st.just("blue"),  # not an object: must never match
)
names = st.lists(st.sampled_from(LABELS), max_size=4)


@st.composite
def photo(draw: st.DrawFn, file_id: str) -> dict[str, Any]:
    latitude, longitude = draw(coordinates())
    return {
        "file_id": file_id,
        "ai_labels": draw(names),
        "ai_scenes": draw(names),
        "ai_objects": draw(names),
        "ai_colors": draw(st.lists(colour, max_size=3)),
        "quality_score": draw(scores),
        "blur_score": draw(scores),
        "brightness": draw(scores),
        "contrast": draw(scores),
        "photo_taken_at": draw(st.none() | instants),
        "latitude": latitude,
        "longitude": longitude,
        "location_name": draw(st.none() | st.sampled_from(PLACES)),
        "camera_make": draw(st.none() | st.sampled_from(MAKES)),
        "camera_model": draw(st.none() | st.sampled_from(MODELS)),
        "face_count": draw(st.none() | st.integers(0, 4)),
        "orientation": draw(st.none() | st.sampled_from(ORIENTATIONS)),
        # Few distinct values, so that ties are broken by file_id.
        "created_at": draw(st.sampled_from([datetime(2024, 1, 1, tzinfo=UTC)]) | instants),
        "processed": draw(st.booleans()),
    }


# Mixed case and punctuation: file_id must sort by code point on both databases.
file_ids = st.lists(
    st.text("aAbB_-0z", min_size=1, max_size=4), unique=True, min_size=5, max_size=80
)
photos = file_ids.flatmap(lambda ids: st.tuples(*(photo(f"f{i}") for i in ids)))


# -- random criteria, as JSON would arrive -----------------------------------------------


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


query_names = st.lists(st.sampled_from(LABELS) | st.sampled_from([" Beach ", "SEA"]), max_size=3)
name_sets = _optional(any=query_names, all=query_names, none=query_names)
colour_sets = _optional(
    **{key: st.lists(st.sampled_from(COLORS), max_size=2) for key in ("any", "all", "none")}
)


@st.composite
def ordered_pair(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> dict[str, Any]:
    low, high = sorted([draw(values), draw(values)])
    return draw(_optional(min=st.just(low), max=st.just(high)))


@st.composite
def time_range(draw: st.DrawFn) -> dict[str, str]:
    zone = st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    )
    first, second = (draw(instants).astimezone(draw(zone)) for _ in range(2))
    if first == second:
        return {}
    low, high = sorted([first, second])
    return draw(_optional(**{"from": st.just(low.isoformat()), "to": st.just(high.isoformat())}))


@st.composite
def near(draw: st.DrawFn) -> dict[str, float]:
    latitude, longitude = draw(st.sampled_from(CENTRES))
    radius = draw(st.sampled_from([0.5, 5, 50, 300, 1500, 20000]) | st.floats(0.01, 20000))
    return {
        "latitude": min(90.0, latitude + draw(st.floats(-2, 2))),
        "longitude": max(-180.0, min(180.0, longitude + draw(st.floats(-2, 2)))),
        "radius_km": radius,
    }


@st.composite
def bbox(draw: st.DrawFn) -> dict[str, Decimal]:
    latitude, longitude = draw(st.sampled_from(CENTRES))
    south, north = sorted([draw(_decimal_near(latitude, 4, -90, 90)) for _ in range(2)])
    # Either order: west > east crosses the antimeridian.
    west, east = (draw(_decimal_near(longitude, 4, -180, 180)) for _ in range(2))
    return {"south": south, "west": west, "north": north, "east": east}


CRITERIA_FIELDS: dict[str, st.SearchStrategy[Any]] = dict(
    labels=name_sets,
    scenes=name_sets,
    objects=name_sets,
    colors=colour_sets,
    quality=ordered_pair(st.decimals(min_value=0, max_value=1, places=3)),
    blur=ordered_pair(st.decimals(min_value=0, max_value=1, places=2)),
    brightness=ordered_pair(st.floats(0, 1)),
    contrast=ordered_pair(st.decimals(min_value=0, max_value=1, places=2)),
    taken=time_range(),
    near=near(),
    bbox=bbox(),
    location=st.sampled_from(["berlin", "BERLIN", "ünchen", "MÜN", "100%", "_", " mitte "]),
    camera=_optional(
        make=st.sampled_from(["canon", " Canon ", "NIKON corporation"]),
        model=st.sampled_from(MODELS),
    ),
    faces=ordered_pair(st.integers(0, 4)),
    has_faces=st.booleans(),
    orientation=st.lists(st.sampled_from(ORIENTATIONS), max_size=2),
    processed=st.booleans(),
)
sorts = st.fixed_dictionaries(
    {"field": st.sampled_from(SORT_FIELDS), "direction": st.sampled_from(["asc", "desc"])}
)


@st.composite
def criteria_json(draw: st.DrawFn) -> dict[str, Any]:
    """A few fields at a time (and a sort), so that most criteria still match some rows."""
    chosen = draw(st.lists(st.sampled_from(sorted(CRITERIA_FIELDS)), max_size=3, unique=True))
    return {**{name: draw(CRITERIA_FIELDS[name]) for name in chosen}, "sort": draw(sorts)}


# -- the databases -----------------------------------------------------------------------


async def store(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    files = [_media_file(row) for row in rows]
    metadata = [
        {
            **{k: v for k, v in row.items() if k != "processed"},
            "user_id": "u1",
            "organization_id": ORG,
        }
        for row in rows
    ]
    async with engine.begin() as connection:
        if rows:
            await connection.execute(insert(MediaFile), files)
            await connection.execute(insert(PhotoMetadata), metadata)


def _media_file(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "file_id": row["file_id"],
        "organization_id": ORG,
        "owner_id": "u1",
        "owner_type": OwnerType.USER,
        "uploaded_by": "u1",
        "file_name": "photo.jpg",
        "file_type": FileType.IMAGE,
        "content_type": "image/jpeg",
        "file_size": 1,
        "sha256": hashlib.sha256(row["file_id"].encode()).hexdigest(),
        "storage_path": f"p/{row['file_id']}",
        "processed": row["processed"],
    }


async def forget(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(delete(PhotoMetadata).where(PhotoMetadata.organization_id == ORG))
        await connection.execute(delete(MediaFile).where(MediaFile.organization_id == ORG))


def query(criteria: Criteria, dialect: str) -> Any:
    """The repository's query shape: photo_metadata joined to media_files, filtered, sorted."""
    return (
        select(PhotoMetadata.__table__)
        .join(MediaFile, MediaFile.file_id == PhotoMetadata.file_id)
        .where(PhotoMetadata.organization_id == ORG, *compile_where(criteria, dialect))
        .order_by(*order_by(criteria.sort))
    )


async def all_ids(connection: AsyncConnection, criteria: Criteria, dialect: str) -> list[str]:
    return list((await connection.execute(query(criteria, dialect))).scalars())


async def paged_ids(
    connection: AsyncConnection, criteria: Criteria, dialect: str, size: int
) -> list[str]:
    found: list[str] = []
    cursor: str | None = None
    while True:
        statement = query(criteria, dialect).limit(size)
        if cursor is not None:
            statement = statement.where(cursor_where(criteria.sort, cursor))
        page = (await connection.execute(statement)).all()
        found += [row.file_id for row in page]
        if len(page) < size:
            return found
        cursor = encode_cursor(criteria.sort, page[-1])


async def answers(
    database: Database, rows: list[dict[str, Any]], queries: list[Criteria], size: int
) -> list[tuple[list[str], list[str]]]:
    """For each criteria: (all at once, page by page), from ``database``."""
    await store(database.engine, rows)
    try:
        async with database.engine.connect() as connection:
            return [
                (
                    await all_ids(connection, criteria, database.dialect),
                    await paged_ids(connection, criteria, database.dialect, size)
                    if index == 0
                    else [],
                )
                for index, criteria in enumerate(queries)
            ]
    finally:
        await forget(database.engine)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(
    rows=photos,
    queries=st.lists(criteria_json().map(Criteria.model_validate), min_size=1, max_size=4),
    size=st.integers(2, 12),
)
def test_sql_equals_the_evaluator_on_both_databases(
    databases: list[Database],
    loop: LoopThread,
    rows: tuple[dict[str, Any], ...],
    queries: list[Criteria],
    size: int,
) -> None:
    expected = [evaluate(criteria, rows) for criteria in queries]
    event(f"the first criteria matches {min(len(expected[0]) // 5 * 5, 20)}+ rows")
    for database in databases:
        got = loop.run(answers(database, list(rows), queries, size))
        assert [whole for whole, _ in got] == expected, database.dialect
        assert got[0][1] == expected[0], f"{database.dialect}: paging differs"


def test_a_scenes_query_uses_the_gin_index(databases: list[Database], loop: LoopThread) -> None:
    """EXPLAIN over 20k rows with sequential scans off: the compiled ?| is indexable."""
    postgres = next(database for database in databases if database.dialect == "postgresql")
    plan = loop.run(
        _explain(postgres.engine, Criteria.model_validate({"scenes": {"any": ["beach", "sea"]}}))
    )
    assert "idx_photo_metadata_ai_scenes" in plan, plan
    plan = loop.run(
        _explain(postgres.engine, Criteria.model_validate({"labels": {"all": ["dog", "cat"]}}))
    )
    assert "idx_photo_metadata_ai_labels" in plan, plan


async def _explain(engine: AsyncEngine, criteria: Criteria) -> str:
    statement = select(PhotoMetadata.file_id).where(*compile_where(criteria, "postgresql"))
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            return await _plan(connection, statement)
        finally:
            await transaction.rollback()  # the 20k rows were only for the planner


async def _plan(connection: AsyncConnection, statement: Any) -> str:
    await connection.execute(text(_FILL_MEDIA_FILES), {"org": ORG})
    await connection.execute(text(_FILL_METADATA), {"org": ORG})
    await connection.execute(text("ANALYZE photo_metadata"))
    await connection.execute(text("SET LOCAL enable_seqscan = off"))
    result = await connection.execute(Explain(statement))
    return "\n".join(str(line) for line in result.scalars())


class Explain(Executable, ClauseElement):
    """``EXPLAIN <statement>``, with the statement's parameters bound as usual."""

    inherit_cache = False

    def __init__(self, statement: Any) -> None:
        self.statement = statement


@compiles(Explain)
def _compile_explain(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return f"EXPLAIN {compiler.process(element.statement, **kw)}"


_FILL_MEDIA_FILES = """
INSERT INTO media_files (file_id, organization_id, owner_id, owner_type, uploaded_by, file_name,
    file_type, content_type, file_size, sha256, storage_path, status, processed, uploaded_at,
    updated_at)
SELECT 'gin_' || g, :org, 'u1', 'User', 'u1', 'p.jpg', 'Image', 'image/jpeg', 1,
    lpad(g::text, 64, '0'), 'p/' || g, 'active', true, now(), now()
FROM generate_series(1, 20000) AS g
"""
_FILL_METADATA = """
INSERT INTO photo_metadata (file_id, user_id, organization_id, ai_labels, ai_objects, ai_scenes,
    ai_colors, label_sources, full_metadata, created_at, updated_at)
SELECT 'gin_' || g, 'u1', :org,
    jsonb_build_array('label' || (g % 97)), '[]', jsonb_build_array('scene' || (g % 89)),
    '[]', '{}', '{}', now(), now()
FROM generate_series(1, 20000) AS g
"""


def _plain(file_id: str, **fields: Any) -> dict[str, Any]:
    """A row with nothing set but ``fields``."""
    empty = {key: None for key in ("quality_score", "blur_score", "brightness", "contrast")}
    lists = {key: [] for key in ("ai_labels", "ai_scenes", "ai_objects", "ai_colors")}
    row = {**empty, **lists, "photo_taken_at": None, "latitude": None, "longitude": None}
    row |= {"location_name": None, "camera_make": None, "camera_model": None}
    row |= {"face_count": None, "orientation": None, "processed": True}
    return {**row, "created_at": datetime(2024, 1, 1, tzinfo=UTC), "file_id": file_id, **fields}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # A-Z fold, other letters compare exactly (PostgreSQL's ICU lower() would fold "Ü").
        ({"location": "MÜN", "sort": {"field": "file_id", "direction": "asc"}}, ["f_b"]),
        ({"location": "ünchen", "sort": {"field": "file_id", "direction": "asc"}}, ["f-a"]),
        (
            {"camera": {"make": " CANON "}, "sort": {"field": "file_id", "direction": "asc"}},
            ["fA", "fa"],
        ),
        # Code point order, not the database's ICU order (which gives f_b, f-a, fa, fA, fB).
        ({"sort": {"field": "file_id", "direction": "asc"}}, ["f-a", "fA", "fB", "f_b", "fa"]),
    ],
)
def test_text_compares_by_code_point_on_both_databases(
    databases: list[Database], loop: LoopThread, query: dict[str, Any], expected: list[str]
) -> None:
    rows = [
        _plain("fa", camera_make="canon "),
        _plain("fA", camera_make="Canon"),
        _plain("f_b", location_name="MÜNCHEN"),
        _plain("fB", camera_make="Cañon"),
        _plain("f-a", location_name="München"),
    ]
    criteria = Criteria.model_validate(query)
    assert evaluate(criteria, rows) == expected
    for database in databases:
        got = loop.run(answers(database, rows, [criteria], 2))
        assert got == [(expected, expected)], database.dialect
