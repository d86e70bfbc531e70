"""PostgreSQL dropping the service's connections (a restart, a failover, an admin's
``pg_terminate_backend``): a pooled connection that sat idle is pinged and replaced before
use; one used moments ago is not pinged, its transaction fails as a lost connection, the
pool is renewed, and the API answers that request 503 with ``Retry-After``, never 500."""

from __future__ import annotations

import socket

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from test_frames import owner

import media_service.db.engine as engine_module
from media_service.db.engine import create_engine
from media_service.problems import database_unavailable

from conftest import Stack

FILES = "/api/v1/media/files"
BACKEND = text("SELECT pg_backend_pid()")


async def kill_other_backends(url: str) -> int:
    """Terminate every other connection to ``url``'s database; how many there were."""
    killer = create_engine(url)
    try:
        async with killer.connect() as connection:
            killed = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        await killer.dispose()
    return int(killed or 0)


async def pooled_backend(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(BACKEND) or 0)


async def test_an_idle_connection_is_pinged_and_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(postgres_url)
    try:
        first = await pooled_backend(engine)
        assert await kill_other_backends(postgres_url) >= 1
        monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)  # idle long enough
        assert await pooled_backend(engine) not in (0, first)  # a fresh connection
    finally:
        await engine.dispose()


async def test_a_connection_used_moments_ago_is_not_pinged(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "Moments ago" whatever the machine's load: a CI run can take seconds between lines.
    monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 3600.0)
    engine = create_engine(postgres_url)
    try:
        await pooled_backend(engine)
        assert await kill_other_backends(postgres_url) >= 1
        with pytest.raises(DBAPIError) as lost:
            await pooled_backend(engine)
        assert lost.value.connection_invalidated and database_unavailable(lost.value)
        assert await pooled_backend(engine) > 0  # the pool was renewed
    finally:
        await engine.dispose()


async def test_lost_connections_cost_503s_not_500s(client: httpx.AsyncClient, stack: Stack) -> None:
    headers = owner(stack)
    for _ in range(3):
        assert (await client.get(FILES, headers=headers)).status_code == 200
    if stack.name == "sqlite-local":
        return  # no server to lose connections to
    assert await kill_other_backends(stack.settings.database_url) >= 1
    answers: list[httpx.Response] = []
    while len(answers) < 10 and [a.status_code for a in answers[-3:]] != [200, 200, 200]:
        answers.append(await client.get(FILES, headers=headers))
    statuses = [answer.status_code for answer in answers]
    # A request may meet a dead connection (one a background loop used moments ago and so
    # was not pinged); the pool is renewed then, and the next requests go through.
    assert statuses[-3:] == [200, 200, 200] and statuses.count(503) <= 2, statuses
    for answer in answers:
        if answer.status_code != 200:
            assert answer.status_code == 503, answer.text
            assert answer.json()["code"] == "database_unavailable"
            assert answer.headers["retry-after"] == "2"


async def test_a_server_that_refuses_connections_is_unavailable_not_unexpected() -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = create_engine(f"postgresql+asyncpg://media:media@127.0.0.1:{port}/media")
    try:
        with pytest.raises(OperationalError) as refused:
            await pooled_backend(engine)
        assert database_unavailable(refused.value)
        assert isinstance(refused.value.orig.__cause__, ConnectionRefusedError)
    finally:
        await engine.dispose()


def test_only_unavailability_counts_as_unavailable() -> None:
    lost = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    wrong = IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert database_unavailable(lost)
    assert not database_unavailable(wrong)
    assert not database_unavailable(ValueError("not a database error"))
