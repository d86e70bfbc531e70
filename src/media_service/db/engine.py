"""Engine and session factory for the configured database URL."""

from __future__ import annotations

import time
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs; one call
from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from media_service.db.sqlite_writers import serialise_writers

READ_ONLY = "media_read_only"  # execution option: begin a deferred transaction on SQLite
# A pooled connection idle longer than this is pinged before use (see _ping_when_idle).
IDLE_PING_SECONDS = 2.0
_CHECKED_IN_AT = "media_checked_in_at"


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An AsyncEngine tuned for ``url``'s database; connects lazily."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, echo=echo)
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=10,
        max_overflow=10,
        connect_args={"async_creator_fn": _connect_asyncpg},
    )
    _ping_when_idle(engine)
    return engine


async def _connect_asyncpg(*args: Any, **kwargs: Any) -> Any:
    """``asyncpg.connect``, with a server that cannot be reached reported as the DB-API's
    ``OperationalError``.

    asyncpg raises the socket's own error (``ConnectionRefusedError``, ``TimeoutError``,
    a failed name lookup) when PostgreSQL is down or unreachable; SQLAlchemy wraps only
    DB-API errors, so without this a refused connection reached the API as an unexpected
    error (500) instead of ``database_unavailable`` (503).
    """
    try:
        return await asyncpg.connect(*args, **kwargs)
    except (OSError, TimeoutError) as exc:
        message = f"cannot connect to PostgreSQL: {exc}"
        raise AsyncAdapt_asyncpg_dbapi.OperationalError(message) from exc  # type: ignore[no-untyped-call]


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection before use only when it sat idle for a while.

    ``pool_pre_ping`` pings at every checkout: one more round trip per transaction, a
    quarter of the round trips of a short one (ping, BEGIN, statement, COMMIT). A
    connection used moments ago is as good as the ping would say; one that sat idle may
    have been closed by the server or a proxy. When a connection that was not pinged
    turns out dead, SQLAlchemy invalidates the whole pool, so a restart of the database
    costs the transactions in flight (answered 503, see ``problems``), not one per pooled
    connection.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(
        dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: Any
    ) -> None:
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at < IDLE_PING_SECONDS:
            return  # new, or used moments ago
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the server closed it: the pool replaces it
            raise DisconnectionError(str(exc)) from exc
        if not alive:
            raise DisconnectionError("the connection did not answer a ping")


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (we return them as JSON)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def create_read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for lookups that never write: on SQLite they do not take the write lock,
    so hot read paths (serving renditions) do not queue behind each other or writers."""
    return async_sessionmaker(
        engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False, autoflush=False
    )


def _sqlite_engine(url: str, *, echo: bool) -> AsyncEngine:
    _ensure_sqlite_directory(url)
    # A pool that holds what a busy process uses at once (requests plus the in-process
    # bus's consumers polling): an overflow connection is opened and closed per checkout, and
    # opening one costs a thread and four PRAGMAs (py-spy found it on warm rendition
    # requests; this pool and one idle poll per consumer took their server CPU from 2.9
    # to 1.8 ms side by side, on a machine busy with a test run).
    engine = create_async_engine(
        url, echo=echo, connect_args={"timeout": 30}, pool_size=20, max_overflow=20
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=FULL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=30000",
        ):
            cursor.execute(pragma)
        cursor.close()

    writers = serialise_writers(engine)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and
        # then writes can fail at once with "database is locked" under concurrency,
        # whereas an immediate one waits for busy_timeout. Sessions that only read (see
        # create_read_session_factory) begin deferred: in WAL mode they block no one.
        if conn.get_execution_options().get(READ_ONLY, False):
            conn.exec_driver_sql("BEGIN")
            return
        writers.acquire_for(conn.info)  # this process's writers queue in order
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            writers.release_from(conn.info)
            raise

    return engine


def _ensure_sqlite_directory(url: str) -> None:
    from pathlib import Path

    path = url.split(":///", 1)[-1].split("?", 1)[0]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
