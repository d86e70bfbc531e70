"""HTTP endpoints of ``/api/v1/media/playlists``: HTTP concerns only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from media_service.deps import PrincipalDep, SessionDep, StateDep
from media_service.playlists.models import PlaylistType
from media_service.playlists.schemas import (
    PhotoIds,
    PhotoOrder,
    PlaylistCreate,
    PlaylistItemPage,
    PlaylistOut,
    PlaylistPage,
    PlaylistUpdate,
)
from media_service.playlists.service import PlaylistService

router = APIRouter(prefix="/api/v1/media/playlists", tags=["playlists"])
MAX_PAGE = 200
MAX_ITEMS_PAGE = 500


async def playlist_service(session: SessionDep, state: StateDep) -> PlaylistService:
    return PlaylistService(session, state)


ServiceDep = Annotated[PlaylistService, Depends(playlist_service)]


@router.post("", status_code=201, response_model=PlaylistOut, responses={403: {}, 422: {}})
async def create_playlist(
    body: PlaylistCreate, principal: PrincipalDep, service: ServiceDep
) -> PlaylistOut:
    """Create a playlist (MANUAL, SMART or AI_CURATED), filled at once."""
    return await service.create(principal, body)


@router.get("", response_model=PlaylistPage, responses={422: {}})
async def list_playlists(
    principal: PrincipalDep,
    service: ServiceDep,
    playlist_type: PlaylistType | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> PlaylistPage:
    """The caller's playlists and those shared with them, newest first."""
    return await service.list_playlists(principal, playlist_type, cursor, limit)


@router.get("/{playlist_id}", response_model=PlaylistOut, responses={404: {}})
async def get_playlist(
    playlist_id: str, principal: PrincipalDep, service: ServiceDep
) -> PlaylistOut:
    """A playlist with its first photos in playing order."""
    return await service.get(principal, playlist_id)


@router.put("/{playlist_id}", response_model=PlaylistOut, responses={403: {}, 404: {}, 422: {}})
async def update_playlist(
    playlist_id: str, body: PlaylistUpdate, principal: PrincipalDep, service: ServiceDep
) -> PlaylistOut:
    """Change a playlist's settings, criteria or curation goal."""
    return await service.update(principal, playlist_id, body)


@router.delete("/{playlist_id}", status_code=204, responses={403: {}, 404: {}})
async def delete_playlist(
    playlist_id: str, principal: PrincipalDep, service: ServiceDep
) -> Response:
    """Delete a playlist."""
    await service.delete(principal, playlist_id)
    return Response(status_code=204)


@router.post(
    "/{playlist_id}/refresh",
    response_model=PlaylistOut,
    responses={403: {}, 404: {}, 409: {}},
)
async def refresh_playlist(
    playlist_id: str, principal: PrincipalDep, service: ServiceDep
) -> PlaylistOut:
    """Evaluate a smart playlist again over every photo, or curate a curated one again."""
    return await service.refresh(principal, playlist_id)


@router.get("/{playlist_id}/photos", response_model=PlaylistItemPage, responses={404: {}, 422: {}})
async def list_playlist_photos(
    playlist_id: str,
    principal: PrincipalDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=MAX_ITEMS_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> PlaylistItemPage:
    """A playlist's photos in playing order, each with why it is there."""
    return await service.photos(principal, playlist_id, cursor, limit)


@router.post(
    "/{playlist_id}/photos",
    response_model=PlaylistOut,
    responses={403: {}, 404: {}, 409: {}, 422: {}},
)
async def add_playlist_photos(
    playlist_id: str, body: PhotoIds, principal: PrincipalDep, service: ServiceDep
) -> PlaylistOut:
    """Add photos to a manual playlist (appended in the order given)."""
    return await service.add_photos(principal, playlist_id, body.photo_ids)


@router.put(
    "/{playlist_id}/photos",
    response_model=PlaylistOut,
    responses={403: {}, 404: {}, 409: {}, 422: {}},
)
async def reorder_playlist_photos(
    playlist_id: str, body: PhotoOrder, principal: PrincipalDep, service: ServiceDep
) -> PlaylistOut:
    """Reorder a manual playlist: every one of its photos, once each, in the new order."""
    return await service.reorder(principal, playlist_id, body.photo_ids)


@router.delete(
    "/{playlist_id}/photos/{photo_id}", status_code=204, responses={403: {}, 404: {}, 409: {}}
)
async def remove_playlist_photo(
    playlist_id: str, photo_id: str, principal: PrincipalDep, service: ServiceDep
) -> Response:
    """Remove one photo from a manual playlist."""
    await service.remove_photo(principal, playlist_id, photo_id)
    return Response(status_code=204)
