"""SQL of the erasure records: ``erasures`` and ``erasure_items``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.db.base import utcnow
from media_service.db.uow import conflict_insert, insert_unless_conflict
from media_service.privacy.models import Erasure, ErasureItem, ErasureStatus

MAX_LISTED = 100


class ErasureRepository:
    """Erasures and what each has removed so far, inside the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, erasure: Erasure) -> bool:
        """Insert ``erasure``; False (nothing inserted) when the person already has an
        unfinished one (the partial unique index)."""
        return await insert_unless_conflict(self.session, erasure)

    async def get(self, erasure_id: str, *, for_update: bool = False) -> Erasure | None:
        return await self.session.get(Erasure, erasure_id, with_for_update=for_update)

    async def unfinished(self, organization_id: str, subject_digest: str) -> Erasure | None:
        statement = select(Erasure).where(
            Erasure.organization_id == organization_id,
            Erasure.subject_digest == subject_digest,
            Erasure.status != ErasureStatus.DONE,
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def of_subject(self, organization_id: str, subject_digest: str) -> list[Erasure]:
        """The person's erasures, newest first."""
        statement = (
            select(Erasure)
            .where(
                Erasure.organization_id == organization_id,
                Erasure.subject_digest == subject_digest,
            )
            .order_by(Erasure.created_at.desc())
            .limit(MAX_LISTED)
        )
        return list((await self.session.execute(statement)).scalars().all())

    async def add_counts(self, erasure_id: str, counts: Mapping[str, int]) -> None:
        """Add ``counts`` to the erasure's report (in the transaction of what they count,
        so a resumed run never counts anything twice)."""
        erasure = await self.get(erasure_id, for_update=True)
        if erasure is None or not any(counts.values()):
            return
        total = dict(erasure.counts or {})
        for name, value in counts.items():
            total[name] = total.get(name, 0) + value
        erasure.counts = total  # a new dict: the JSON column sees the change
        erasure.updated_at = utcnow()
        await self.session.flush()

    async def add_items(self, erasure_id: str, kind: str, item_ids: Sequence[str]) -> None:
        """Remember that these were removed (already remembered ones are kept)."""
        if not item_ids:
            return
        now = utcnow()
        rows = [
            {"erasure_id": erasure_id, "kind": kind, "item_id": item_id, "created_at": now}
            for item_id in dict.fromkeys(item_ids)
        ]
        insert = conflict_insert(self.session, ErasureItem)
        await self.session.execute(insert.values(rows).on_conflict_do_nothing())

    async def item_ids(self, erasure_id: str, kind: str | None = None) -> list[str]:
        statement = select(ErasureItem.item_id).where(ErasureItem.erasure_id == erasure_id)
        if kind is not None:
            statement = statement.where(ErasureItem.kind == kind)
        return list((await self.session.execute(statement.order_by(ErasureItem.item_id))).scalars())

    async def forget_items(self, erasure_id: str) -> None:
        await self.session.execute(delete(ErasureItem).where(ErasureItem.erasure_id == erasure_id))
