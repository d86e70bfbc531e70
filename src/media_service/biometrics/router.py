"""HTTP endpoints of ``/api/v1/media/users/{user_id}/consent`` and ``…/biometrics``:
HTTP concerns only, rules live in the service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from media_service.biometrics.schemas import BiometricReport, ConsentOut, ConsentUpdate
from media_service.biometrics.service import BiometricsService
from media_service.deps import PrincipalDep, SessionDep, StateDep

router = APIRouter(prefix="/api/v1/media/users", tags=["biometrics"])
# A user id as tokens carry it (``sub``): no control or invisible characters.
UserId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]+$",
    ),
]
_PROBLEMS: dict[int | str, dict[str, str]] = {
    403: {"description": "Readable by the caller, but only the person or an admin may change it"},
    404: {"description": "No such person for the caller (not the person, an admin or a teacher)"},
    422: {"description": "Invalid user id or body"},
}


async def biometrics_service(session: SessionDep, state: StateDep) -> BiometricsService:
    return BiometricsService(session, state)


ServiceDep = Annotated[BiometricsService, Depends(biometrics_service)]


@router.get("/{user_id}/consent", response_model=ConsentOut, responses=_PROBLEMS)
async def get_consent(user_id: UserId, principal: PrincipalDep, service: ServiceDep) -> ConsentOut:
    """Whether the person allows face processing of their files (allowed by default)."""
    return await service.consent(principal, user_id)


@router.put("/{user_id}/consent", response_model=ConsentOut, responses=_PROBLEMS)
async def put_consent(
    user_id: UserId, body: ConsentUpdate, principal: PrincipalDep, service: ServiceDep
) -> ConsentOut:
    """Allow or withdraw face processing; withdrawing removes the face data held."""
    return await service.set_consent(principal, user_id, body)


@router.delete("/{user_id}/biometrics", response_model=BiometricReport, responses=_PROBLEMS)
async def delete_biometrics(
    user_id: UserId, principal: PrincipalDep, service: ServiceDep
) -> BiometricReport:
    """Erase the person's biometric data: profile images, face crops and face metadata
    (their other files stay)."""
    return await service.erase(principal, user_id)
