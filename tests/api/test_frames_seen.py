"""Frames' last-seen times: noted by polls, written in batches (``frames/seen.py``)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select, update
from test_frames import FRAMES, device, new_frame, owner

from media_service.db.base import utcnow
from media_service.db.uow import unit_of_work
from media_service.frames.models import Frame
from media_service.frames.seen import SeenFrames

from conftest import Stack


async def stored(stack: Stack, frame_id: str) -> datetime | None:
    async with unit_of_work(stack.state.sessions) as session:
        found = await session.execute(select(Frame.last_seen_at).where(Frame.frame_id == frame_id))
        return found.scalar_one()


async def poll(client: httpx.AsyncClient, stack: Stack, frame_id: str) -> None:
    response = await client.get(f"{FRAMES}/{frame_id}/feed", headers=device(stack, frame_id))
    assert response.status_code == 200, response.text


async def test_polls_are_noted_and_written_in_one_batch(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    frames = [await new_frame(client, owner(stack)) for _ in range(3)]
    await stack.state.seen.stop()  # no round in the middle of this test: it writes by hand
    try:
        before = utcnow()
        for frame_id in frames:
            await poll(client, stack, frame_id)
            # The poll's transaction wrote nothing: the time waits in memory.
            assert stack.state.seen.noted(frame_id) is not None
            assert await stored(stack, frame_id) is None
        assert await stack.state.seen.flush() == 3
        for frame_id in frames:
            seen = await stored(stack, frame_id)
            assert seen is not None and before <= seen <= utcnow()
            assert stack.state.seen.noted(frame_id) is None
        # Polls within the resolution (a minute) note nothing more.
        await poll(client, stack, frames[0])
        assert stack.state.seen.noted(frames[0]) is None
    finally:
        stack.state.seen.start()


async def test_a_note_older_than_the_stored_time_changes_nothing(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    frame_id = await new_frame(client, owner(stack))
    later = utcnow() + timedelta(minutes=5)  # written by another process meanwhile
    async with unit_of_work(stack.state.sessions) as session:
        await session.execute(
            update(Frame).where(Frame.frame_id == frame_id).values(last_seen_at=later)
        )
    seen = SeenFrames(stack.state.sessions)
    seen.note(frame_id, utcnow())
    assert await seen.flush() == 1
    assert await stored(stack, frame_id) == later
    newest = later + timedelta(seconds=1)
    seen.note(frame_id, newest)
    await seen.flush()
    assert await stored(stack, frame_id) == newest


async def test_the_loop_writes_within_its_interval_and_at_stop(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    first, second = [await new_frame(client, owner(stack)) for _ in range(2)]
    at = utcnow()
    seen = SeenFrames(stack.state.sessions, interval=0.05)
    seen.start()
    try:
        seen.note(first, at)
        async with asyncio.timeout(10):
            while await stored(stack, first) is None:
                await asyncio.sleep(0.02)
        assert await stored(stack, first) == at
    finally:
        await seen.stop()
    idle = SeenFrames(stack.state.sessions, interval=3600)  # no round before the stop
    idle.start()
    idle.note(second, at)
    await idle.stop()
    assert await stored(stack, second) == at
