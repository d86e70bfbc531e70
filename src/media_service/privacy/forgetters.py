"""The hook point of step "references": every domain that keeps something about people
beyond what the erasure deletes gives a ``forget_person`` here.

A forgetter runs inside the erasure's transaction for that step; it deletes the person's
rows or replaces their id by ``pseudonym``, and returns how many rows it changed (or
``None``). It must be idempotent: a resumed erasure calls it again. Adding a domain is one
line in :data:`FORGETTERS`, keyed by the name its count has in the report.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from media_service.audit import service as audit
from media_service.biometrics import service as biometrics
from media_service.privacy.references import ReferenceRepository

# forget_person(session, organization_id, user_id, pseudonym) -> rows changed
Forgetter = Callable[[AsyncSession, str, str, str], Awaitable[int | None]]


async def pseudonymise_references(
    session: AsyncSession, organization_id: str, user_id: str, pseudonym: str
) -> int:
    """Who uploaded a file for someone else, made a version of someone else's photo, made a
    schedule on someone else's frame: their id becomes the pseudonym."""
    return await ReferenceRepository(session).pseudonymise(organization_id, user_id, pseudonym)


async def forget_idempotency_keys(
    session: AsyncSession, organization_id: str, user_id: str, pseudonym: str
) -> int:
    """The person's upload idempotency keys go (they only de-duplicate retries)."""
    return await ReferenceRepository(session).delete_idempotency_keys(organization_id, user_id)


FORGETTERS: Mapping[str, Forgetter] = {
    "pseudonymised_references": pseudonymise_references,
    "idempotency_keys": forget_idempotency_keys,
    # One line per domain that keeps more about people:
    "biometric_rows": biometrics.forget_person,
    "audit_rows": audit.forget_person,
}
