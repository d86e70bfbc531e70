"""SQLite writers of one process queue on the process's lock (``db/sqlite_writers.py``), not
in SQLite's busy handler: with the busy handler switched off, concurrent writing
transactions would fail at once with "database is locked"; here they all go through."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

import media_service.db.sqlite_writers as sqlite_writers
from media_service.db.engine import create_engine, create_read_session_factory
from media_service.problems import database_unavailable

WRITERS = 40


@pytest.fixture
async def engine(tmp_path: Path) -> Any:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'writers.db'}")

    @event.listens_for(engine.sync_engine, "connect")
    def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
        # After the engine's own PRAGMAs: SQLite would now refuse a second writer at once.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()

    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        await connection.execute(text("INSERT INTO counter VALUES (0)"))
    yield engine
    await engine.dispose()


async def increment(engine: AsyncEngine, pause: float = 0.0) -> None:
    async with engine.begin() as connection:
        n = await connection.scalar(text("SELECT n FROM counter"))
        await asyncio.sleep(pause)  # others ask for the lock meanwhile
        await connection.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT n FROM counter")) or 0)


async def test_concurrent_writers_queue_instead_of_failing(engine: AsyncEngine) -> None:
    await asyncio.gather(*(increment(engine, pause=0.001) for _ in range(WRITERS)))
    # No lost update either: each read-then-write ran alone.
    assert await count(engine) == WRITERS


async def test_the_lock_is_released_after_a_rollback_and_an_error(engine: AsyncEngine) -> None:
    async def fail_inside() -> None:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE counter SET n = 100"))
            raise LookupError("the work failed")

    with pytest.raises(LookupError):
        await fail_inside()
    async with engine.connect() as connection:  # an explicit rollback
        await connection.execute(text("UPDATE counter SET n = 200"))
        await connection.rollback()

    async def bad_statement() -> None:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE no_such_table SET n = 1"))

    with pytest.raises(OperationalError):  # a failed statement inside the transaction
        await bad_statement()
    await asyncio.wait_for(increment(engine), timeout=5)  # would hang if still held
    assert await count(engine) == 1


async def test_the_lock_is_released_when_a_connection_is_invalidated(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("UPDATE counter SET n = 5"))
        await connection.invalidate()
    await asyncio.wait_for(increment(engine), timeout=5)
    assert await count(engine) == 1


async def test_readers_do_not_wait_for_a_writer(engine: AsyncEngine) -> None:
    reads = create_read_session_factory(engine)
    async with engine.begin() as writer:
        await writer.execute(text("UPDATE counter SET n = 7"))
        async with reads() as session:  # WAL: the committed state, without waiting
            assert await asyncio.wait_for(session.scalar(text("SELECT n FROM counter")), 5) == 0
    assert await count(engine) == 7


async def test_a_writer_that_waits_too_long_is_told_the_database_is_unavailable(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_writers, "WRITE_LOCK_TIMEOUT", 0.2)
    async with engine.begin() as holder:
        await holder.execute(text("UPDATE counter SET n = 1"))
        with pytest.raises(OperationalError) as waited:
            await increment(engine)
    assert database_unavailable(waited.value)
    await asyncio.wait_for(increment(engine), timeout=5)  # the holder released it
    assert await count(engine) == 2
