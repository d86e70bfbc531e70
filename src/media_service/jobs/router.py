"""Admin endpoints for dead letters: ``/api/v1/media/admin/dead-letters``.

Only admins, and only the dead letters of their own organization (see
``jobs.dead_letters``). The list answers 403 to anyone else; an id answers 404 unless it
is a dead letter of the caller's organization and the caller is an admin, so ids can't
be probed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from media_service.auth.principal import Principal, Role
from media_service.deps import PrincipalDep, SessionDep
from media_service.errors import Forbidden, NotFound
from media_service.events.models import DeadLetterRecord
from media_service.jobs.dead_letters import DeadLetterService, message_document, organization_of

router = APIRouter(prefix="/api/v1/media/admin/dead-letters", tags=["admin"])


class DeadLetterOut(BaseModel):
    """A message that could not be handled, and why."""

    id: str
    source: str
    subject: str
    msg_id: str | None
    organization_id: str | None
    attempts: int
    error: str
    created_at: datetime
    retried_at: datetime | None
    message: dict[str, Any] | None  # null when the stored bytes are not a JSON object

    @classmethod
    def of(cls, record: DeadLetterRecord) -> DeadLetterOut:
        return cls(
            id=record.id,
            source=record.source,
            subject=record.subject,
            msg_id=record.msg_id,
            organization_id=organization_of(record),
            attempts=record.attempts,
            error=record.error,
            created_at=record.created_at,
            retried_at=record.retried_at,
            message=message_document(record),
        )


class DeadLetterPage(BaseModel):
    """One page; pass ``next_cursor`` back as ``cursor`` for the next."""

    items: list[DeadLetterOut]
    next_cursor: str | None


@router.get("", response_model=DeadLetterPage, responses={403: {}})
async def list_dead_letters(
    principal: PrincipalDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=64, pattern=r"^dlq_[0-9a-z]{26}$")] = None,
    include_retried: bool = False,
) -> DeadLetterPage:
    """List the organization's dead letters, newest first (admins only)."""
    if not principal.has(Role.ADMIN):
        raise Forbidden("only admins may list dead letters")
    items, next_cursor = await DeadLetterService(session).page(
        organization_id=principal.organization_id,
        limit=limit,
        cursor=cursor,
        include_retried=include_retried,
    )
    return DeadLetterPage(items=[DeadLetterOut.of(r) for r in items], next_cursor=next_cursor)


@router.post("/{dead_letter_id}/retry", response_model=DeadLetterOut, responses={404: {}, 409: {}})
async def retry_dead_letter(
    dead_letter_id: str, principal: PrincipalDep, session: SessionDep
) -> DeadLetterOut:
    """Re-queue a dead letter's message on its subject and mark it retried."""
    _require_admin_or_hide(principal, dead_letter_id)
    record = await DeadLetterService(session).retry(
        dead_letter_id, organization_id=principal.organization_id
    )
    return DeadLetterOut.of(record)


def _require_admin_or_hide(principal: Principal, dead_letter_id: str) -> None:
    if not principal.has(Role.ADMIN):
        raise NotFound(f"no dead letter {dead_letter_id[:64]!r}")
