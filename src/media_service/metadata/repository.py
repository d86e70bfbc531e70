"""SQL of the metadata domain: ``photo_metadata`` rows, read, written and searched."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, Update, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.db.uow import insert_unless_present
from media_service.media.models import MediaFile
from media_service.metadata.models import PhotoMetadata

_CHUNK = 500  # ids per IN list (well under every driver's parameter limit)


class MetadataRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    async def get(self, file_id: str, *, for_update: bool = False) -> PhotoMetadata | None:
        """The row; with ``for_update``, locked until the transaction ends (PostgreSQL), so
        read-modify-write changes of its lists do not overwrite each other."""
        return await self.session.get(PhotoMetadata, file_id, with_for_update=for_update)

    async def insert_unless_present(self, row: PhotoMetadata) -> bool:
        """Insert ``row`` with one ``INSERT … ON CONFLICT DO NOTHING`` (not through the
        session: ``row`` stays outside it); False if the photo had its record already."""
        return await insert_unless_present(self.session, row)

    async def add_unless_present(self, row: PhotoMetadata) -> PhotoMetadata:
        """Insert ``row``, or return the row another transaction inserted first (locked)."""
        try:
            async with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:  # the upload's consumer and a request raced: theirs stands
            existing = await self.get(row.file_id, for_update=True)
            if existing is None:  # inserted and deleted again meanwhile: nothing to add to
                raise
            return existing
        return row

    async def search(
        self,
        conditions: Sequence[ColumnElement[bool]],
        order: Sequence[ColumnElement[object]],
        limit: int,
    ) -> list[tuple[PhotoMetadata, MediaFile]]:
        """Rows matching every condition (over ``photo_metadata`` joined to
        ``media_files``), in ``order``, at most ``limit``."""
        statement = (
            select(PhotoMetadata, MediaFile)
            .join(MediaFile, MediaFile.file_id == PhotoMetadata.file_id)
            .where(*conditions)
            .order_by(*order)
            .limit(limit)
        )
        rows = await self.session.execute(statement)
        return [(row[0], row[1]) for row in rows.all()]

    async def with_faces(self, file_ids: Sequence[str]) -> list[PhotoMetadata]:
        """Rows of ``file_ids`` that hold face data (``face_count`` is written with the
        rest of it), locked until the transaction ends."""
        found: list[PhotoMetadata] = []
        for start in range(0, len(file_ids), _CHUNK):
            statement = (
                select(PhotoMetadata)
                .where(
                    PhotoMetadata.file_id.in_(file_ids[start : start + _CHUNK]),
                    PhotoMetadata.face_count.is_not(None),
                )
                .with_for_update()
            )
            found.extend((await self.session.execute(statement)).scalars().all())
        return found

    async def get_many(self, file_ids: Sequence[str]) -> list[PhotoMetadata]:
        """The rows of ``file_ids`` that exist, in ``file_id`` order."""
        found: list[PhotoMetadata] = []
        for start in range(0, len(file_ids), _CHUNK):
            chunk = file_ids[start : start + _CHUNK]
            statement = select(PhotoMetadata).where(PhotoMetadata.file_id.in_(chunk))
            found.extend((await self.session.execute(statement)).scalars().all())
        return sorted(found, key=lambda row: row.file_id)


def owner_copy_update(file_id: str, owner_id: str) -> Update:
    """The statement that sets a photo's copy of its file's owner (see ``metadata.sync``)."""
    return (
        update(PhotoMetadata)
        .where(PhotoMetadata.file_id == file_id)
        .values(user_id=owner_id)
        .execution_options(synchronize_session=False)
    )
