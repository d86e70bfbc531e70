"""HTTP endpoint of ``/api/v1/media/users/{user_id}/export``: HTTP concerns only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from media_service.deps import PrincipalDep, SessionDep, StateDep
from media_service.media.filenames import content_disposition
from media_service.privacy.export import ExportService, archive_stream

router = APIRouter(prefix="/api/v1/media/users", tags=["privacy"])


async def export_service(session: SessionDep, state: StateDep) -> ExportService:
    return ExportService(session, state)


ExportServiceDep = Annotated[ExportService, Depends(export_service)]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        "description": "A ZIP of the person's originals, their versions and data.json",
    },
    404: {},
    422: {},
}


@router.get(
    "/{user_id}/export",
    response_class=StreamingResponse,
    responses=_RESPONSES,
)
async def export_user_data(
    user_id: str, principal: PrincipalDep, service: ExportServiceDep, state: StateDep
) -> StreamingResponse:
    """Everything held about a person (admins, or the person themself), as a ZIP
    streamed while it is built: their originals, the versions of their photos, and
    ``data.json`` with their files' records and metadata, playlists, frames and
    schedules."""
    export = await service.prepare(principal, user_id)
    return StreamingResponse(
        archive_stream(export, state.blobs),
        media_type="application/zip",
        headers={
            "Content-Disposition": content_disposition(export.download_name, inline=False),
            "Cache-Control": "no-store",
        },
    )
