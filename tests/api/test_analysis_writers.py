"""The two writers of a file's ``media_analysis`` row at once, on both stacks: saving
detected faces (``GET /faces`` on first ask, and the analyse job) and the preprocess job.
Each may find no row and insert the first one; whichever commits second must add to that
row rather than fail on its primary key (a 500 for the request, a failed attempt for the
job).

Each test holds one writer's transaction open, after its row is written, until the
other writer waits behind it: on PostgreSQL, until the other's statement on
``media_analysis`` is blocked by the first's backend (``pg_blocking_pids``); SQLite lets
one writer in at a time, so there the second waits at its ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Role
from media_service.db.uow import unit_of_work
from media_service.media.models import MediaFile
from media_service.preprocessing import pipeline
from media_service.preprocessing.models import MediaAnalysis
from media_service.preprocessing.service import PreprocessingService

from conftest import Stack

ORG = "org_writers"
FILES = "/api/v1/media/files"


def owner(stack: Stack) -> dict[str, str]:
    return stack.auth("teacher-1", ORG, Role.TEACHER)


async def astronaut(client: httpx.AsyncClient, stack: Stack) -> MediaFile:
    """A real photo with a face (NASA, public domain), uploaded; its record. Preprocessing
    is off in this module: the tests run both writers themselves."""
    from skimage import data as samples

    buffer = io.BytesIO()
    Image.fromarray(samples.astronaut()).save(buffer, "PNG")
    response = await client.post(
        FILES,
        headers=owner(stack),
        files={"file": ("a.png", buffer.getvalue(), "image/png")},
        data={"owner_type": "Teacher", "owner_id": "teacher-1"},
    )
    assert response.status_code == 201, response.text
    file = await PreprocessingService(stack.state).file_for_job(response.json()["file_id"])
    assert file is not None
    return file


async def waited_for(stack: Stack, holder: AsyncSession, other: asyncio.Task[Any]) -> None:
    """Until another transaction writing ``media_analysis`` waits for ``holder``'s
    (PostgreSQL); on SQLite, a moment for the other writer to reach its BEGIN IMMEDIATE,
    which waits for ``holder``'s write lock."""
    if stack.state.engine.dialect.name != "postgresql":
        await asyncio.sleep(0.3)
        return
    pid = await holder.scalar(text("SELECT pg_backend_pid()"))
    # The waiter is known by its lock on media_analysis (taken when its INSERT starts), not
    # by pg_stat_activity.query: with asyncpg that can show an earlier statement.
    waiting = text(
        "SELECT count(*) FROM pg_locks WHERE relation = 'media_analysis'::regclass"
        " AND mode = 'RowExclusiveLock' AND granted AND pid <> :pid"
        " AND :pid = ANY(pg_blocking_pids(pid))"
    )
    async with stack.state.sessions() as watcher, asyncio.timeout(60):
        while not await watcher.scalar(waiting, {"pid": pid}):
            assert not other.done(), "the second writer finished without waiting"
            await asyncio.sleep(0.02)


async def stored(stack: Stack, file_id: str) -> MediaAnalysis:
    async with stack.state.sessions() as session:
        rows = select(func.count()).select_from(MediaAnalysis)
        assert await session.scalar(rows.where(MediaAnalysis.file_id == file_id)) == 1
        row = await session.get(MediaAnalysis, file_id)
    assert row is not None
    return row


def assert_analysed(row: MediaAnalysis, outcome: pipeline.Preprocessed) -> None:
    """The preprocess job's part of the row."""
    assert row.status == "done" and row.error is None
    assert (row.width, row.height) == (outcome.width, outcome.height) == (512, 512)
    assert row.source_format == outcome.source_format


async def test_faces_asked_for_while_the_preprocess_job_writes_the_analysis(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    file = await astronaut(client, stack)
    service = PreprocessingService(stack.state)
    outcome = await service.preprocess(file)
    detections = stack.state.render_counts["faces"]
    async with unit_of_work(stack.state.sessions) as job:
        assert await service.record(job, file, outcome)
        await job.flush()  # the job's row is written, not yet committed
        asking = asyncio.create_task(
            client.get(f"{FILES}/{file.file_id}/faces", headers=owner(stack))
        )
        async with asyncio.timeout(60):  # detection runs with no transaction open
            while stack.state.render_counts["faces"] == detections and not asking.done():
                await asyncio.sleep(0.02)
        await waited_for(stack, job, asking)
    response = await asking
    assert response.status_code == 200, response.text
    faces = response.json()["faces"]
    assert len(faces) >= 1

    row = await stored(stack, file.file_id)
    assert_analysed(row, outcome)
    assert row.faces is not None and len(row.faces) == len(faces)
    assert row.faces_detected_at is not None
    # Served from the row from now on: no second detection, the same faces.
    again = await client.get(f"{FILES}/{file.file_id}/faces", headers=owner(stack))
    assert again.status_code == 200 and again.json()["faces"] == faces
    assert stack.state.render_counts["faces"] == detections + 1
    renditions = await client.get(f"{FILES}/{file.file_id}/renditions", headers=owner(stack))
    assert renditions.json()["analysis"]["status"] == "done"


async def test_the_preprocess_job_writes_while_detected_faces_are_saved(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    file = await astronaut(client, stack)
    service = PreprocessingService(stack.state)
    outcome = await service.preprocess(file)
    faces = await service.detect_faces(file)
    assert faces

    async def preprocess_job() -> bool:
        async with unit_of_work(stack.state.sessions) as session:
            return await service.record(session, file, outcome)

    async with unit_of_work(stack.state.sessions) as saving:
        await service.save_faces(saving, file.file_id, faces)
        await saving.flush()  # the first row, with the faces, not yet committed
        recording = asyncio.create_task(preprocess_job())
        await waited_for(stack, saving, recording)
    assert await recording is True

    row = await stored(stack, file.file_id)
    assert_analysed(row, outcome)
    assert row.faces == [face.to_dict() for face in faces]
    assert row.faces_detected_at is not None
    detections = stack.state.render_counts["faces"]
    response = await client.get(f"{FILES}/{file.file_id}/faces", headers=owner(stack))
    assert response.status_code == 200 and response.json()["count"] == len(faces)
    assert stack.state.render_counts["faces"] == detections  # kept: not detected again
