"""One database connection kept across the back-to-back transactions of a loop.

The relay runs one transaction after another while events keep coming. Taking a
connection from the pool for each costs a checkout and the return's reset (and, when it
was written, a pre-ping round trip): at a few events per pass that was a good part of
the relay's CPU per event (bench/events.py). :class:`HeldConnection` keeps the connection
between transactions instead; its owner lets go of it when it finds nothing to do (so an
idle relay holds nothing, and a database restart while idle is met by the pool's ping of
idle connections, ``db.engine``), and it is dropped after any error (so a broken
connection is not used again).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker


class HeldConnection:
    """Transactions on one connection of ``sessions``' engine, kept until :meth:`release`.

    Sessions are made by ``sessions`` (with its settings and ``info``), bound to the held
    connection. A factory not bound to an engine gets plain sessions of its own.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        bind = sessions.kw.get("bind")
        self._engine = bind if isinstance(bind, AsyncEngine) else None
        self._connection: AsyncConnection | None = None

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed when the block ends without error."""
        if self._engine is None:
            async with self._sessions.begin() as session:
                yield session
            return
        connection, self._connection = self._connection, None  # ours until this ends well
        if connection is None:
            connection = await self._engine.connect()
        try:
            async with self._sessions(bind=connection) as session, session.begin():
                yield session
        except BaseException:
            await _close(connection)
            raise
        await self._keep(connection)

    async def _keep(self, connection: AsyncConnection) -> None:
        if self._connection is None:
            self._connection = connection
        else:  # another transaction ran meanwhile and kept its own: one is enough
            await _close(connection)

    async def release(self) -> None:
        """Give the connection back to the pool (the next transaction takes a new one)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await _close(connection)


async def _close(connection: AsyncConnection) -> None:
    # The pool invalidates a connection that turns out broken while being reset.
    with contextlib.suppress(Exception):
        await connection.close()
