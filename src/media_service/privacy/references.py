"""SQL the erasure needs across the other domains' tables, and nothing else.

Erasing a person must reach every table that can name them, including ones whose domain
offers no such operation (who uploaded a file for someone else, who made a version of
someone else's photo). Deleting what the person owns goes through the domains' services
(see :mod:`media_service.privacy.erasure`); what stays but must stop naming them is
rewritten here, in one place, so that a new table with a user column has one obvious
place to be added (``tests/unit/test_erasure_coverage.py`` fails until it is).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Column, Table, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.db.base import Base
from media_service.frames.models import Frame, PhotoCache, RotationSchedule
from media_service.media.models import IdempotencyKey, MediaFile
from media_service.metadata.models import PhotoMetadata
from media_service.playlists.models import Playlist
from media_service.preprocessing.models import MediaAnalysis, StoredRendition
from media_service.privacy.models import Erasure
from media_service.versions.models import PhotoVersion


def _column(model: type[Base], name: str) -> Column[Any]:
    return cast(Table, model.__table__).c[name]


# Columns that name a person on rows that are not theirs; each table has organization_id.
PSEUDONYMISED: tuple[Column[Any], ...] = (
    _column(MediaFile, "uploaded_by"),  # files uploaded for someone else
    _column(PhotoVersion, "user_id"),  # versions made of someone else's photo
    _column(PhotoMetadata, "user_id"),  # a copy of the owner, for filters
    _column(RotationSchedule, "user_id"),  # schedules made on someone else's frame
    _column(PhotoCache, "user_id"),  # a copy of the frame's owner
    _column(Erasure, "requested_by"),  # erasures of others an admin asked for
)
# Primary keys of what the erasure deletes, locked batch by batch.
FILE_KEY = _column(MediaFile, "file_id")
PLAYLIST_KEY = _column(Playlist, "playlist_id")
FRAME_KEY = _column(Frame, "frame_id")
# Rows that go with a file (foreign keys with ON DELETE CASCADE), counted for the report.
DERIVED: dict[str, Column[Any]] = {
    "versions": _column(PhotoVersion, "photo_id"),
    "metadata_rows": _column(PhotoMetadata, "file_id"),
    "renditions": _column(StoredRendition, "file_id"),
    "analysis_rows": _column(MediaAnalysis, "file_id"),
}


class ReferenceRepository:
    """Counts, pseudonymises and deletes references to a person, in the caller's
    transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_existing(self, key: Column[Any], ids: Sequence[str]) -> list[str]:
        """Which of ``ids`` (values of the primary key ``key``) still exist, their rows
        locked until the transaction ends: on PostgreSQL a concurrent run of the same
        erasure that deletes them first is waited for and they are left out, so each row is
        deleted and counted once (SQLite's write transactions are serial anyway)."""
        if not ids:
            return []
        statement = select(key).where(key.in_(ids)).with_for_update()
        found = set((await self.session.execute(statement)).scalars().all())
        return [value for value in ids if value in found]

    async def derived_counts(self, file_ids: Sequence[str]) -> dict[str, int]:
        """How many rows of each kind go with ``file_ids`` when they are deleted."""
        counts = {}
        for name, column in DERIVED.items():
            statement = select(func.count()).select_from(column.table)
            counts[name] = int(
                await self.session.scalar(statement.where(column.in_(file_ids))) or 0
            )
        return counts

    async def pseudonymise(self, organization_id: str, user_id: str, pseudonym: str) -> int:
        """Replace ``user_id`` by ``pseudonym`` in every column of :data:`PSEUDONYMISED`;
        how many values changed."""
        changed = 0
        for column in PSEUDONYMISED:
            table = column.table
            result = await self.session.execute(
                update(table)
                .where(table.c.organization_id == organization_id, column == user_id)
                .values({column.name: pseudonym})
            )
            changed += int(result.rowcount)  # type: ignore[attr-defined]
        return changed

    async def delete_idempotency_keys(
        self, organization_id: str, principal_id: str | None, file_ids: Sequence[str] = ()
    ) -> int:
        """Forget the upload idempotency keys a person used, or that led to ``file_ids``
        (someone else's key for an upload of the person's file)."""
        conditions = []
        if principal_id is not None:
            conditions.append(IdempotencyKey.principal_id == principal_id)
        if file_ids:
            conditions.append(IdempotencyKey.file_id.in_(file_ids))
        if not conditions:
            return 0
        result = await self.session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.organization_id == organization_id, or_(*conditions)
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
