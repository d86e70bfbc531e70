"""SQL of the audit trail."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, case, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.audit.models import AuditEvent
from media_service.audit.schemas import AuditFilters
from media_service.media.models import PERSONAL_OWNER_TYPES


class AuditRepository:
    """Rows of ``audit_events``, inside the caller's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, row: AuditEvent) -> None:
        """Queue ``row`` for the session's next flush (one INSERT, no SELECT)."""
        self.session.add(row)

    async def page(
        self, organization_id: str, filters: AuditFilters, limit: int
    ) -> Sequence[AuditEvent]:
        """Up to ``limit`` rows of the organization matching ``filters``, newest first,
        after ``filters.cursor``."""
        statement = select(AuditEvent).where(AuditEvent.organization_id == organization_id)
        equal = {
            AuditEvent.owner_id: filters.owner_id,
            AuditEvent.owner_type: filters.owner_type,
            AuditEvent.file_id: filters.file_id,
            AuditEvent.actor_id: filters.actor_id,
            AuditEvent.action: filters.action,
        }
        for column, value in equal.items():
            if value is not None:
                statement = statement.where(column == value)
        if filters.since is not None:
            statement = statement.where(AuditEvent.occurred_at >= filters.since)
        if filters.until is not None:
            statement = statement.where(AuditEvent.occurred_at < filters.until)
        if filters.cursor is not None:
            statement = statement.where(AuditEvent.audit_id < filters.cursor)
        statement = statement.order_by(AuditEvent.audit_id.desc()).limit(limit)
        return (await self.session.execute(statement)).scalars().all()

    async def replace_person(self, organization_id: str, person_id: str, pseudonym: str) -> int:
        """Put ``pseudonym`` wherever ``person_id`` is the actor or the owner, and a
        pseudonym of each of their files' ids (and versions' ids) in the rows about those
        files; how many rows changed."""
        await self._replace_owned_ids(organization_id, person_id, pseudonym)
        owns = and_(
            AuditEvent.owner_id == person_id, AuditEvent.owner_type.in_(PERSONAL_OWNER_TYPES)
        )
        statement = (
            update(AuditEvent)
            .where(
                AuditEvent.organization_id == organization_id,
                or_(AuditEvent.actor_id == person_id, owns),
            )
            .values(
                actor_id=case(
                    (AuditEvent.actor_id == person_id, pseudonym), else_=AuditEvent.actor_id
                ),
                owner_id=case((owns, pseudonym), else_=AuditEvent.owner_id),
            )
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(statement)
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def _replace_owned_ids(
        self, organization_id: str, person_id: str, pseudonym: str
    ) -> None:
        """The ids of what the person owned are theirs too: each becomes a stable
        pseudonym, so the trail still tells one erased file from another."""
        owned = (
            AuditEvent.organization_id == organization_id,
            AuditEvent.owner_id == person_id,
            AuditEvent.owner_type.in_(PERSONAL_OWNER_TYPES),
        )
        for column in (AuditEvent.file_id, AuditEvent.resource_id):
            values = await self.session.scalars(select(column).where(*owned).distinct())
            for value in values.all():
                await self.session.execute(
                    update(AuditEvent)
                    .where(*owned, column == value)
                    .values({column.key: id_pseudonym(pseudonym, value)})
                    .execution_options(synchronize_session=False)
                )

    async def delete_before(self, cutoff: datetime) -> int:
        """Forget rows older than ``cutoff`` (every organization's); how many went."""
        result = await self.session.execute(
            delete(AuditEvent).where(AuditEvent.occurred_at < cutoff)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def id_pseudonym(pseudonym: str, value: str) -> str:
    """A stable stand-in for an erased person's file or version id (already one when it
    starts with the person's pseudonym, so running the erasure again changes nothing)."""
    if value.startswith(pseudonym):
        return value
    digest = hashlib.sha256(f"{pseudonym}:{value}".encode()).hexdigest()[:12]
    return f"{pseudonym}_{digest}"
