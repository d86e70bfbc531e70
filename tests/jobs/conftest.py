"""Fixtures for jobs: a database, workers on their own bus instances, a relay, a CLI.

``variant`` is ``database-bus``: the in-process bus on SQLite and on PostgreSQL, and NATS
JetStream (with PostgreSQL or SQLite for the outbox). Each worker is a bus instance of its
own, as a separate process would have; the relay publishes through yet another one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media_service.db.engine import create_engine, create_session_factory
from media_service.db.uow import unit_of_work
from media_service.events.bus import DeliveryPolicy, EventBus
from media_service.events.memory import MemoryEventBus
from media_service.events.nats import EVENTS_STREAM, JOBS_STREAM, NatsEventBus
from media_service.events.outbox import wake_on_commit
from media_service.events.relay import OutboxRelay
from media_service.jobs import JobRegistry, Worker

from conftest import TEST_SECRET, delete_stream, empty_tables

POLICY = DeliveryPolicy(
    max_deliver=3, backoff=(0.2, 0.4), handler_timeout=1.0, ack_margin=0.5, max_in_flight=8
)
MEMORY_POLL = 0.1
SCRIPT = Path(sys.executable).with_name("media-service")

Sessions = async_sessionmaker[AsyncSession]


@dataclass
class JobsEnv:
    """One test's database and bus, and the workers started on them."""

    variant: str
    database_url: str
    events_url: str
    sessions: Sessions
    tmp: Path
    relay: OutboxRelay | None = None
    _buses: list[EventBus] = field(default_factory=list)

    @property
    def bus_kind(self) -> str:
        return self.variant.split("-")[1]

    async def open_bus(self) -> EventBus:
        bus: EventBus
        if self.bus_kind == "nats":
            bus = NatsEventBus(self.events_url, pull_expires=1.0, reconnect_wait=0.2)
        else:
            bus = MemoryEventBus(self.sessions, poll_interval=MEMORY_POLL)
        await bus.start()
        self._buses.append(bus)
        return bus

    async def start_worker(
        self, registry: JobRegistry, policy: DeliveryPolicy = POLICY
    ) -> EventBus:
        """A worker on a bus of its own; close the returned bus to stop it."""
        bus = await self.open_bus()
        await Worker(bus, self.sessions, registry, policy=policy).start()
        return bus

    async def start_relay(self) -> None:
        self.relay = OutboxRelay(
            self.sessions, await self.open_bus(), poll_interval=0.1, retry_backoff=(0.2,)
        )
        wake_on_commit(self.sessions, self.relay.notify)
        self.relay.start()

    async def close(self) -> None:
        if self.relay is not None:
            await self.relay.stop()
        for bus in self._buses:
            await bus.close()

    def cli_env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("MEDIA_")}
        env.update(
            MEDIA_DATA_DIR=str(self.tmp / "cli-data"),
            MEDIA_DATABASE_URL=self.database_url,
            MEDIA_STORAGE_URL=f"file://{self.tmp / 'cli-blobs'}",
            MEDIA_EVENTS_URL=self.events_url,
            MEDIA_JWT_SECRET=TEST_SECRET,
            MEDIA_AUTO_MIGRATE="false",
            MEDIA_LOG_FORMAT="json",
            COLUMNS="250",  # rich tables: one line per row
        )
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert SCRIPT.exists(), f"console script not installed: {SCRIPT}"
        return subprocess.run(
            [str(SCRIPT), *args],
            cwd=self.tmp,
            env=self.cli_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


VARIANTS = ["sqlite-memory", "postgres-nats"]


@pytest.fixture(params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def jobs_env(
    variant: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[JobsEnv]:
    database, bus = variant.split("-")
    if database == "sqlite":
        shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / "jobs.db")
        url = f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        await empty_tables(url)
    events_url = "memory://"
    if bus == "nats":
        events_url = request.getfixturevalue("nats_server").events_url
        await delete_streams(events_url)
    engine = create_engine(url)
    env = JobsEnv(variant, url, events_url, create_session_factory(engine), tmp_path)
    try:
        yield env
    finally:
        await env.close()
        await engine.dispose()


async def delete_streams(events_url: str) -> None:
    """Start from empty streams: no messages and no consumers of earlier tests."""
    for spec in (EVENTS_STREAM, JOBS_STREAM):
        await delete_stream(events_url, spec.name)


async def count_rows(sessions: Sessions, sql: str) -> int:
    async with unit_of_work(sessions) as session:
        return int((await session.execute(text(sql))).scalar_one())


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, message: str = ""
) -> None:
    """Poll ``check()`` (sync or async) until true."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(message or f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Subprocesses a test starts; killed at the end if still running."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
