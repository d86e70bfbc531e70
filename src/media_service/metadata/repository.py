"""SQL of the metadata domain: ``photo_metadata`` rows, read, written and searched."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, Update, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.media.models import MediaFile
from media_service.metadata.models import PhotoMetadata


class MetadataRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    async def get(self, file_id: str) -> PhotoMetadata | None:
        return await self.session.get(PhotoMetadata, file_id)

    async def add(self, row: PhotoMetadata) -> PhotoMetadata:
        self.session.add(row)
        await self.session.flush()
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


def owner_copy_update(file_id: str, owner_id: str) -> Update:
    """The statement that sets a photo's copy of its file's owner (see ``metadata.sync``)."""
    return (
        update(PhotoMetadata)
        .where(PhotoMetadata.file_id == file_id)
        .values(user_id=owner_id)
        .execution_options(synchronize_session=False)
    )
