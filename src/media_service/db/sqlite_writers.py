"""One SQLite writer at a time per process, queued in order rather than by SQLite's retries.

SQLite has one write lock per database. A second ``BEGIN IMMEDIATE`` waits for it in
SQLite's busy handler, which sleeps and retries: 1, 2, 5, ... then 100 ms between tries.
The lock is free again after a few milliseconds, but a waiter only notices at its next
try, so under a steady stream of short writes (an upload's rows, the in-process bus's
claims and settles, jobs recording their results) the lock sat idle while writers slept:
measured in the renditions benchmark, 565 write transactions waited 77 s in all (137 ms
each on average) for a lock that was held 40% of the time.

Writers of this process now queue on an asyncio lock before ``BEGIN IMMEDIATE`` and are
handed it the moment the previous transaction has committed or rolled back. SQLite's own
busy handler still arbitrates between processes (a CLI command, a second worker).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import await_
from sqlalchemy.util.concurrency import in_greenlet

# As long as SQLite's own busy_timeout: past it the database counts as unavailable (503).
WRITE_LOCK_TIMEOUT = 30.0
_HELD = "media_sqlite_write_lock"  # in a pooled connection's info while it writes


class ProcessWriteLock:
    """The write lock of one engine: one ``asyncio.Lock`` per event loop using it (tests
    use an engine from more than one loop; a lock belongs to one)."""

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def acquire_for(self, info: dict[Any, Any]) -> None:
        """Wait (in SQLAlchemy's greenlet) for the lock; ``info`` then holds it."""
        if not in_greenlet():
            return  # a plain synchronous use: SQLite's busy handler alone
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        await_(_acquire(lock))
        info[_HELD] = (loop, lock)

    @staticmethod
    def release_from(info: dict[Any, Any]) -> None:
        """Release the lock if ``info``'s connection holds it (safe to call twice)."""
        held = info.pop(_HELD, None)
        if held is None:
            return
        loop, lock = held
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            lock.release()
        elif not loop.is_closed():  # a pool finalizing a connection from elsewhere
            loop.call_soon_threadsafe(lock.release)


async def _acquire(lock: asyncio.Lock) -> None:
    try:
        async with asyncio.timeout(WRITE_LOCK_TIMEOUT):
            await lock.acquire()
    except TimeoutError as exc:
        raise OperationalError(
            "BEGIN IMMEDIATE", None, TimeoutError("database is locked by this process's writers")
        ) from exc


def serialise_writers(engine: AsyncEngine) -> ProcessWriteLock:
    """Queue the writing transactions of ``engine`` on one lock.

    The engine's ``begin`` hook takes it (:meth:`ProcessWriteLock.acquire_for`) before
    ``BEGIN IMMEDIATE``; it is released when the transaction's COMMIT or ROLLBACK has
    returned, or at the latest when the connection goes back to the pool or is
    invalidated.
    """
    writers = ProcessWriteLock()
    dialect = engine.sync_engine.dialect
    _release_after(dialect, "do_commit", writers)
    _release_after(dialect, "do_rollback", writers)

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        writers.release_from(record.info)

    @event.listens_for(engine.sync_engine, "invalidate")
    def _on_invalidate(
        _dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _exc: Any
    ) -> None:
        writers.release_from(record.info)

    return writers


def _release_after(dialect: Dialect, method: str, writers: ProcessWriteLock) -> None:
    """Wrap the dialect's ``method`` (this engine's dialect only) to release afterwards:
    the next writer must not meet the lock still held by SQLite (and sleep in its busy
    handler) because it was woken before the COMMIT went through."""
    original = getattr(dialect, method)

    def then_release(dbapi_connection: Any) -> None:
        try:
            original(dbapi_connection)
        finally:
            info = _record_info(dbapi_connection)
            if info is not None:
                writers.release_from(info)

    setattr(dialect, method, then_release)


def _record_info(dbapi_connection: Any) -> dict[Any, Any] | None:
    """The pool record's ``info`` of what a dialect method was given: the pool's proxy
    (with the record's info), or a bare driver connection (while connecting: none)."""
    try:
        info = getattr(dbapi_connection, "info", None)
    except NotImplementedError:  # an adapter that has no record behind it
        return None
    return info if isinstance(info, dict) else None
