"""HTTP endpoints of ``/api/v1/media/metadata``: HTTP concerns only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from media_service.deps import PrincipalDep, SessionDep, StateDep
from media_service.metadata.criteria import Criteria
from media_service.metadata.schemas import AiAnalysisUpdate, MetadataOut, MetadataPage
from media_service.metadata.service import MetadataService

router = APIRouter(prefix="/api/v1/media/metadata", tags=["metadata"])
MAX_PAGE = 500


async def metadata_service(session: SessionDep, state: StateDep) -> MetadataService:
    return MetadataService(session, state)


ServiceDep = Annotated[MetadataService, Depends(metadata_service)]


class MetadataQuery(BaseModel):
    """``criteria`` (see docs/criteria.md), a page size and the previous page's cursor."""

    model_config = ConfigDict(extra="forbid")

    criteria: Criteria = Field(default_factory=Criteria)
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=512)


@router.get("/{file_id}", response_model=MetadataOut, responses={404: {}})
async def get_metadata(file_id: str, principal: PrincipalDep, service: ServiceDep) -> MetadataOut:
    """A photo's metadata; location and faces only for its owner and admins."""
    return await service.get(principal, file_id)


@router.put("/{file_id}", response_model=MetadataOut, responses={403: {}, 404: {}, 422: {}})
async def put_ai_analysis(
    file_id: str, update: AiAnalysisUpdate, principal: PrincipalDep, service: ServiceDep
) -> MetadataOut:
    """An AI service's labels, objects and scenes (services and admins)."""
    return await service.update_ai_analysis(principal, file_id, update)


@router.post("/query", response_model=MetadataPage, responses={422: {}})
async def query_metadata(
    query: MetadataQuery, principal: PrincipalDep, service: ServiceDep
) -> MetadataPage:
    """Photos the caller may see that match the criteria, sorted, a page at a time."""
    return await service.query(principal, query.criteria, query.limit, query.cursor)
