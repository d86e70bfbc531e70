"""A stored rendition's row is inserted, then replaced in place, by one statement, on
both stacks; the job's record step reads the file once."""

from __future__ import annotations

from sqlalchemy import select

from media_service.db.uow import unit_of_work
from media_service.preprocessing.models import StoredRendition
from media_service.preprocessing.repository import PreprocessingRepository
from media_service.preprocessing.service import PreprocessingService
from preprocessing.test_upload_queues_job import upload

from conftest import Stack, selects_from, statements_run


def row(file_id: str, width: int, key: str) -> StoredRendition:
    return StoredRendition(
        file_id=file_id, name="preview", storage_key=key, content_type="image/jpeg",
        width=width, height=width * 3 // 4, byte_size=width * 10, quality=82,
    )  # fmt: skip


async def stored(stack: Stack, file_id: str) -> list[tuple[str, int, str, int]]:
    async with stack.state.sessions() as session:
        query = select(StoredRendition).where(StoredRendition.file_id == file_id)
        rows = await session.scalars(query)
        return [(r.name, r.width, r.storage_key, r.byte_size) for r in rows]


async def test_a_rendition_row_is_inserted_then_replaced(stack: Stack) -> None:
    file_id = await upload(stack)
    async with unit_of_work(stack.state.sessions) as session:
        await PreprocessingRepository(session).save_rendition(row(file_id, 1440, "a/preview.jpg"))
    assert await stored(stack, file_id) == [("preview", 1440, "a/preview.jpg", 14400)]
    async with unit_of_work(stack.state.sessions) as session:
        await PreprocessingRepository(session).save_rendition(row(file_id, 1200, "b/preview.jpg"))
    assert await stored(stack, file_id) == [("preview", 1200, "b/preview.jpg", 12000)]


async def test_recording_a_job_reads_the_file_once(stack: Stack) -> None:
    file_id = await upload(stack)
    service = PreprocessingService(stack.state)
    file = await service.file_for_job(file_id)
    assert file is not None
    outcome = await service.preprocess(file)
    with statements_run(stack.state.sessions) as statements:
        async with unit_of_work(stack.state.sessions) as session:
            assert await service.record(session, file, outcome)
    assert len(selects_from(statements, "media_files")) == 1
    names = sorted(name for name, *_ in await stored(stack, file_id))
    assert names == ["preview", "thumbnail"]
