"""HTTP endpoints of ``/api/v1/media/cache`` (spec 003 §5): HTTP concerns only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from media_service.deps import PrincipalDep, SessionDep, StateDep
from media_service.frames.cache import CacheService
from media_service.frames.cache_schemas import CacheCreate, CacheOut, FrameCache
from media_service.media.content import etag_matches

router = APIRouter(prefix="/api/v1/media/cache", tags=["cache"])


async def cache_service(session: SessionDep, state: StateDep) -> CacheService:
    return CacheService(session, state)


CacheDep = Annotated[CacheService, Depends(cache_service)]


@router.post("", status_code=201, response_model=CacheOut, responses={422: {}})
async def create_cache_entry(
    body: CacheCreate, principal: PrincipalDep, service: CacheDep
) -> CacheOut:
    """Ask for a photo to be cached for a frame; a pre-cache run downloads it."""
    entry = await service.create(principal, body.frame_id, body.photo_id)
    return CacheOut.model_validate(entry)


@router.get("/frame/{frame_id}", response_model=FrameCache, responses={404: {}})
async def get_cached_photos(
    frame_id: str, principal: PrincipalDep, service: CacheDep
) -> FrameCache:
    """A frame's cache entries, most recently used first."""
    entries = await service.frame_entries(principal, frame_id)
    return FrameCache(frame_id=frame_id, items=[CacheOut.model_validate(e) for e in entries])


@router.get("/{cache_id}", response_model=CacheOut, responses={404: {}})
async def get_cache_entry(cache_id: str, principal: PrincipalDep, service: CacheDep) -> CacheOut:
    """A cache entry."""
    return CacheOut.model_validate(await service.readable(principal, cache_id))


@router.delete("/{cache_id}", status_code=204, responses={403: {}, 404: {}})
async def delete_cache_entry(cache_id: str, principal: PrincipalDep, service: CacheDep) -> Response:
    """Remove a cache entry and its file."""
    await service.delete(principal, cache_id)
    return Response(status_code=204)


@router.put("/{cache_id}/hit", status_code=204, responses={404: {}})
async def record_cache_hit(cache_id: str, principal: PrincipalDep, service: CacheDep) -> Response:
    """Record that the frame showed this photo (a hit when it was cached, else a miss)."""
    await service.hit(principal, cache_id)
    return Response(status_code=204)


@router.get(
    "/{cache_id}/content",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 304: {}, 404: {}, 409: {}},
)
async def get_cached_content(
    cache_id: str, request: Request, principal: PrincipalDep, service: CacheDep
) -> Response:
    """The cached frame-sized JPEG (the entry's ``cached_url``)."""
    data, etag = await service.content(principal, cache_id)
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="image/jpeg", headers=headers)
