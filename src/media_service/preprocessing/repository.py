"""SQL of the preprocessing engine: renditions and analysis rows."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.preprocessing.models import MediaAnalysis, StoredRendition


class PreprocessingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def analysis(self, file_id: str) -> MediaAnalysis | None:
        return await self.session.get(MediaAnalysis, file_id)

    async def renditions(self, file_id: str) -> Sequence[StoredRendition]:
        rows = await self.session.execute(
            select(StoredRendition)
            .where(StoredRendition.file_id == file_id)
            .order_by(StoredRendition.width)
        )
        return rows.scalars().all()

    async def rendition(self, file_id: str, name: str) -> StoredRendition | None:
        return await self.session.get(StoredRendition, (file_id, name))

    async def save_analysis(self, analysis: MediaAnalysis) -> MediaAnalysis:
        """Insert or replace the file's analysis row."""
        return await self.session.merge(analysis)

    async def save_rendition(self, rendition: StoredRendition) -> None:
        """Insert or replace one named rendition."""
        await self.session.merge(rendition)
