"""``media.version.created`` → the frame cache keeps a photo's entries made from its current
version and expires the others (another version, or none recorded), on both stacks; the
photo's current version is read in the same statement as its entries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from media_service.db.base import utcnow
from media_service.db.uow import unit_of_work
from media_service.frames import cache
from media_service.frames.models import CacheStatus, Frame, Orientation, PhotoCache
from media_service.ids import new_id
from media_service.media.service import MediaService
from media_service.versions.service import VersionService
from preprocessing.test_upload_queues_job import ORG, upload

from conftest import Stack, statements_run


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"preprocess_uploads": False}


def entry(frame_id: str, photo_id: str, version_id: str | None) -> PhotoCache:
    return PhotoCache(
        cache_id=new_id("cache"), user_id="teacher-1", organization_id=ORG, frame_id=frame_id,
        photo_id=photo_id, version_id=version_id, cache_status=CacheStatus.CACHED,
        local_path=f"frames/{frame_id}/{version_id}.jpg", cache_size=100,
        expires_at=utcnow() + timedelta(days=1),
    )  # fmt: skip


def frame() -> Frame:
    return Frame(
        frame_id=new_id("frame"), user_id="teacher-1", organization_id=ORG, name="Hall",
        time_zone="Europe/Berlin", screen_width=1920, screen_height=1080,
        orientation=Orientation.LANDSCAPE,
    )  # fmt: skip


async def test_entries_of_the_current_version_stay_and_the_others_expire(stack: Stack) -> None:
    photo_id = await upload(stack)
    frames = [frame() for _ in range(3)]  # an entry per frame and photo
    async with unit_of_work(stack.state.sessions) as session:
        photo = await MediaService(session, stack.state).find(photo_id)
        assert photo is not None
        current = (await VersionService(session, stack.state).ensure_original(photo)).version_id
        session.add_all(frames)
        await session.flush()
        versions = (current, "ver_older", None)
        rows = [entry(f.frame_id, photo_id, v) for f, v in zip(frames, versions, strict=True)]
        session.add_all(rows)
    with statements_run(stack.state.sessions) as statements:
        async with unit_of_work(stack.state.sessions) as session:
            expired = await cache.invalidate_versions(session, stack.state.blobs, photo_id)
    assert sorted(expired) == sorted(r.cache_id for r in rows[1:])
    async with stack.state.sessions() as session:
        found = await session.execute(select(PhotoCache.version_id, PhotoCache.cache_status))
        status = {version: status for version, status in found.all()}
    assert status == {
        current: CacheStatus.CACHED,
        "ver_older": CacheStatus.EXPIRED,
        None: CacheStatus.EXPIRED,
    }
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1, reads  # the entries, with the current version as a subquery


async def test_a_photo_without_a_current_version_has_all_its_entries_expired(
    stack: Stack,
) -> None:
    photo_id = await upload(stack)  # no version rows: its file.uploaded was not handled
    frames = [frame(), frame()]
    async with unit_of_work(stack.state.sessions) as session:
        session.add_all(frames)
        await session.flush()
        rows = [
            entry(f.frame_id, photo_id, v) for f, v in zip(frames, ("ver_x", None), strict=True)
        ]
        session.add_all(rows)
    async with unit_of_work(stack.state.sessions) as session:
        expired = await cache.invalidate_versions(session, stack.state.blobs, photo_id)
    assert sorted(expired) == sorted(r.cache_id for r in rows)
