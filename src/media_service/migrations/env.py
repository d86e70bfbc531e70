"""Alembic environment: always run with a connection handed in by media_service.db.migrate."""

from __future__ import annotations

from alembic import context

from media_service.db.migrate import include_object_for
from media_service.db.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `media-service migrate`")


context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=include_object_for(connection.dialect.name),
)
with context.begin_transaction():
    context.run_migrations()
