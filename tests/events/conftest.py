"""Fixtures for the event machinery: databases, buses and a recorder of deliveries.

``database`` runs a test on SQLite (a copy of the migrated template) and on PostgreSQL
(the session's migrated database, emptied first). ``nats_server`` is one JetStream server
per session (or ``MEDIA_TEST_NATS_URL``); ``fault_nats`` is a server of the test's own
that it may stop and restart. Buses use short back-offs and ack waits so that retries and
redeliveries take fractions of a second.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media_service.db.engine import create_engine, create_session_factory
from media_service.db.models import metadata
from media_service.events.bus import DeadLetter, Delivery, DeliveryPolicy, EventBus
from media_service.events.memory import MemoryEventBus
from media_service.events.nats import NatsEventBus

from conftest import delete_stream

DATABASES = ["sqlite", "postgres"]
POLICY = DeliveryPolicy(
    max_deliver=3, backoff=(0.1, 0.2), handler_timeout=0.5, ack_margin=0.25, max_in_flight=8
)
MEMORY_POLL = 0.1

Sessions = async_sessionmaker[AsyncSession]


# -- servers ------------------------------------------------------------------------------


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def sessions(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Sessions]:
    if database == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copy(template, tmp_path / "events.db")
        url = f"sqlite+aiosqlite:///{tmp_path / 'events.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = create_engine(url)
        names = ", ".join(table.name for table in metadata.sorted_tables)
        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {names}"))
        await engine.dispose()
    engine = create_engine(url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


# -- buses --------------------------------------------------------------------------------


class BusFactory:
    """Opens started buses of one kind; every one is closed at the end of the test."""

    def __init__(self, kind: str, sessions: Sessions, nats_url: str | None) -> None:
        self.kind = kind
        self.sessions = sessions
        self.nats_url = nats_url
        self._opened: list[EventBus] = []

    async def __call__(self) -> EventBus:
        bus: EventBus
        if self.kind == "nats":
            assert self.nats_url is not None
            bus = NatsEventBus(self.nats_url, pull_expires=1.0, reconnect_wait=0.2)
        else:
            bus = MemoryEventBus(self.sessions, poll_interval=MEMORY_POLL)
        await bus.start()
        self._opened.append(bus)
        return bus

    async def close_all(self) -> None:
        for bus in self._opened:
            await bus.close()


@pytest.fixture
async def make_bus(
    bus_kind: str, sessions: Sessions, request: pytest.FixtureRequest
) -> AsyncIterator[BusFactory]:
    nats_url = None
    if bus_kind == "nats":
        nats_url = request.getfixturevalue("nats_server").events_url
        await delete_stream(nats_url)
    factory = BusFactory(bus_kind, sessions, nats_url)
    try:
        yield factory
    finally:
        await factory.close_all()


# -- recording deliveries -----------------------------------------------------------------


class Recorder:
    """A handler and dead-letter callback that remember what they saw.

    ``fail`` decides, per delivery, whether the handler raises (and with what).
    """

    def __init__(self, fail: Callable[[Delivery], BaseException | None] | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self.times: list[float] = []
        self.dead: list[DeadLetter] = []
        self._fail = fail
        self._changed = asyncio.Condition()

    async def handler(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self.times.append(time.monotonic())
        await self._notify()
        error = self._fail(delivery) if self._fail else None
        if error is not None:
            raise error

    async def on_dead_letter(self, letter: DeadLetter) -> None:
        self.dead.append(letter)
        await self._notify()

    async def wait_for(self, condition: Callable[[Recorder], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: condition(self))

    async def wait_deliveries(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        await self.wait_for(lambda r: len(r.deliveries) >= count, timeout)
        return list(self.deliveries)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def msg_ids(self) -> list[str | None]:
        return [d.msg_id for d in self.deliveries]


async def settled(bus: EventBus, consumer: str, timeout: float = 10.0) -> None:
    """Wait until ``consumer`` has acknowledged everything it was given."""

    async def no_lag() -> bool:
        return (await bus.check()).consumer_lag.get(consumer) == 0

    await eventually(no_lag, timeout)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)
