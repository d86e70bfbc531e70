"""An upload queues its ``media.preprocess`` job itself, in its own transaction (so the
job leaves with ``file.uploaded``, not one relay pass after it), on both stacks."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import orjson
import pytest
from PIL import Image
from sqlalchemy import select

from media_service.auth.principal import Principal, Role
from media_service.db.uow import unit_of_work
from media_service.events.models import OutboxMessage
from media_service.media.upload_source import RawBodySource
from media_service.media.uploads import UploadService
from media_service.preprocessing.queueing import preprocess_job_id

from conftest import Stack, selects_from, statements_run

ORG = "org_queue"
TEACHER = Principal("teacher-1", ORG, frozenset({Role.TEACHER}))


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"preprocess_uploads": True}


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


async def upload(stack: Stack, *, fail_after: bool = False) -> str:
    source = RawBodySource(_body(jpeg()), {"owner_type": "ClassSession", "owner_id": "cs"}, "a.jpg")
    file_id = ""
    try:
        async with unit_of_work(stack.state.sessions) as session:
            service = UploadService(session, stack.state.blobs, stack.settings)
            file_id = (await service.upload(TEACHER, source)).file.file_id
            if fail_after:
                raise RuntimeError("the request failed after the upload")
    except RuntimeError:
        pass
    return file_id


async def outbox(stack: Stack) -> dict[str, OutboxMessage]:
    async with stack.state.sessions() as session:
        rows = (await session.scalars(select(OutboxMessage))).all()
    return {row.id: row for row in rows}


async def test_the_upload_commits_its_preprocess_job_with_its_event(stack: Stack) -> None:
    file_id = await upload(stack)
    rows = await outbox(stack)
    job = rows[preprocess_job_id(file_id)]
    assert job.subject == "jobs.media.preprocess"
    payload = job.payload if isinstance(job.payload, dict) else orjson.loads(job.payload)
    assert payload["payload"] == {"file_id": file_id, "organization_id": ORG}
    events = [row for row in rows.values() if row.subject == "file.uploaded"]
    assert [event.payload["file_id"] for event in events] == [file_id]


async def test_a_rolled_back_upload_queues_nothing(stack: Stack) -> None:
    file_id = await upload(stack, fail_after=True)
    assert file_id
    assert await outbox(stack) == {}


async def test_the_upload_does_not_read_the_outbox_for_its_new_files_job(stack: Stack) -> None:
    with statements_run(stack.state.sessions) as statements:
        file_id = await upload(stack)
    assert preprocess_job_id(file_id) in await outbox(stack)
    # The file is new, so its job cannot be queued yet.
    assert selects_from(statements, "outbox") == []
