"""Migrations and models agree, on SQLite and on PostgreSQL, and downgrade cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from media_service.db.engine import create_engine
from media_service.db.migrate import (
    alembic_config,
    include_object_for,
    pending_migrations,
    upgrade_to_head,
)
from media_service.db.models import metadata

from harness.postgres import PostgresServer, unique_database_name


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    postgres: PostgresServer = request.getfixturevalue("postgres")
    return postgres.create_database(unique_database_name("migrations"))


def _differences(connection: Connection) -> list[object]:
    opts = {"compare_type": True, "include_object": include_object_for(connection.dialect.name)}
    context = MigrationContext.configure(connection, opts=opts)
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def test_head_matches_the_models_and_round_trips(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert await pending_migrations(engine)  # a fresh database needs every migration
        await upgrade_to_head(engine)
        assert await pending_migrations(engine) == []
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
            assert await connection.run_sync(_tables) == set(metadata.tables)
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: command.downgrade(alembic_config(sync), "base"))
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == set()
        await upgrade_to_head(engine)  # and back up again
        assert await pending_migrations(engine) == []
    finally:
        await engine.dispose()
