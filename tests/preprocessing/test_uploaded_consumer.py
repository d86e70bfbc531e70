"""``file.uploaded`` → the preprocess job, on both stacks: our own upload queued the job
already (the consumer reads the outbox once, not the file, and adds nothing); an external
storage service's event for a file we hold whose job is not queued queues it; an event for
a file we do not hold queues nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from media_service.events import FileUploaded
from media_service.events.bus import Delivery
from media_service.events.models import OutboxMessage
from media_service.preprocessing.consumers import PREPROCESS_CONSUMER, preprocess_uploaded_files
from media_service.preprocessing.queueing import preprocess_job_id
from preprocessing.test_upload_queues_job import ORG, outbox, upload

from conftest import Stack, selects_from, statements_run


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"preprocess_uploads": True}


async def handle(stack: Stack, file_id: str) -> list[str]:
    """Deliver a new ``file.uploaded`` about ``file_id`` to the consumer; what it ran."""
    uploaded = FileUploaded(file_id=file_id, user_id="storage-service", organization_id=ORG)
    handler = preprocess_uploaded_files(stack.state).bind(stack.state.sessions)
    delivery = Delivery(
        PREPROCESS_CONSUMER, uploaded.subject, uploaded.to_json(), uploaded.event_id, 1
    )
    with statements_run(stack.state.sessions) as statements:
        await handler(delivery)
    return statements


async def test_an_own_upload_is_found_queued_by_one_read_of_the_outbox(stack: Stack) -> None:
    file_id = await upload(stack)
    before = set(await outbox(stack))
    statements = await handle(stack, file_id)
    assert set(await outbox(stack)) == before  # nothing added
    assert len(selects_from(statements, "outbox")) == 1
    assert selects_from(statements, "media_files") == []


async def test_an_external_event_for_a_held_file_queues_its_job(stack: Stack) -> None:
    file_id = await upload(stack)
    job_id = preprocess_job_id(file_id)
    async with stack.state.sessions.begin() as session:  # as if stored while preprocessing was off
        await session.execute(delete(OutboxMessage).where(OutboxMessage.id == job_id))
    statements = await handle(stack, file_id)
    assert job_id in await outbox(stack)
    assert len(selects_from(statements, "media_files")) == 1


async def test_an_event_for_a_file_we_do_not_hold_queues_nothing(stack: Stack) -> None:
    await handle(stack, "file_01jz0000000000000000000000")
    assert not [row for row in (await outbox(stack)).values() if row.kind == "job"]
