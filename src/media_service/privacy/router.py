"""HTTP endpoints of erasures: ``DELETE /api/v1/media/users/{user_id}/data`` and
``/api/v1/media/erasures``. HTTP concerns only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from media_service.deps import PrincipalDep, SessionDep, StateDep
from media_service.privacy.models import Erasure
from media_service.privacy.schemas import ErasureAccepted, ErasureList, ErasureReport
from media_service.privacy.service import ErasureService

users = APIRouter(prefix="/api/v1/media/users", tags=["privacy"])
erasures = APIRouter(prefix="/api/v1/media/erasures", tags=["privacy"])


async def erasure_service(session: SessionDep, state: StateDep) -> ErasureService:
    return ErasureService(session, state)


ErasuresDep = Annotated[ErasureService, Depends(erasure_service)]


@users.delete(
    "/{user_id}/data", status_code=202, response_model=ErasureAccepted, responses={404: {}, 422: {}}
)
async def erase_user_data(
    user_id: str, request: Request, principal: PrincipalDep, service: ErasuresDep, state: StateDep
) -> ErasureAccepted:
    """Erase everything stored about a person (admins, or the person themself): a job that
    reports what it removed at ``status_url``. While one runs, asking again returns it."""
    erasure = await service.request(principal, user_id)
    base = (state.settings.public_url or str(request.base_url)).rstrip("/")
    return ErasureAccepted(
        erasure_id=erasure.erasure_id,
        status=erasure.status.value,
        status_url=f"{base}{erasures.prefix}/{erasure.erasure_id}",
    )


@erasures.get("", response_model=ErasureList, responses={404: {}, 422: {}})
async def find_erasures(
    principal: PrincipalDep,
    service: ErasuresDep,
    user_id: Annotated[str, Query(description="The person's user id")],
) -> ErasureList:
    """An admin's search for the erasures of a person, by the id they had."""
    return ErasureList(items=[report(e) for e in await service.of_person(principal, user_id)])


@erasures.get("/{erasure_id}", response_model=ErasureReport, responses={404: {}})
async def get_erasure(
    erasure_id: str, principal: PrincipalDep, service: ErasuresDep
) -> ErasureReport:
    """An erasure's progress and, once done, its report of what was removed."""
    return report(await service.report(principal, erasure_id))


def report(erasure: Erasure) -> ErasureReport:
    return ErasureReport(
        erasure_id=erasure.erasure_id,
        organization_id=erasure.organization_id,
        subject=erasure.subject_digest,
        status=erasure.status.value,
        step=erasure.step,
        counts=dict(erasure.counts or {}),
        created_at=erasure.created_at,
        started_at=erasure.started_at,
        finished_at=erasure.finished_at,
    )
