"""Self-test of the PostgreSQL harness: a real server, real asyncpg, never a skip."""

from __future__ import annotations

import os
import time
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from . import postgres as harness
from .postgres import ENV_DATABASE_URL, start_postgres, unique_database_name

# The PostgreSQL service every machine of this project's kind runs (trust auth).
MACHINE_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _round_trip(url: str) -> str:
    """SELECT version() and a CREATE TABLE / INSERT / SELECT through SQLAlchemy+asyncpg."""
    assert url.startswith("postgresql+asyncpg://")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            version = (await conn.execute(text("SELECT version()"))).scalar_one()
            await conn.execute(
                text("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)")
            )
            await conn.execute(
                text("INSERT INTO items (name) VALUES (:a), (:b)"),
                {"a": "ünïcode photo", "b": "video"},
            )
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, name FROM items ORDER BY id"))).all()
            current = (await conn.execute(text("SELECT current_database()"))).scalar_one()
    finally:
        await engine.dispose()
    assert version.startswith("PostgreSQL ")
    assert [tuple(r) for r in rows] == [(1, "ünïcode photo"), (2, "video")]
    assert url.endswith("/" + current)
    return str(version)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_round_trip_on_configured_server(tmp_path: Path) -> None:
    """What the suite gets: MEDIA_TEST_DATABASE_URL if set, else a private server.

    Also shows the sync API working from inside a running event loop.
    """
    with start_postgres(tmp_path) as server:
        name = unique_database_name()
        url = server.create_database(name)
        assert url == server.url(name)
        await _round_trip(url)
        server.drop_database(name)
        assert not server.database_exists(name)


def test_local_server_lifecycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Private server from this machine's binaries; sync API with no event loop."""
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)
    started = time.monotonic()
    server = start_postgres(tmp_path)
    startup = time.monotonic() - started
    try:
        assert not server.external
        assert server.host == "127.0.0.1"
        assert server.port not in (0, 5432)
        assert server.pid is not None
        assert _alive(server.pid)
        assert server.root is not None
        assert server.root.is_dir()
        if os.geteuid() == 0:  # postgres refuses root: it must run as another user
            status = Path(f"/proc/{server.pid}/status").read_text()
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            assert uid_line.split()[1] != "0"
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            assert server.fetchval(f"SHOW {setting}") == "off"
        assert server.fetchval("SHOW server_encoding") == "UTF8"
        assert server.fetchval("SHOW TimeZone") == "UTC"

        name = unique_database_name("harness")
        assert server.create_database(name).endswith(f"@127.0.0.1:{server.port}/{name}")
        assert server.database_exists(name)
        with pytest.raises(RuntimeError, match="already exists"):
            server.create_database(name)
        server.drop_database(name)
        assert not server.database_exists(name)
        server.drop_database(name)  # dropping a missing database is fine
        with pytest.raises(ValueError, match="invalid database name"):
            server.create_database('x"; DROP DATABASE postgres; --')
    finally:
        pid, root = server.pid, server.root
        server.stop()
    assert pid is not None
    assert not _alive(pid)
    assert root is not None
    assert not root.exists()
    server.stop()  # idempotent
    print(f"local PostgreSQL startup: {startup:.2f}s")


async def test_async_api_on_local_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)
    with start_postgres(tmp_path) as server:
        name = unique_database_name()
        url = await server.acreate_database(name)
        await _round_trip(url)
        # A session still connected does not stop the drop (WITH (FORCE)).
        conn = await asyncpg.connect(server.url(name, drivername="postgresql"))
        try:
            await server.adrop_database(name)
        finally:
            await conn.close(timeout=5)
        assert not await server.afetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)


async def test_external_url_uses_machine_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MEDIA_TEST_DATABASE_URL pointing at the machine's own server on 5432."""
    monkeypatch.setenv(ENV_DATABASE_URL, MACHINE_SERVER_URL)
    server = start_postgres(tmp_path)
    kept, dropped = unique_database_name(), unique_database_name()
    try:
        assert server.external
        assert (server.host, server.port, server.user) == ("127.0.0.1", 5432, "postgres")
        assert server.pid is None
        assert server.root is None
        assert list(tmp_path.iterdir()) == []  # nothing started, nothing written

        url = server.create_database(kept)
        assert url == f"postgresql+asyncpg://postgres@127.0.0.1:5432/{kept}"
        await _round_trip(url)
        await _round_trip(server.create_database(dropped))
        server.drop_database(dropped)
    finally:
        server.stop()  # drops what it created and has not dropped yet

    conn = await asyncpg.connect(MACHINE_SERVER_URL)
    try:
        left = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname = any($1::text[])", [kept, dropped]
        )
    finally:
        await conn.close()
    assert left == []


def test_external_url_unreachable_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = harness._free_port()  # nothing listens there
    monkeypatch.setenv(ENV_DATABASE_URL, f"postgresql://postgres:secret@127.0.0.1:{port}/x")
    with pytest.raises(RuntimeError, match=f"{ENV_DATABASE_URL}=.* connecting to it failed") as e:
        start_postgres(tmp_path)
    assert "secret" not in str(e.value)


def test_missing_binaries_is_an_error_not_a_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(harness, "_DEBIAN_BINDIR_GLOB", str(tmp_path / "pg" / "*" / "bin"))
    assert harness.find_postgres_bindir() is None
    with pytest.raises(RuntimeError, match="PostgreSQL server binaries not found") as e:
        start_postgres(tmp_path / "work")
    message = str(e.value)
    assert "postgresql-15" in message
    assert ENV_DATABASE_URL in message
