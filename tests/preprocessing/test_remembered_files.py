"""What the renditions path remembers of a file for a second is forgotten, in the process
that made a change, as soon as the change commits: an owner change is served (and audited)
with the new owner at once; a delete leaves nothing remembered."""

from __future__ import annotations

from media_service.auth.principal import Principal, Role
from media_service.db.uow import unit_of_work
from media_service.media.remembered import served_key
from media_service.media.schemas import MediaFilePatch
from media_service.media.service import MediaService
from media_service.preprocessing.service import PreprocessingService
from preprocessing.test_upload_queues_job import ORG, upload

from conftest import Stack

ADMIN = Principal("admin-1", ORG, frozenset({Role.ADMIN}))


async def remembered_and_served(stack: Stack, file_id: str) -> tuple[str, str]:
    service = PreprocessingService(stack.state)
    file = await service.visible_file(ADMIN, file_id)
    return file.owner_id, (await service.served(file, None)).owner_id


async def test_an_owner_change_is_served_with_the_new_owner_at_once(stack: Stack) -> None:
    file_id = await upload(stack)
    assert await remembered_and_served(stack, file_id) == ("cs", "cs")  # now remembered
    async with unit_of_work(stack.state.sessions) as session:
        patch = MediaFilePatch(owner_id="cs-2")
        await MediaService(session, stack.state).update(ADMIN, file_id, patch)
    assert await remembered_and_served(stack, file_id) == ("cs-2", "cs-2")


async def test_a_delete_leaves_nothing_of_the_file_remembered(stack: Stack) -> None:
    file_id = await upload(stack)
    await remembered_and_served(stack, file_id)
    recent = stack.state.recent_files
    assert recent.get(file_id) is not None and recent.get(served_key(file_id, None)) is not None
    async with unit_of_work(stack.state.sessions) as session:
        await MediaService(session, stack.state).delete(ADMIN, file_id)
    assert recent.get(file_id) is None and recent.get(served_key(file_id, None)) is None
