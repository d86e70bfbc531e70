"""The unit of work: one session, committed only at the request or job boundary.

Services register compensations (``on_rollback``) for side effects that happen before the
commit, such as a blob written ahead of its row, and follow-ups (``after_commit``) for
effects that must wait until the change is durable, such as deleting a blob whose row is
gone. Nothing leaves the process before the commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import structlog
from sqlalchemy import Table
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Hook = Callable[[], Awaitable[None]]
log = structlog.get_logger(__name__)

_AFTER_COMMIT = "after_commit"
_ON_ROLLBACK = "on_rollback"


def after_commit(session: AsyncSession, hook: Hook) -> None:
    """Run ``hook`` once the session's transaction has committed."""
    session.info.setdefault(_AFTER_COMMIT, []).append(hook)


def on_rollback(session: AsyncSession, hook: Hook) -> None:
    """Run ``hook`` if the session's transaction is rolled back instead of committed."""
    session.info.setdefault(_ON_ROLLBACK, []).append(hook)


@asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """Commit on success and run after-commit hooks; roll back and compensate on error."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            await _run_hooks(session, _ON_ROLLBACK)
            raise
        await _run_hooks(session, _AFTER_COMMIT)


async def begin_snapshot(session: AsyncSession) -> None:
    """Begin ``session``'s transaction (before its first statement) as a read-only one in
    which every statement reads the same snapshot: REPEATABLE READ on PostgreSQL (a
    read-only transaction there never fails to serialise); on SQLite the session must be a
    read session (``create_read_session_factory``), whose deferred transaction in WAL mode
    reads one snapshot from its first statement on."""
    if session.get_bind().dialect.name == "postgresql":
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        await session.connection(execution_options=options)


async def _run_hooks(session: AsyncSession, name: str) -> None:
    hooks: list[Hook] = session.info.pop(name, [])
    session.info.pop(_ON_ROLLBACK if name == _AFTER_COMMIT else _AFTER_COMMIT, None)
    for hook in hooks:
        try:
            await hook()
        except Exception:
            # A failed hook must not turn a committed change into an error response; what
            # it left behind (an orphan blob) is found and removed by `media-service gc`.
            log.warning("uow_hook_failed", hook=name, exc_info=True)


def conflict_insert(session: AsyncSession, table: Table | type[object]) -> Any:
    """An INSERT into ``table`` that can take ``ON CONFLICT`` clauses, for the database of
    ``session`` (PostgreSQL and SQLite spell them alike, from different modules)."""
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


async def insert_unless_present(session: AsyncSession, row: object) -> bool:
    """Insert the new ORM object ``row`` with one ``INSERT … ON CONFLICT DO NOTHING``; False
    (nothing inserted) when a row with the same key or another unique value exists.

    For consumers that make a row unless a request made it first: one statement instead of
    a read, a savepoint, the insert and its release. The object stays outside the session;
    columns it leaves unset (``None``) get their defaults. A broken foreign key still fails
    the transaction: callers hold the parent row (``FOR KEY SHARE``) before inserting.
    """
    mapper = sa_inspect(type(row))
    values = {}
    for attribute in mapper.column_attrs:
        value = getattr(row, attribute.key)
        if value is not None:
            values[attribute.columns[0].key] = value
    table = cast(Table, mapper.local_table)
    statement = (
        conflict_insert(session, table)
        .values(values)
        .on_conflict_do_nothing()
        .returning(*table.primary_key.columns)
    )
    return (await session.execute(statement)).first() is not None


async def insert_unless_conflict(session: AsyncSession, *rows: object) -> bool:
    """Insert ``rows`` in a savepoint; False (nothing inserted, the transaction goes on)
    when a unique constraint says another transaction inserted them first."""
    try:
        async with session.begin_nested():
            session.add_all(rows)
    except IntegrityError:
        return False
    return True
