"""HTTP endpoints of ``/api/v1/media/frames`` and ``/api/v1/media/schedules``: HTTP
concerns only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from media_service.db.base import utcnow
from media_service.db.uow import unit_of_work
from media_service.deps import PrincipalDep, SessionDep, StateDep
from media_service.frames.feed import FeedService
from media_service.frames.schedules import ScheduleService
from media_service.frames.schemas import (
    Feed,
    FrameCreate,
    FrameOut,
    FramePage,
    FrameSchedules,
    FrameTokenOut,
    FrameTokenRequest,
    FrameUpdate,
    ScheduleCreate,
    ScheduleOut,
    SchedulePhotos,
    ScheduleUpdate,
)
from media_service.frames.service import FrameService
from media_service.instants import Instant
from media_service.media.content import etag_matches

frames = APIRouter(prefix="/api/v1/media/frames", tags=["frames"])
schedules = APIRouter(prefix="/api/v1/media/schedules", tags=["schedules"])
MAX_PHOTOS_SHOWN = 1000
At = Annotated[
    Instant | None,
    Query(description="Evaluate at this instant instead of now (preview; 1970-2199)"),
]


async def frame_service(session: SessionDep, state: StateDep) -> FrameService:
    return FrameService(session, state)


async def schedule_service(session: SessionDep, state: StateDep) -> ScheduleService:
    return ScheduleService(session, state)


FramesDep = Annotated[FrameService, Depends(frame_service)]
SchedulesDep = Annotated[ScheduleService, Depends(schedule_service)]


# -- frames --------------------------------------------------------------------------------------


@frames.post("", status_code=201, response_model=FrameOut, responses={403: {}, 422: {}})
async def create_frame(body: FrameCreate, principal: PrincipalDep, service: FramesDep) -> FrameOut:
    """Register a frame: its name, time zone and screen."""
    return FrameOut.model_validate(await service.create(principal, body))


@frames.get("", response_model=FramePage)
async def list_frames(principal: PrincipalDep, service: FramesDep) -> FramePage:
    """The frames the caller may see."""
    rows = await service.list_frames(principal)
    return FramePage(items=[FrameOut.model_validate(row) for row in rows])


@frames.get("/{frame_id}", response_model=FrameOut, responses={404: {}})
async def get_frame(frame_id: str, principal: PrincipalDep, service: FramesDep) -> FrameOut:
    """A frame."""
    return FrameOut.model_validate(await service.readable(principal, frame_id))


@frames.put("/{frame_id}", response_model=FrameOut, responses={403: {}, 404: {}, 422: {}})
async def update_frame(
    frame_id: str, body: FrameUpdate, principal: PrincipalDep, service: FramesDep
) -> FrameOut:
    """Change a frame's name, time zone or screen."""
    return FrameOut.model_validate(await service.update(principal, frame_id, body))


@frames.delete("/{frame_id}", status_code=204, responses={403: {}, 404: {}})
async def delete_frame(frame_id: str, principal: PrincipalDep, service: FramesDep) -> Response:
    """Remove a frame with its schedules and cache."""
    await service.delete(principal, frame_id)
    return Response(status_code=204)


@frames.post(
    "/{frame_id}/token", status_code=201, response_model=FrameTokenOut, responses={403: {}, 404: {}}
)
async def issue_frame_token(
    frame_id: str,
    principal: PrincipalDep,
    service: FramesDep,
    body: FrameTokenRequest | None = None,
) -> FrameTokenOut:
    """A device token that reads only this frame's schedule, feed and cached photos (a
    body is optional: ``{"ttl_days": N}``, 365 by default)."""
    ttl_days = (body or FrameTokenRequest()).ttl_days
    return await service.issue_token(principal, frame_id, ttl_days)


@frames.delete("/{frame_id}/token", status_code=204, responses={403: {}, 404: {}})
async def revoke_frame_tokens(
    frame_id: str, principal: PrincipalDep, service: FramesDep
) -> Response:
    """Revoke every device token issued for this frame so far (a lost or stolen frame);
    ``POST …/token`` issues a new one that works."""
    await service.revoke_tokens(principal, frame_id)
    return Response(status_code=204)


# -- schedules -----------------------------------------------------------------------------------


@schedules.post("", status_code=201, response_model=ScheduleOut, responses={403: {}, 422: {}})
async def create_schedule(
    body: ScheduleCreate, principal: PrincipalDep, service: SchedulesDep
) -> ScheduleOut:
    """Add a rotation schedule to a frame."""
    return ScheduleOut.model_validate(await service.create(principal, body))


@schedules.get("/frame/{frame_id}", response_model=FrameSchedules, responses={404: {}})
async def get_frame_schedules(
    frame_id: str, principal: PrincipalDep, service: SchedulesDep, at: At = None
) -> FrameSchedules:
    """A frame's schedules and the one it follows now (or at ``at``)."""
    return await service.for_frame(principal, frame_id, at or utcnow())


@schedules.get("/{schedule_id}", response_model=ScheduleOut, responses={404: {}})
async def get_schedule(
    schedule_id: str, principal: PrincipalDep, service: SchedulesDep
) -> ScheduleOut:
    """A schedule."""
    return ScheduleOut.model_validate(await service.readable(principal, schedule_id))


@schedules.put("/{schedule_id}", response_model=ScheduleOut, responses={403: {}, 404: {}, 422: {}})
async def update_schedule(
    schedule_id: str, body: ScheduleUpdate, principal: PrincipalDep, service: SchedulesDep
) -> ScheduleOut:
    """Change a schedule (checked as a whole after the change)."""
    return ScheduleOut.model_validate(await service.update(principal, schedule_id, body))


@schedules.delete("/{schedule_id}", status_code=204, responses={403: {}, 404: {}})
async def delete_schedule(
    schedule_id: str, principal: PrincipalDep, service: SchedulesDep
) -> Response:
    """Delete a schedule."""
    await service.delete(principal, schedule_id)
    return Response(status_code=204)


@schedules.get("/{schedule_id}/photos", response_model=SchedulePhotos, responses={404: {}})
async def get_schedule_photos(
    schedule_id: str,
    principal: PrincipalDep,
    service: SchedulesDep,
    at: At = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PHOTOS_SHOWN)] = 100,
) -> SchedulePhotos:
    """The schedule's photos in this cycle's order (shuffled without repeats when asked)."""
    when: datetime = at or utcnow()
    showing = await service.photos(principal, schedule_id, when)
    schedule = showing.schedule
    assert schedule is not None
    return SchedulePhotos(
        schedule_id=schedule.schedule_id,
        frame_id=schedule.frame_id,
        playlist_id=schedule.playlist_id,
        at=when,
        active=showing.state.schedule_id == schedule.schedule_id,
        cycle=showing.cycle,
        current_index=showing.index,
        next_photo_at=showing.next_photo_at,
        rotation_interval=schedule.rotation_interval,
        photo_count=len(showing.photos),
        photo_ids=[row.photo_id for row in showing.photos[:limit]],
    )


@frames.get(
    "/{frame_id}/feed",
    response_model=Feed,
    responses={304: {"description": "Unchanged since the ETag sent"}, 404: {}},
)
async def get_frame_feed(
    frame_id: str,
    request: Request,
    principal: PrincipalDep,
    state: StateDep,
    at: At = None,
) -> Response:
    """What the frame shows now: the active schedule's photos with one URL each, or sleep
    until the next schedule starts. Send ``If-None-Match`` to get 304 while unchanged."""
    # The transaction is opened here rather than by a session dependency: every frame
    # polls this route, and resolving the dependency chain (a generator dependency among
    # them) was a third of a kept feed's CPU. A read session: a poll writes nothing (the
    # last-seen time is written apart), so on SQLite it takes no write lock.
    async with unit_of_work(state.read_sessions) as session:
        service = FeedService(session, state)
        preview = at is not None
        body, etag = await service.feed(principal, frame_id, at or utcnow(), preview=preview)
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
