"""SQL of the preprocessing engine: renditions and analysis rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.db.base import utcnow
from media_service.db.uow import conflict_insert
from media_service.preprocessing.models import MediaAnalysis, StoredRendition

_CHUNK = 500  # ids per IN list (well under every driver's parameter limit)
_RENDITION_TABLE = cast(Table, StoredRendition.__table__)
_RENDITION_KEY = frozenset(column.name for column in _RENDITION_TABLE.primary_key)
_RENDITION_COLUMNS = frozenset(column.name for column in _RENDITION_TABLE.columns)


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

    async def save_analysis(
        self,
        file_id: str,
        values: Mapping[str, Any],
        *,
        created_with: Mapping[str, Any] | None = None,
    ) -> MediaAnalysis:
        """Write ``values`` (and ``analysed_at``: now, unless given) into the file's analysis
        row; a new row also gets ``created_with``. The row as stored.

        One ``INSERT ... ON CONFLICT DO UPDATE``: the preprocess job and face detection may
        both find no row and insert the first one. The second then waits for the first to
        commit and updates its row, instead of failing on the primary key. Columns not in
        ``values`` keep what is stored (the job's analysis and the detected faces are
        written by different writers)."""
        changes = {"analysed_at": utcnow(), **values}
        statement = conflict_insert(self.session, MediaAnalysis).values(
            {**(created_with or {}), **changes, "file_id": file_id}
        )
        statement = statement.on_conflict_do_update(
            index_elements=[MediaAnalysis.file_id],
            set_={name: statement.excluded[name] for name in changes},
        )
        # populate_existing: a copy of the row this session already holds is refreshed.
        returning = statement.returning(MediaAnalysis).execution_options(populate_existing=True)
        row: MediaAnalysis = (await self.session.execute(returning)).scalar_one()
        return row

    async def save_rendition(self, rendition: StoredRendition) -> None:
        """Insert or replace one named rendition: one ``INSERT ... ON CONFLICT DO UPDATE``
        (a merge read the row first)."""
        values = {name: getattr(rendition, name) for name in _RENDITION_COLUMNS}
        values["created_at"] = rendition.created_at or utcnow()  # the ORM's default at flush
        statement = conflict_insert(self.session, StoredRendition).values(values)
        changed = {name: statement.excluded[name] for name in _RENDITION_COLUMNS - _RENDITION_KEY}
        await self.session.execute(
            statement.on_conflict_do_update(index_elements=sorted(_RENDITION_KEY), set_=changed)
        )

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
