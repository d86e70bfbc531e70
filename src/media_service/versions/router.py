"""HTTP endpoints of ``/api/v1/media/photos/{photo_id}/versions`` (spec 003 §1)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from media_service.deps import PrincipalDep, SessionDep, StateDep
from media_service.errors import PayloadTooLarge, UnsupportedMediaType
from media_service.media.upload_source import MultipartSource, idle_limited
from media_service.versions.ai import AiVersions
from media_service.versions.creation import VersionMaker
from media_service.versions.modes import Edit
from media_service.versions.schemas import (
    AiVersionCreate,
    StyledVersionCreate,
    VersionCreate,
    VersionList,
    VersionOut,
    VersionRequested,
    inline_schema,
)
from media_service.versions.service import VersionService

router = APIRouter(prefix="/api/v1/media/photos", tags=["versions"])
MAX_JSON_BODY = 64 * 1024
_CREATE: TypeAdapter[StyledVersionCreate | AiVersionCreate] = TypeAdapter(VersionCreate)


async def version_service(session: SessionDep, state: StateDep) -> VersionService:
    return VersionService(session, state)


ServiceDep = Annotated[VersionService, Depends(version_service)]

_CREATE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inline_schema(_CREATE)},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "description": "An EDITED version: the edited image itself",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "version_type": {"type": "string", "enum": ["EDITED"]},
                        "version_name": {"type": "string", "maxLength": 255},
                        "set_current": {"type": "boolean"},
                    },
                }
            },
        },
    }
}
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {},
    403: {"description": "The caller may see the photo but not change it"},
    404: {"description": "No such photo or version (or not visible)"},
    409: {"description": "The original cannot be deleted; too many versions"},
    422: {"description": "Invalid body or parameters"},
}


@router.post(
    "/{photo_id}/versions",
    status_code=201,
    response_model=VersionOut,
    openapi_extra=_CREATE_BODY,
    responses={
        202: {"model": VersionRequested, "description": "An AI-enhanced version is queued"},
        408: {"description": "The body stopped arriving (MEDIA_UPLOAD_IDLE_TIMEOUT_SECONDS)"},
        413: {},
        415: {},
        503: {"description": "No AI service is configured, or the renderer failed"},
        **_PROBLEMS,
    },
)
async def create_version(
    photo_id: str, request: Request, response: Response, principal: PrincipalDep, state: StateDep
) -> Response | VersionOut:
    """Create a version: a built-in style (JSON, ``STYLED``, rendered now), an AI
    enhancement (JSON, ``AI_ENHANCED``, made by a job: 202), or an edited file
    (``multipart/form-data``, ``EDITED``)."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        stream = idle_limited(request.stream(), state.settings.upload_idle_timeout_seconds)
        upload = MultipartSource.from_content_type(stream, content_type, {})
        version = await VersionMaker(state).edited(principal, photo_id, upload)
    elif content_type.startswith("application/json"):
        body = await _create_body(request, state.settings.upload_idle_timeout_seconds)
        if isinstance(body, AiVersionCreate):
            queued = await AiVersions(state).request(principal, photo_id, body)
            location = {"Location": _location(photo_id, queued.version_id)}
            return JSONResponse(queued.model_dump(mode="json"), 202, headers=location)
        version = await VersionMaker(state).styled(principal, photo_id, body, _edit(body))
    else:
        raise UnsupportedMediaType(
            "send JSON (STYLED, AI_ENHANCED) or multipart/form-data (EDITED)"
        )
    response.headers["Location"] = _location(photo_id, version.version_id)
    return VersionOut.of(version)


@router.get("/{photo_id}/versions", response_model=VersionList, responses=_PROBLEMS)
async def list_versions(photo_id: str, principal: PrincipalDep, service: ServiceDep) -> VersionList:
    """Every version of the photo, oldest first; exactly one is current."""
    versions = await service.list(principal, photo_id)
    current = next((v.version_id for v in versions if v.is_current), None)
    return VersionList(
        photo_id=photo_id,
        current_version_id=current,
        items=[VersionOut.of(version) for version in versions],
    )


@router.get("/{photo_id}/versions/{version_id}", response_model=VersionOut, responses=_PROBLEMS)
async def get_version(
    photo_id: str, version_id: str, principal: PrincipalDep, service: ServiceDep
) -> VersionOut:
    """One version of the photo."""
    return VersionOut.of(await service.get(principal, photo_id, version_id))


@router.put(
    "/{photo_id}/versions/{version_id}/current", response_model=VersionOut, responses=_PROBLEMS
)
async def set_current_version(
    photo_id: str, version_id: str, principal: PrincipalDep, service: ServiceDep
) -> VersionOut:
    """Make the version the photo's current one (what downloads and renditions serve)."""
    return VersionOut.of(await service.set_current(principal, photo_id, version_id))


@router.delete("/{photo_id}/versions/{version_id}", status_code=204, responses=_PROBLEMS)
async def delete_version(
    photo_id: str, version_id: str, principal: PrincipalDep, service: ServiceDep
) -> Response:
    """Delete a version (not the original); if it was current, the original is again."""
    await service.delete(principal, photo_id, version_id)
    return Response(status_code=204)


async def _create_body(
    request: Request, idle_seconds: float
) -> StyledVersionCreate | AiVersionCreate:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_JSON_BODY:
        raise PayloadTooLarge(f"a JSON body may be at most {MAX_JSON_BODY} bytes")
    data = bytearray()
    async for chunk in idle_limited(request.stream(), idle_seconds):
        data += chunk
        if len(data) > MAX_JSON_BODY:
            raise PayloadTooLarge(f"a JSON body may be at most {MAX_JSON_BODY} bytes")
    try:
        return _CREATE.validate_json(bytes(data))
    except ValidationError as exc:
        raise _invalid(exc, "body") from None


def _edit(body: StyledVersionCreate) -> Edit:
    try:
        return body.edit()
    except ValidationError as exc:
        raise _invalid(exc, "body", "processing_params") from None


def _invalid(exc: ValidationError, *prefix: str) -> RequestValidationError:
    errors = [
        {"loc": (*prefix, *error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_input=False)
    ]
    return RequestValidationError(errors)


def _location(photo_id: str, version_id: str) -> str:
    return f"{router.prefix}/{photo_id}/versions/{version_id}"
