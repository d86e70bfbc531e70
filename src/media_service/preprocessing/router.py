"""HTTP endpoints of the preprocessing engine, under ``/api/v1/media/files/{file_id}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from media_service.audit.models import AuditAction, AuditResource
from media_service.audit.router import AuditDep
from media_service.audit.service import (
    Actor,
    AuditTrail,
    DetailValue,
    is_audited,
    request_actor,
)
from media_service.db.uow import unit_of_work
from media_service.deps import OptionalPrincipalDep, PrincipalDep, StateDep
from media_service.errors import Unauthorized
from media_service.imaging.specs import Fit, OutputFormat
from media_service.media.content import etag_matches
from media_service.media.models import MediaFile
from media_service.media.schemas import SignedUrlOut
from media_service.preprocessing.models import MediaAnalysis, StoredRendition
from media_service.preprocessing.params import AUTO, RenditionParams, check_params
from media_service.preprocessing.schemas import (
    AnalysisOut,
    FaceOut,
    FacesOut,
    PreprocessingOut,
    RenditionOut,
    RenditionSignRequest,
)
from media_service.preprocessing.service import (
    PreprocessingService,
    RenditionBody,
    rendition_query,
)

PREFIX = "/api/v1/media/files"
router = APIRouter(prefix=PREFIX, tags=["renditions"])
CACHE_MAX_AGE = 86_400  # renditions of an immutable original never change
_PROBLEMS: dict[int | str, dict[str, str]] = {
    404: {"description": "No such file (or not visible)"},
    409: {"description": "Not processed yet; retry after Retry-After"},
    422: {"description": "Invalid parameters, or a source that cannot be rendered"},
}
FormatName = Annotated[str, Query(pattern="^(jpeg|webp|avif|png|auto)$")]
_LISTING: dict[str, DetailValue] = {"listing": True}
VersionNumber = Annotated[int | None, Query(ge=1, le=2**31 - 1, description="A photo version")]


async def preprocessing_service(state: StateDep) -> PreprocessingService:
    return PreprocessingService(state)


ServiceDep = Annotated[PreprocessingService, Depends(preprocessing_service)]


@router.get("/{file_id}/renditions", response_model=PreprocessingOut, responses=_PROBLEMS)
async def get_preprocessing(
    file_id: str, principal: PrincipalDep, service: ServiceDep, audit: AuditDep
) -> PreprocessingOut:
    """What preprocessing made of the file: its analysis and stored renditions."""
    file = await service.visible_file(principal, file_id)
    analysis, renditions = await service.describe(file)
    audit.record(
        Actor.of(principal), AuditAction.READ, file, AuditResource.RENDITION, detail=_LISTING
    )
    return PreprocessingOut(
        file_id=file.file_id,
        processed=file.processed,
        processed_at=file.processed_at,
        analysis=_analysis_out(analysis),
        renditions=[_rendition_out(row) for row in renditions],
    )


@router.get("/{file_id}/renditions/{name}", response_class=Response, responses=_PROBLEMS)
async def get_stored_rendition(
    file_id: str,
    name: str,
    request: Request,
    principal: PrincipalDep,
    service: ServiceDep,
    audit: AuditDep,
    version: VersionNumber = None,
) -> Response:
    """A stored rendition's bytes (``thumbnail``: WebP, ``preview``: JPEG), of the
    photo's current version unless ``version`` names one."""
    file = await service.served(await service.visible_file(principal, file_id), version)
    body = await service.stored_rendition(file, name)
    response = _image_response(body, request)
    detail = {"name": name, "version": version}
    _audit_read(audit, response, Actor.of(principal), file, AuditResource.RENDITION, detail)
    return response


@router.get("/{file_id}/rendition", response_class=Response, responses=_PROBLEMS)
async def get_rendition(
    file_id: str,
    request: Request,
    principal: OptionalPrincipalDep,
    state: StateDep,
    width: Annotated[int | None, Query(ge=1)] = None,
    height: Annotated[int | None, Query(ge=1)] = None,
    fit: Fit = Fit.CONTAIN,
    format: FormatName = AUTO,
    quality: Annotated[int | None, Query(ge=1, le=100)] = None,
    version: VersionNumber = None,
) -> Response:
    """The image (or a video's or PDF's poster) at any size, rendered once and kept.

    ``format=auto`` (the default) picks WebP when ``Accept`` allows it, else JPEG (PNG for
    images with transparency). Works with a bearer token or as a signed URL. A photo's
    current version is rendered unless ``version`` names one.
    """
    params = check_params(
        RenditionParams(width, height, fit, format, quality), state.settings.max_rendition_side
    )
    # Services and the audit's session are made here, not by dependencies: frames and
    # pages ask for stored renditions many times a second, and resolving the dependency
    # chain (a session generator among it) cost about as much as the endpoint's own work
    # (py-spy: 12% against 10% of a warm request's samples).
    service = PreprocessingService(state)
    file = await _authorised_file(file_id, request, principal, service, params, version)
    file = await service.served(file, version)
    body = await service.rendition(file, params, request.headers.get("accept"))
    response = _image_response(body, request)
    if format == AUTO:
        response.headers["Vary"] = "Accept"
    if response.status_code == 200 and is_audited(file.owner_type):
        # Only then a unit of work: without the empty one, a warm request's server CPU
        # went from 1.21–1.42 to 0.84–0.91 ms (three runs each).
        actor = request_actor(principal, dict(request.query_params))
        detail = {**_rendition_detail(params), "version": version}
        async with unit_of_work(state.sessions) as session:
            _audit_read(AuditTrail(session), response, actor, file, AuditResource.RENDITION, detail)
    return response


@router.post("/{file_id}/rendition/signed-url", response_model=SignedUrlOut, responses=_PROBLEMS)
async def sign_rendition(
    file_id: str,
    body: RenditionSignRequest,
    request: Request,
    principal: PrincipalDep,
    service: ServiceDep,
    state: StateDep,
) -> SignedUrlOut:
    """A rendition URL that works without a bearer token until it expires."""
    params = check_params(
        RenditionParams(body.width, body.height, body.fit, body.format, body.quality),
        state.settings.max_rendition_side,
    )
    path = f"{PREFIX}/{file_id}/rendition?{params.signed_query()}"
    signed = await service.sign_url(
        principal, file_id, path, body.expires_in, _rendition_detail(params)
    )
    base = (state.settings.public_url or str(request.base_url)).rstrip("/")
    return SignedUrlOut(url=base + signed.path_and_query, expires_at=signed.expires_at)


@router.get("/{file_id}/faces", response_model=FacesOut, responses=_PROBLEMS)
async def get_faces(
    file_id: str, principal: PrincipalDep, service: ServiceDep, audit: AuditDep
) -> FacesOut:
    """Faces found in the image: boxes, confidence and eye points (detected on first ask)."""
    file = await service.visible_file(principal, file_id)
    faces = await service.faces(file)
    detail = {"count": len(faces)}
    audit.record(Actor.of(principal), AuditAction.READ, file, AuditResource.FACES, detail=detail)
    return FacesOut(
        file_id=file.file_id,
        count=len(faces),
        faces=[
            FaceOut.of(index, face, f"{PREFIX}/{file.file_id}/faces/{index}")
            for index, face in enumerate(faces)
        ],
    )


@router.get("/{file_id}/faces/{index}", response_class=Response, responses=_PROBLEMS)
async def get_face_crop(
    file_id: str,
    request: Request,
    principal: PrincipalDep,
    service: ServiceDep,
    audit: AuditDep,
    index: Annotated[int, Path(ge=0, le=1000)],
    size: Annotated[int, Query(ge=32, le=1024)] = 224,
    format: Annotated[str, Query(pattern="^(jpeg|png|webp)$")] = "jpeg",
) -> Response:
    """Face ``index`` aligned by its eyes (level, fixed distance), as a square image."""
    file = await service.visible_file(principal, file_id)
    body = await service.face_crop(file, index, size, OutputFormat(format))
    response = _image_response(body, request)
    detail = {"index": index, "size": size}
    _audit_read(audit, response, Actor.of(principal), file, AuditResource.FACE_CROP, detail)
    return response


async def _authorised_file(
    file_id: str,
    request: Request,
    principal: OptionalPrincipalDep,
    service: PreprocessingService,
    params: RenditionParams,
    version: int | None,
) -> MediaFile:
    query = dict(request.query_params)
    if "sig" in query:
        # The signature covers the version too, when one is named.
        signed_path = f"{request.url.path}?{rendition_query(params, version)}"
        return await service.signed_file(file_id, request.method, signed_path, query)
    if principal is None:
        raise Unauthorized()
    return await service.visible_file(principal, file_id)


def _audit_read(
    audit: AuditTrail,
    response: Response,
    actor: Actor,
    file: MediaFile,
    resource: AuditResource,
    detail: Mapping[str, DetailValue],
) -> None:
    # A 304 sends no image: the client shows the copy whose fetch was recorded.
    if response.status_code == 200:
        audit.record(actor, AuditAction.READ, file, resource, detail=detail)


def _rendition_detail(params: RenditionParams) -> dict[str, DetailValue]:
    return {
        "width": params.width,
        "height": params.height,
        "fit": params.fit.value,
        "format": params.format,
        "quality": params.quality,
    }


def _image_response(body: RenditionBody, request: Request) -> Response:
    headers = {
        "ETag": body.etag,
        "Cache-Control": f"private, max-age={CACHE_MAX_AGE}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    if etag_matches(request.headers.get("if-none-match"), body.etag):
        return Response(status_code=304, headers=headers)
    return Response(body.data, media_type=body.content_type, headers=headers)


def _rendition_out(row: StoredRendition) -> RenditionOut:
    return RenditionOut(
        name=row.name,
        content_type=row.content_type,
        width=row.width,
        height=row.height,
        byte_size=row.byte_size,
        quality=row.quality,
        url=f"{PREFIX}/{row.file_id}/renditions/{row.name}",
    )


def _analysis_out(row: MediaAnalysis | None) -> AnalysisOut | None:
    return None if row is None else AnalysisOut.model_validate(row, from_attributes=True)
