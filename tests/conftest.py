"""Shared fixtures: real backends started on free loopback ports, an app per test.

API tests run twice: on the embedded stack (SQLite + local directory + in-process
events) and on the production stack (PostgreSQL + S3 on SeaweedFS + NATS JetStream).
Servers start once per session (or come from ``MEDIA_TEST_DATABASE_URL``,
``MEDIA_TEST_S3_URL``, ``MEDIA_TEST_NATS_URL``); each test gets empty tables, an empty
stream and its own storage prefix.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
import nats.js.errors
import orjson
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media_service.app import create_app
from media_service.auth.principal import Role
from media_service.config import Settings
from media_service.db.engine import create_engine
from media_service.db.migrate import upgrade_to_head
from media_service.db.models import metadata
from media_service.events.bus import Delivery
from media_service.events.nats import EVENTS_STREAM, JOBS_STREAM
from media_service.state import ServiceState

from harness.nats import NatsNotInstalled, NatsServer, start_nats
from harness.postgres import PostgresServer, start_postgres, unique_database_name
from harness.seaweed import s3_test_url, with_prefix

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
STACKS = ["sqlite-local", "postgres-s3"]  # the second also runs events on NATS JetStream
T = TypeVar("T")


# -- servers, once per session -----------------------------------------------------------


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with start_postgres(tmp_path_factory.mktemp("pg")) as server:
        yield server


def run_isolated(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on a private loop in a thread: usable from sync fixtures even when
    pytest-asyncio's loop is already running."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresServer) -> str:
    """One migrated database for the session; tests empty its tables."""
    url = postgres.create_database(unique_database_name("media_api"))
    run_isolated(migrate(url))
    return url


@pytest.fixture(scope="session")
def s3_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``MEDIA_TEST_S3_URL``, or a SeaweedFS started for the session (bucket ``media``)."""
    with s3_test_url(tmp_path_factory.mktemp("seaweed")) as url:
        yield url


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A JetStream server for the session (or ``MEDIA_TEST_NATS_URL``)."""
    try:
        server = start_nats(tmp_path_factory.mktemp("nats"))
    except NatsNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    with server:
        yield server


@pytest.fixture
def fault_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A NATS server of this test's own, to stop and restart."""
    try:
        server = start_nats(tmp_path, allow_external=False)
    except NatsNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    with server:
        yield server


async def delete_stream(url: str, name: str = EVENTS_STREAM.name) -> None:
    """Start from an empty stream (and no consumers)."""
    client = await nats.connect(url.split("?", 1)[0])
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await client.jetstream().delete_stream(name)
    finally:
        await client.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    run_isolated(migrate(f"sqlite+aiosqlite:///{path}"))
    return path


# -- one stack per test ------------------------------------------------------------------


@dataclass
class Stack:
    """The backends of one test, and how to reach the app running on them."""

    name: str
    settings: Settings
    state: ServiceState

    def token(self, subject: str, org: str, *roles: Role, frame_id: str | None = None) -> str:
        return self.state.tokens.mint(
            subject, org, list(roles), ttl=timedelta(hours=1), frame_id=frame_id
        )

    def auth(self, subject: str, org: str, *roles: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(subject, org, *roles)}"}

    async def tap(self, name: str, subject: str) -> list[dict[str, Any]]:
        """Every event on ``subject`` from now on, decoded, as a durable consumer ``name``
        of the stack's bus sees them (a test's window on what the service publishes)."""
        seen: list[dict[str, Any]] = []

        async def on_delivery(delivery: Delivery) -> None:
            seen.append(orjson.loads(delivery.payload))

        async def no_dead_letters(_letter: object) -> None:
            raise AssertionError("the tap never fails")

        await self.state.bus.subscribe(name, [subject], on_delivery, on_dead_letter=no_dead_letters)
        return seen


def stack_settings(
    name: str, database_url: str, storage_url: str, data_dir: Path, **overrides: object
) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        database_url=database_url,
        storage_url=storage_url,
        jwt_secret=TEST_SECRET,  # type: ignore[arg-type]
        auto_migrate=False,
        log_format="console",
        # Most tests compare file records before and after; preprocessing would change
        # them behind their back. Its own tests turn it on.
        # The periodic frame pre-cache rounds are started by their own tests only.
        **{"preprocess_uploads": False, "frame_precache_interval_seconds": 0, **overrides},  # type: ignore[arg-type]
    )


@pytest.fixture(params=STACKS)
def stack_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Override in a test module to change settings (e.g. smaller size limits)."""
    return {}


@pytest.fixture
async def stack(
    stack_name: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    settings_overrides: dict[str, object],
) -> AsyncIterator[Stack]:
    overrides = dict(settings_overrides)
    if stack_name == "sqlite-local":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copy(template, tmp_path / "media.db")
        database_url = f"sqlite+aiosqlite:///{tmp_path / 'media.db'}"
        storage_url = f"file://{tmp_path / 'blobs'}"
    else:
        database_url = request.getfixturevalue("postgres_url")
        storage_url = with_prefix(request.getfixturevalue("s3_url"), f"t-{uuid.uuid4().hex}")
        overrides = {"events_url": request.getfixturevalue("nats_server").events_url, **overrides}
        await empty_tables(database_url)
        for stream in (EVENTS_STREAM, JOBS_STREAM):  # no messages or consumers of earlier tests
            await delete_stream(str(overrides["events_url"]), stream.name)
    settings = stack_settings(stack_name, database_url, storage_url, tmp_path / "data", **overrides)
    state = ServiceState.build(settings)
    try:
        yield Stack(stack_name, settings, state)
    finally:
        await state.close()


async def empty_tables(url: str) -> None:
    """Truncate every table: a PostgreSQL database shared by the session, made empty."""
    engine = create_engine(url)
    names = ", ".join(table.name for table in metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {names}"))
    await engine.dispose()


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(stack.settings, stack.state)
    # Generous: on a loaded 2-core machine closing NATS consumers has taken over 5 s.
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://media.test") as http:
            yield http


# -- helpers for tests -------------------------------------------------------------------


@contextlib.contextmanager
def statements_run(sessions: async_sessionmaker[AsyncSession]) -> Iterator[list[str]]:
    """Every SQL statement run on ``sessions``' engine while the block runs (whitespace
    collapsed), for tests that count reads or look for savepoints."""
    engine = sessions.kw["bind"].sync_engine
    seen: list[str] = []

    def before(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def selects_from(statements: list[str], table: str) -> list[str]:
    """The SELECTs among ``statements`` that read ``table`` (from it or joining it)."""
    reads = re.compile(rf"\b(FROM|JOIN) {re.escape(table)}\b", re.IGNORECASE)
    return [s for s in statements if s.upper().startswith("SELECT") and reads.search(s)]


@pytest.fixture
def make_jpeg() -> Callable[..., bytes]:
    """Real JPEG bytes of a given size and colour (distinct colours → distinct files)."""
    import io

    from PIL import Image

    def make(
        width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)
    ) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), color).save(buffer, "JPEG", quality=90)
        return buffer.getvalue()

    return make
