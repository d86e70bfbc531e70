"""Alembic migrations run programmatically, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from media_service.metadata.models import OWNER_SORT_INDEX, SORT_INDEXES

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Apply every pending migration inside one connection of ``engine``."""
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), "head"))


async def pending_migrations(engine: AsyncEngine) -> list[str]:
    """Revisions not yet applied (empty when the schema is at head)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()

    def current(sync: Connection) -> str | None:
        return MigrationContext.configure(sync).get_current_revision()

    async with engine.connect() as connection:
        revision = await connection.run_sync(current)
    if revision == head:
        return []
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in script.iterate_revisions(head, revision)]


# Expression indexes made by migrations that the models cannot declare (see 0005).
MIGRATION_ONLY_INDEXES = frozenset({*SORT_INDEXES, OWNER_SORT_INDEX})


def include_object_for(dialect: str) -> Callable[[object, str | None, str, bool, object], bool]:
    """Alembic's ``include_object`` for ``dialect``: leaves out the indexes declared for
    another database (``Index(...).ddl_if(dialect=...)``, e.g. PostgreSQL's GIN indexes)."""

    def include_object(
        obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
    ) -> bool:
        if type_ == "index" and reflected:
            return name not in MIGRATION_ONLY_INDEXES
        if type_ == "index":
            wanted = getattr(getattr(obj, "_ddl_if", None), "dialect", None)
            return wanted is None or wanted == dialect
        return True

    return include_object
