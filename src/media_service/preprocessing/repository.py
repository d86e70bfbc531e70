"""SQL of the preprocessing engine: renditions and analysis rows."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import null, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.preprocessing.models import MediaAnalysis, StoredRendition

_CHUNK = 500  # ids per IN list (well under every driver's parameter limit)


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

    async def clear_faces(self, file_ids: Sequence[str]) -> int:
        """Forget the detected faces of ``file_ids``; how many rows held some."""
        cleared = 0
        for start in range(0, len(file_ids), _CHUNK):
            result = await self.session.execute(
                update(MediaAnalysis)
                .where(
                    MediaAnalysis.file_id.in_(file_ids[start : start + _CHUNK]),
                    MediaAnalysis.faces_detected_at.is_not(None),
                )
                # analysed_at keeps its time: the rest of the analysis is unchanged.
                .values(faces=null(), faces_detected_at=None, analysed_at=MediaAnalysis.analysed_at)
                .execution_options(synchronize_session=False)
            )
            cleared += int(result.rowcount)  # type: ignore[attr-defined]
        return cleared
