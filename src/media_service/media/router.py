"""HTTP endpoints of ``/api/v1/media/files``: HTTP concerns only, rules live in the service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from media_service.audit.models import AuditAction, AuditResource
from media_service.audit.router import AuditDep
from media_service.audit.service import Actor, request_actor
from media_service.deps import OptionalPrincipalDep, PrincipalDep, SessionDep, StateDep
from media_service.errors import BadRequest, PayloadTooLarge, Unauthorized
from media_service.media.content import content_response, etag_matches, file_etag
from media_service.media.ingest import normalise_sha256
from media_service.media.ranges import parse_range
from media_service.media.schemas import (
    ListFilters,
    MediaFileOut,
    MediaFilePage,
    MediaFilePatch,
    SignedUrlOut,
    SignedUrlRequest,
)
from media_service.media.service import MediaService
from media_service.media.upload_source import (
    MultipartSource,
    RawBodySource,
    UploadSource,
    idle_limited,
)
from media_service.media.uploads import UploadService
from media_service.versions.service import VersionService

router = APIRouter(prefix="/api/v1/media/files", tags=["files"])
MULTIPART_OVERHEAD = 64 * 1024
MAX_IDEMPOTENCY_KEY = 255


async def media_service(session: SessionDep, state: StateDep) -> MediaService:
    return MediaService(session, state)


ServiceDep = Annotated[MediaService, Depends(media_service)]


async def upload_service(session: SessionDep, state: StateDep) -> UploadService:
    return UploadService(session, state.blobs, state.settings)


UploadServiceDep = Annotated[UploadService, Depends(upload_service)]


async def version_service(session: SessionDep, state: StateDep) -> VersionService:
    return VersionService(session, state)


VersionServiceDep = Annotated[VersionService, Depends(version_service)]
MAX_VERSION_NUMBER = 2**31 - 1

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "owner_type": {
                            "type": "string",
                            "enum": ["Student", "ClassSession", "Teacher", "Other", "User"],
                        },
                        "owner_id": {"type": "string"},
                        "file_name": {"type": "string"},
                        "sha256": {"type": "string", "description": "hex SHA-256 of the file"},
                    },
                }
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "The raw file; owner_type, owner_id, file_name as query parameters.",
            },
        },
    },
    "parameters": [
        {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 255}},
        {
            "name": "X-Checksum-SHA256",
            "in": "header",
            "schema": {"type": "string"},
            "description": "SHA-256 of the file, hex or base64; a mismatch is refused with 400.",
        },
    ],
}


@router.post(
    "",
    status_code=201,
    response_model=MediaFileOut,
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"description": "The same bytes were already stored for this owner"},
        400: {},
        401: {},
        403: {},
        408: {"description": "The body stopped arriving (MEDIA_UPLOAD_IDLE_TIMEOUT_SECONDS)"},
        413: {},
        415: {},
        422: {},
    },
)
async def upload_file(
    request: Request, response: Response, principal: PrincipalDep, service: UploadServiceDep
) -> MediaFileOut:
    """Upload a file, streamed to storage (multipart form or raw body)."""
    _refuse_oversized(request, service.settings.max_upload_bytes)
    outcome = await service.upload(
        principal,
        _upload_source(request, service.settings.upload_idle_timeout_seconds),
        idempotency_key=_idempotency_key(request),
        expected_sha256=_expected_sha256(request),
    )
    response.status_code = outcome.status_code
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"{router.prefix}/{outcome.file.file_id}"
    return MediaFileOut.model_validate(outcome.file)


@router.get("", response_model=MediaFilePage)
async def list_files(
    principal: PrincipalDep, service: ServiceDep, filters: Annotated[ListFilters, Query()]
) -> MediaFilePage:
    """List the files the caller may see, newest first, with cursor pagination."""
    items, cursor = await service.list(principal, filters)
    return MediaFilePage(items=[MediaFileOut.model_validate(f) for f in items], next_cursor=cursor)


@router.get("/{file_id}", response_model=MediaFileOut, responses={404: {}})
async def get_file(
    file_id: str, principal: PrincipalDep, service: ServiceDep, audit: AuditDep
) -> MediaFileOut:
    """One file's record."""
    file = await service.get(principal, file_id)
    audit.record(Actor.of(principal), AuditAction.READ, file, AuditResource.FILE)
    return MediaFileOut.model_validate(file)


_CONTENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}},
    206: {},
    304: {},
    403: {},
    404: {},
    416: {},
}


@router.head("/{file_id}/content", operation_id="head_file_content", responses=_CONTENT_RESPONSES)
@router.get(
    "/{file_id}/content",
    operation_id="download_file_content",
    response_class=StreamingResponse,
    responses=_CONTENT_RESPONSES,
)
async def download_file(
    file_id: str,
    request: Request,
    principal: OptionalPrincipalDep,
    service: ServiceDep,
    versions: VersionServiceDep,
    audit: AuditDep,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION_NUMBER)] = None,
) -> Response:
    """The file's bytes, with Range, ETag and signed-URL support. A photo's current
    version is served unless ``version`` names one (1 is the original)."""
    query = dict(request.query_params)
    signed = "sig" in query
    if signed:
        # A signed URL covers the version it names, so it cannot be turned into another.
        path = request.url.path if version is None else f"{request.url.path}?version={version}"
        file = await service.get_signed(file_id, request.method, path, query)
    elif principal is not None:
        file = await service.get(principal, file_id)
    else:
        raise Unauthorized()
    file = await versions.served_file(file, version)
    headers = request.headers
    if etag_matches(headers.get("if-none-match"), file_etag(file)):
        return Response(status_code=304, headers={"ETag": file_etag(file)})
    byte_range = None
    if_range = headers.get("if-range")
    if if_range is None or if_range == file_etag(file):
        byte_range = parse_range(headers.get("range"), file.file_size)
    body: AsyncIterator[bytes] | None = None
    if request.method == "GET":  # HEAD and 304 send no content: not a read
        body = service.content(file, byte_range)
        detail = {"version": version, "partial": byte_range is not None}
        actor = request_actor(principal, query)
        audit.record(actor, AuditAction.READ, file, AuditResource.CONTENT, detail=detail)
    expires = int(query["exp"]) if signed else None
    return await content_response(file, body, byte_range, signed_expiry=expires)


@router.post("/{file_id}/signed-url", response_model=SignedUrlOut, responses={404: {}, 422: {}})
async def create_signed_url(
    file_id: str,
    request: Request,
    principal: PrincipalDep,
    service: ServiceDep,
    state: StateDep,
    body: Annotated[SignedUrlRequest | None, Body()] = None,
) -> SignedUrlOut:
    """A download URL that works without a bearer token until it expires."""
    path = f"{router.prefix}/{file_id}/content"
    signed = await service.sign_url(principal, file_id, path, body.expires_in if body else None)
    base = (state.settings.public_url or str(request.base_url)).rstrip("/")
    return SignedUrlOut(url=base + signed.path_and_query, expires_at=signed.expires_at)


@router.patch("/{file_id}", response_model=MediaFileOut, responses={403: {}, 404: {}, 422: {}})
async def update_file(
    file_id: str, patch: MediaFilePatch, principal: PrincipalDep, service: ServiceDep
) -> MediaFileOut:
    """Change the processed flag (services) or the owner and name (writers)."""
    return MediaFileOut.model_validate(await service.update(principal, file_id, patch))


@router.delete("/{file_id}", status_code=204, responses={403: {}, 404: {}})
async def delete_file(file_id: str, principal: PrincipalDep, service: ServiceDep) -> Response:
    """Delete the file: its record now, its stored bytes right after."""
    await service.delete(principal, file_id)
    return Response(status_code=204)


def _upload_source(request: Request, idle_seconds: float) -> UploadSource:
    content_type = request.headers.get("content-type", "")
    query = dict(request.query_params)
    body = idle_limited(request.stream(), idle_seconds)
    if content_type.lower().startswith("multipart/form-data"):
        return MultipartSource.from_content_type(body, content_type, query)
    return RawBodySource(body, query, query.get("file_name"))


def _refuse_oversized(request: Request, limit: int) -> None:
    """Refuse before reading a byte when Content-Length already says it is too large."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(f"uploads may be at most {limit} bytes")


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable() or not key.isascii():
        raise BadRequest("Idempotency-Key must be 1-255 printable ASCII characters")
    return key


def _expected_sha256(request: Request) -> str | None:
    value = request.headers.get("x-checksum-sha256")
    return None if value is None else normalise_sha256(value)
