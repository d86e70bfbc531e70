"""With ``MEDIA_PREPROCESS_UPLOADS=false`` an upload queues no ``media.preprocess`` job."""

from __future__ import annotations

import pytest

from preprocessing.test_upload_queues_job import outbox, upload

from conftest import Stack


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"preprocess_uploads": False}


async def test_no_preprocess_job_when_uploads_are_not_preprocessed(stack: Stack) -> None:
    file_id = await upload(stack)
    assert [row.subject for row in (await outbox(stack)).values()] == ["file.uploaded"]
    assert file_id
