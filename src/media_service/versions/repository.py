"""SQL of the versions domain: ``photo_versions`` and the per-photo counter."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.db.uow import insert_unless_conflict, insert_unless_present
from media_service.media.models import MediaFile
from media_service.versions.models import PhotoVersion, PhotoVersionCounter, VersionType

_CHUNK = 500  # ids per IN list (well under every driver's parameter limit)


class VersionRepository:
    """Reads and writes version rows inside the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_photo(self, photo_id: str) -> bool:
        """Lock the photo's file row until the transaction ends (PostgreSQL: ``SELECT …
        FOR UPDATE``; SQLite's write transactions are already serial), so that concurrent
        changes to one photo's versions run one after the other. False if it is gone."""
        statement = select(MediaFile.file_id).where(MediaFile.file_id == photo_id)
        found = await self.session.scalar(statement.with_for_update())
        return found is not None

    async def get(self, photo_id: str, version_id: str) -> PhotoVersion | None:
        version = await self.session.get(PhotoVersion, version_id)
        return version if version is not None and version.photo_id == photo_id else None

    async def existing_ids(self, version_ids: Sequence[str]) -> set[str]:
        """Which of ``version_ids`` have a row (used by garbage collection)."""
        if not version_ids:
            return set()
        statement = select(PhotoVersion.version_id).where(PhotoVersion.version_id.in_(version_ids))
        return set((await self.session.execute(statement)).scalars().all())

    async def by_number(self, photo_id: str, number: int) -> PhotoVersion | None:
        statement = select(PhotoVersion).where(
            PhotoVersion.photo_id == photo_id, PhotoVersion.version_number == number
        )
        return await self.session.scalar(statement)

    async def current(self, photo_id: str) -> PhotoVersion | None:
        statement = select(PhotoVersion).where(
            PhotoVersion.photo_id == photo_id, PhotoVersion.is_current.is_(True)
        )
        return await self.session.scalar(statement)

    async def original(self, photo_id: str) -> PhotoVersion | None:
        return await self.by_number(photo_id, 1)

    async def list(self, photo_id: str) -> Sequence[PhotoVersion]:
        statement = (
            select(PhotoVersion)
            .where(PhotoVersion.photo_id == photo_id)
            .order_by(PhotoVersion.version_number)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def list_many(self, photo_ids: Sequence[str]) -> Sequence[PhotoVersion]:
        """Every version of ``photo_ids``, by photo and number."""
        found: builtins.list[PhotoVersion] = []
        for start in range(0, len(photo_ids), _CHUNK):
            chunk = photo_ids[start : start + _CHUNK]
            statement = select(PhotoVersion).where(PhotoVersion.photo_id.in_(chunk))
            found.extend((await self.session.execute(statement)).scalars().all())
        return sorted(found, key=lambda version: (version.photo_id, version.version_number))

    async def count(self, photo_id: str) -> int:
        statement = select(func.count()).where(PhotoVersion.photo_id == photo_id)
        return int(await self.session.scalar(statement) or 0)

    async def add_original(self, original: PhotoVersion) -> bool:
        """Insert the photo's original and start its counter; False (nothing inserted)
        when another transaction made them first."""
        assert original.version_type is VersionType.ORIGINAL and original.version_number == 1
        counter = PhotoVersionCounter(photo_id=original.photo_id, last_number=1)
        return await insert_unless_conflict(self.session, original, counter)

    async def insert_original(self, original: PhotoVersion) -> bool:
        """:meth:`add_original` as two ``INSERT … ON CONFLICT DO NOTHING`` (no savepoint);
        False when the original existed."""
        assert original.version_type is VersionType.ORIGINAL and original.version_number == 1
        if not await insert_unless_present(self.session, original):
            return False
        counter = PhotoVersionCounter(photo_id=original.photo_id, last_number=1)
        await insert_unless_present(self.session, counter)
        return True

    async def next_number(self, photo_id: str) -> int:
        """Take the next version number of the photo (the counter row is locked until the
        transaction ends; the original's creation made it)."""
        statement = (
            update(PhotoVersionCounter)
            .where(PhotoVersionCounter.photo_id == photo_id)
            .values(last_number=PhotoVersionCounter.last_number + 1)
            .returning(PhotoVersionCounter.last_number)
        )
        number = await self.session.scalar(statement)
        if number is None:
            raise LookupError(f"{photo_id} has no version counter (no original yet)")
        return int(number)

    async def add(self, version: PhotoVersion) -> None:
        self.session.add(version)
        await self.session.flush()

    async def delete(self, version: PhotoVersion) -> None:
        await self.session.delete(version)
        await self.session.flush()
