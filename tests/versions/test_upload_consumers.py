"""The ``file.uploaded`` consumers that make a photo's original version and its empty
metadata record, on both stacks: one ``INSERT … ON CONFLICT DO NOTHING`` per row (no read
first, no savepoint), and a row made first, by a request or an earlier event, stands and
is not announced again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update

from media_service.auth.principal import Principal, Role
from media_service.db.uow import unit_of_work
from media_service.events import FileUploaded, IdempotentConsumer
from media_service.events.bus import Delivery
from media_service.events.models import OutboxMessage
from media_service.media.service import MediaService
from media_service.metadata.consumers import create_metadata_records
from media_service.metadata.models import PhotoMetadata
from media_service.state import ServiceState
from media_service.versions.consumers import create_original_versions
from media_service.versions.models import PhotoVersion
from media_service.versions.service import VersionService
from preprocessing.test_upload_queues_job import ORG, upload

from conftest import Stack, statements_run

Factory = Callable[[ServiceState], IdempotentConsumer[FileUploaded]]
CONSUMERS = [create_original_versions, create_metadata_records]


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"preprocess_uploads": False}


async def deliver(stack: Stack, make: Factory, file_id: str) -> list[str]:
    """A new ``file.uploaded`` about ``file_id`` handled by the consumer ``make`` builds;
    the statements it ran."""
    uploaded = FileUploaded(file_id=file_id, user_id="teacher-1", organization_id=ORG)
    consumer = make(stack.state)
    payload = uploaded.to_json()
    delivery = Delivery(consumer.name, uploaded.subject, payload, uploaded.event_id, 1)
    with statements_run(stack.state.sessions) as statements:
        await consumer.bind(stack.state.sessions)(delivery)
    return statements


async def rows(stack: Stack, model: Any, file_id: str) -> list[Any]:
    async with stack.state.sessions() as session:
        key = model.photo_id if model is PhotoVersion else model.file_id
        return list((await session.scalars(select(model).where(key == file_id))).all())


async def announced(stack: Stack) -> int:
    async with stack.state.sessions() as session:
        query = select(OutboxMessage).where(OutboxMessage.subject == "media.version.created")
        return len((await session.scalars(query)).all())


@pytest.mark.parametrize("make", CONSUMERS, ids=["versions", "metadata"])
async def test_one_insert_makes_the_row_without_a_savepoint(stack: Stack, make: Factory) -> None:
    file_id = await upload(stack)
    statements = await deliver(stack, make, file_id)
    inserts = [s for s in statements if s.startswith("INSERT INTO photo_")]
    # The original and its counter; the metadata record.
    assert len(inserts) == (2 if make is create_original_versions else 1), inserts
    assert all("ON CONFLICT DO NOTHING" in s for s in inserts), inserts
    assert not [s for s in statements if "SAVEPOINT" in s]
    assert not [s for s in statements if s.startswith(("SELECT photo_versions", "SELECT photo_m"))]


async def test_the_original_is_made_current_once_and_announced_once(stack: Stack) -> None:
    file_id = await upload(stack)
    await deliver(stack, create_original_versions, file_id)
    await deliver(stack, create_original_versions, file_id)  # another event, same photo
    [original] = await rows(stack, PhotoVersion, file_id)
    assert (original.version_number, original.is_current) == (1, True)
    assert original.processing_params == {} and original.version_metadata == {}
    assert await announced(stack) == 1


async def test_an_original_a_request_made_first_stands_unannounced(stack: Stack) -> None:
    file_id = await upload(stack)
    async with unit_of_work(stack.state.sessions) as session:
        photo = await MediaService(session, stack.state).find(file_id)
        assert photo is not None
        made = await VersionService(session, stack.state).ensure_original(photo)
    await deliver(stack, create_original_versions, file_id)
    assert [v.version_id for v in await rows(stack, PhotoVersion, file_id)] == [made.version_id]
    assert await announced(stack) == 1  # the request's


async def test_a_metadata_record_made_first_keeps_what_it_holds(stack: Stack) -> None:
    file_id = await upload(stack)
    await deliver(stack, create_metadata_records, file_id)
    [record] = await rows(stack, PhotoMetadata, file_id)
    assert record.ai_labels == [] and record.full_metadata == {}
    async with unit_of_work(stack.state.sessions) as session:
        change = update(PhotoMetadata).where(PhotoMetadata.file_id == file_id)
        await session.execute(change.values(camera_make="Canon"))
    await deliver(stack, create_metadata_records, file_id)
    [record] = await rows(stack, PhotoMetadata, file_id)
    assert record.camera_make == "Canon"


async def test_a_delete_waits_for_the_consumer_that_holds_the_photo(stack: Stack) -> None:
    """Without the hold, on PostgreSQL, a delete committed between the consumer's read and
    its insert broke the insert's foreign key and failed the whole batch."""
    file_id = await upload(stack)
    admin = Principal("admin-1", ORG, frozenset({Role.ADMIN}))

    async def delete() -> None:
        async with unit_of_work(stack.state.sessions) as session:
            await MediaService(session, stack.state).delete(admin, file_id)

    async with unit_of_work(stack.state.sessions) as session:
        photo = await MediaService(session, stack.state).find(file_id, hold=True)
        assert photo is not None
        deleting = asyncio.create_task(delete())
        await asyncio.sleep(0.5)
        assert not deleting.done()  # waiting for this transaction
        await VersionService(session, stack.state).record_original(photo)
    await asyncio.wait_for(deleting, timeout=20)
    assert await rows(stack, PhotoVersion, file_id) == []  # gone with the photo
