"""HTTP endpoint of ``/api/v1/media/audit`` (admins), and the dependency other routers
use to record reads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from media_service.audit.schemas import AuditEventOut, AuditFilters, AuditPage
from media_service.audit.service import AuditService, AuditTrail
from media_service.deps import PrincipalDep, SessionDep

router = APIRouter(prefix="/api/v1/media/audit", tags=["admin"])


async def audit_trail(session: SessionDep) -> AuditTrail:
    """The request's trail: rows commit with the request's unit of work."""
    return AuditTrail(session)


AuditDep = Annotated[AuditTrail, Depends(audit_trail)]


async def audit_service(session: SessionDep) -> AuditService:
    return AuditService(session)


ServiceDep = Annotated[AuditService, Depends(audit_service)]


@router.get("", response_model=AuditPage, responses={403: {}, 422: {}})
async def list_audit_events(
    principal: PrincipalDep, service: ServiceDep, filters: Annotated[AuditFilters, Query()]
) -> AuditPage:
    """Who read, changed, shared or deleted which student and class media, newest
    first (admins, their organization only)."""
    rows, cursor = await service.page(principal, filters)
    return AuditPage(items=[AuditEventOut.model_validate(row) for row in rows], next_cursor=cursor)
