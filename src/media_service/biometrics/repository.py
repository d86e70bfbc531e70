"""SQL of the biometrics domain: ``biometric_consent`` rows."""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.biometrics.models import BiometricConsent
from media_service.db.uow import insert_unless_conflict


class ConsentRepository:
    """Reads and writes consent rows inside the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(
        self, organization_id: str, owner_id: str, *, for_update: bool = False
    ) -> BiometricConsent | None:
        """The person's row (a primary-key lookup); ``None`` when they made no choice."""
        return await self.session.get(
            BiometricConsent, (organization_id, owner_id), with_for_update=for_update
        )

    async def add(self, row: BiometricConsent) -> bool:
        """Insert ``row``; False (nothing inserted) when a concurrent request did first."""
        return await insert_unless_conflict(self.session, row)

    async def delete_person(self, organization_id: str, owner_id: str) -> int:
        """Remove the person's own row; how many rows went (0 or 1)."""
        result = await self.session.execute(
            delete(BiometricConsent).where(
                BiometricConsent.organization_id == organization_id,
                BiometricConsent.owner_id == owner_id,
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def replace_updater(self, organization_id: str, user_id: str, pseudonym: str) -> int:
        """Put ``pseudonym`` where ``user_id`` recorded someone else's choice."""
        result = await self.session.execute(
            update(BiometricConsent)
            .where(
                BiometricConsent.organization_id == organization_id,
                BiometricConsent.updated_by == user_id,
            )
            .values(updated_by=pseudonym)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
