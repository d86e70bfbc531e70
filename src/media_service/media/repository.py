"""SQL for media files and idempotency keys; nothing else in the domain writes SQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Select, delete, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.db.uow import insert_unless_conflict
from media_service.media.models import IdempotencyKey, MediaFile
from media_service.media.policy import Visibility
from media_service.media.schemas import ListFilters


class MediaFileRepository:
    """Reads and writes ``media_files`` rows inside the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_visible(self, file_id: str, visibility: Visibility) -> MediaFile | None:
        statement = select(MediaFile).where(
            MediaFile.file_id == file_id, visible_clause(visibility)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get(self, file_id: str, *, hold: bool = False) -> MediaFile | None:
        """Any file by id, whoever owns it: for callers already authorised otherwise
        (a valid signed URL, an internal job). With ``hold``, a delete of the row waits
        until this transaction ends (PostgreSQL ``FOR KEY SHARE``; SQLite's writers take
        turns anyway), so rows that refer to it can be inserted safely."""
        lock = {"key_share": True} if hold else None
        return await self.session.get(MediaFile, file_id, with_for_update=lock)

    async def find_duplicate(
        self, organization_id: str, owner_type: str, owner_id: str, sha256: str
    ) -> MediaFile | None:
        statement = select(MediaFile).where(
            MediaFile.organization_id == organization_id,
            MediaFile.owner_type == owner_type,
            MediaFile.owner_id == owner_id,
            MediaFile.sha256 == sha256,
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def add(self, file: MediaFile) -> bool:
        """Insert ``file``; False (and nothing inserted) when a unique key already exists."""
        return await self._insert(file)

    async def list(self, visibility: Visibility, filters: ListFilters) -> Sequence[MediaFile]:
        statement = _filtered(select(MediaFile).where(visible_clause(visibility)), filters)
        if filters.cursor:
            statement = statement.where(MediaFile.file_id < filters.cursor)
        statement = statement.order_by(MediaFile.file_id.desc()).limit(filters.limit + 1)
        return (await self.session.execute(statement)).scalars().all()

    async def owned_by(
        self, organization_id: str, owner_id: str, owner_types: Iterable[str]
    ) -> Sequence[MediaFile]:
        """Files of one owner under any of ``owner_types`` (``ix_media_files_org_owner``)."""
        statement = (
            select(MediaFile)
            .where(
                MediaFile.organization_id == organization_id,
                MediaFile.owner_type.in_(list(owner_types)),
                MediaFile.owner_id == owner_id,
            )
            .order_by(MediaFile.file_id)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def delete(self, file: MediaFile) -> None:
        await self.session.delete(file)
        await self.session.flush()

    async def existing_ids(self, file_ids: Sequence[str]) -> set[str]:
        """Which of ``file_ids`` have a row (used by garbage collection)."""
        if not file_ids:
            return set()
        statement = select(MediaFile.file_id).where(MediaFile.file_id.in_(file_ids))
        return set((await self.session.execute(statement)).scalars().all())

    # -- idempotency keys ----------------------------------------------------------------

    async def get_idempotency_key(
        self, organization_id: str, principal_id: str, key: str
    ) -> IdempotencyKey | None:
        return await self.session.get(IdempotencyKey, (organization_id, principal_id, key))

    async def add_idempotency_key(self, row: IdempotencyKey) -> bool:
        """Record ``row``; False when the key was recorded concurrently by another request."""
        return await self._insert(row)

    async def delete_idempotency_keys_before(self, cutoff: datetime) -> int:
        result = await self.session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def _insert(self, row: MediaFile | IdempotencyKey) -> bool:
        return await insert_unless_conflict(self.session, row)


def visible_clause(visibility: Visibility) -> ColumnElement[bool]:
    """SQL for "a ``media_files`` row inside ``visibility``" (usable in joins)."""
    if visibility.everything:
        scope: ColumnElement[bool] = true()
    else:
        alternatives: list[ColumnElement[bool]] = []
        if visibility.shared_owner_types:
            alternatives.append(MediaFile.owner_type.in_(visibility.shared_owner_types))
        if visibility.subject and visibility.own_uploads:
            alternatives.append(MediaFile.uploaded_by == visibility.subject)
        if visibility.subject and visibility.personal_owner_types:
            alternatives.append(
                (MediaFile.owner_id == visibility.subject)
                & MediaFile.owner_type.in_(visibility.personal_owner_types)
            )
        scope = or_(*alternatives) if alternatives else false()
    return (MediaFile.organization_id == visibility.organization_id) & scope


def _filtered(statement: Select[MediaFile], filters: ListFilters) -> Select[MediaFile]:
    if filters.owner_id is not None:
        statement = statement.where(MediaFile.owner_id == filters.owner_id)
    if filters.owner_type is not None:
        statement = statement.where(MediaFile.owner_type == filters.owner_type)
    if filters.file_type is not None:
        statement = statement.where(MediaFile.file_type == filters.file_type)
    if filters.processed is not None:
        statement = statement.where(MediaFile.processed == filters.processed)
    if filters.uploaded_after is not None:
        statement = statement.where(MediaFile.uploaded_at >= filters.uploaded_after)
    if filters.uploaded_before is not None:
        statement = statement.where(MediaFile.uploaded_at < filters.uploaded_before)
    return statement
