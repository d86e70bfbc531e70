"""The frame photo cache on both stacks: pre-cache runs (frame-sized JPEGs stored, CACHED,
``media.cache.ready``), failures injected into storage with retries and back-off, LRU
eviction, expiry, invalidation by a new current version and by deletion, hit counting,
concurrent runs, and frame-token access (own frame only)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterable, AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from media_service.auth.principal import Role
from media_service.db.base import utcnow
from media_service.db.uow import unit_of_work
from media_service.events.models import OutboxMessage
from media_service.frames import cache
from media_service.frames.cache_jobs import FrameCacheLoop, Precache
from media_service.frames.cache_repository import CacheRepository
from media_service.frames.cache_states import CachePolicy
from media_service.frames.models import Frame, PhotoCache
from media_service.jobs.registry import SUBJECT_PREFIX, job_consumer
from media_service.storage import BlobInfo, BlobStore, ByteRange, StorageUnavailable

from conftest import Stack

ORG = "org_fc"
FRAMES = "/api/v1/media/frames"
SCHEDULES = "/api/v1/media/schedules"
FILES = "/api/v1/media/files"
CACHE = "/api/v1/media/cache"


class FailingPuts(BlobStore):
    """A real store whose ``put`` raises while ``failing`` is set (a storage outage)."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.failing = True

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        if self.failing:
            raise StorageUnavailable("injected: the store refuses writes")
        return await self.inner.put(key, chunks)

    def get(self, key: str, byte_range: ByteRange | None = None) -> AsyncIterator[bytes]:
        return self.inner.get(key, byte_range)

    async def head(self, key: str) -> BlobInfo | None:
        return await self.inner.head(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        return self.inner.list(prefix)

    async def presigned_get_url(self, key: str, expires_in: timedelta) -> str | None:
        return await self.inner.presigned_get_url(key, expires_in)

    async def check(self) -> None:
        await self.inner.check()

    async def close(self) -> None:
        await self.inner.close()


def owner(stack: Stack, name: str = "u1") -> dict[str, str]:
    return stack.auth(name, ORG, Role.TEACHER)


def device(stack: Stack, frame_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token(frame_id, ORG, Role.FRAME, frame_id=frame_id)}"}


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (400 + seed, 300), ((seed * 53) % 256, 90, 140)).save(buffer, "JPEG")
    return buffer.getvalue()


async def showing(
    client: httpx.AsyncClient, stack: Stack, photos: int, first: int = 0
) -> tuple[str, list[str]]:
    """A 320x240 frame following a playlist of ``photos`` photos; (frame id, photo ids)."""
    headers = owner(stack)
    body = {"name": "Hall", "time_zone": "UTC", "screen_width": 320, "screen_height": 240}
    frame = await client.post(FRAMES, headers=headers, json=body)
    assert frame.status_code == 201, frame.text
    ids = []
    for seed in range(first, first + photos):
        response = await client.post(
            FILES,
            headers=headers,
            files={"file": (f"p{seed}.jpg", jpeg(seed), "image/jpeg")},
            data={"owner_type": "ClassSession", "owner_id": "cs-1"},
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["file_id"])
    playlist = await client.post(
        "/api/v1/media/playlists",
        headers=headers,
        json={"name": "Family", "playlist_type": "MANUAL", "photo_ids": ids},
    )
    assert playlist.status_code == 201, playlist.text
    frame_id = str(frame.json()["frame_id"])
    schedule = {
        "frame_id": frame_id,
        "playlist_id": playlist.json()["playlist_id"],
        "schedule_type": "CONTINUOUS",
        "rotation_interval": 3600,
    }
    created = await client.post(SCHEDULES, headers=headers, json=schedule)
    assert created.status_code == 201, created.text
    return frame_id, ids


async def precache_jobs_done(stack: Stack, timeout: float = 30.0) -> None:
    """Until every queued ``media.frame-precache`` job has been published and handled."""
    consumer = job_consumer(cache.PRECACHE)
    async with asyncio.timeout(timeout):
        while True:
            async with unit_of_work(stack.state.read_sessions) as session:
                queued = await session.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.subject == SUBJECT_PREFIX + cache.PRECACHE)
                    .where(OutboxMessage.published_at.is_(None))
                )
            if not queued and (await stack.state.bus.check()).consumer_lag.get(consumer) == 0:
                return
            await asyncio.sleep(0.05)


async def entries(client: httpx.AsyncClient, stack: Stack, frame_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{CACHE}/frame/{frame_id}", headers=device(stack, frame_id))
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_a_run_caches_the_upcoming_photos_for_the_frame(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    frame_id, photos = await showing(client, stack, 3)
    result = await Precache(stack.state, CachePolicy(keep_count=2)).run(frame_id)
    items = await entries(client, stack, frame_id)
    assert len(result.cached) == 2 and result.failed == [] and result.evicted == [], [
        (i["cache_status"], i["error_message"], i["photo_id"]) for i in items
    ]
    items = await entries(client, stack, frame_id)
    assert {item["cache_status"] for item in items} == {"CACHED"}
    assert {item["photo_id"] for item in items} <= set(photos)
    item = items[0]
    content = await client.get(item["cached_url"], headers=device(stack, frame_id))
    assert content.status_code == 200 and content.headers["content-type"] == "image/jpeg"
    assert len(content.content) == item["cache_size"]
    with Image.open(io.BytesIO(content.content)) as image:
        assert image.width <= 320 and image.height <= 240
    feed = (await client.get(f"{FRAMES}/{frame_id}/feed", headers=device(stack, frame_id))).json()
    cached_urls = {i["url"] for i in feed["items"] if i["cached"]}
    assert cached_urls == {i["cached_url"] for i in items}
    async with unit_of_work(stack.state.sessions) as session:
        rows = await session.execute(
            select(OutboxMessage.payload).where(OutboxMessage.subject == "media.cache.ready")
        )
        ready = {payload["cache_id"] for (payload,) in rows.all()}
    assert ready == {i["cache_id"] for i in items}
    again = await Precache(stack.state, CachePolicy(keep_count=2)).run(frame_id)
    assert again.cached == []  # nothing due: no work repeated


async def test_hits_are_counted_and_exported(client: httpx.AsyncClient, stack: Stack) -> None:
    frame_id, photos = await showing(client, stack, 2)
    # The miss needs an entry that is not CACHED yet, but the pre-cache job a POST queues
    # may cache it before the next request. So the entry is made PENDING here (of the
    # photo's current version, as a POST would make it), the miss counted, and only then
    # POSTed: that returns the same entry and queues the job.
    versions = await client.get(f"/api/v1/media/photos/{photos[0]}/versions", headers=owner(stack))
    assert versions.status_code == 200 and versions.json()["current_version_id"], versions.text
    async with unit_of_work(stack.state.sessions) as session:
        frame = await session.get(Frame, frame_id)
        assert frame is not None
        pending = cache.new_entry(
            frame, photos[0], versions.json()["current_version_id"], CachePolicy(), utcnow()
        )
        await CacheRepository(session).insert_pending([pending])
    cache_id = pending["cache_id"]
    hit = f"{CACHE}/{cache_id}/hit"
    assert (await client.put(hit, headers=device(stack, frame_id))).status_code == 204  # a miss
    created = await client.post(
        CACHE, headers=owner(stack), json={"frame_id": frame_id, "photo_id": photos[0]}
    )
    assert created.status_code == 201 and created.json()["cache_status"] == "PENDING"
    assert created.json()["cache_id"] == cache_id and created.json()["miss_count"] == 1
    await Precache(stack.state, CachePolicy(keep_count=2)).run(frame_id)
    # The POST queued a pre-cache job too; whichever run claimed the entry, wait for it.
    entry = f"{CACHE}/{cache_id}"
    async with asyncio.timeout(30):
        while (await client.get(entry, headers=owner(stack))).json()["cache_status"] != "CACHED":
            await asyncio.sleep(0.05)
    for _ in range(3):
        assert (await client.put(hit, headers=device(stack, frame_id))).status_code == 204
    got = (await client.get(f"{CACHE}/{cache_id}", headers=device(stack, frame_id))).json()
    assert got["hit_count"] == 3 and got["miss_count"] == 1 and got["last_accessed_at"]
    metrics = (await client.get("/metrics")).text
    assert f'media_cache_hit_rate{{frame_id="{frame_id}"}} 0.75' in metrics


async def test_a_frame_token_reaches_only_its_own_cache(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    frame_id, photos = await showing(client, stack, 1)
    other, _ = await showing(client, stack, 1, first=1)
    await Precache(stack.state).run(frame_id)
    cache_id = (await entries(client, stack, frame_id))[0]["cache_id"]
    stranger = device(stack, other)
    for method, url in (
        ("GET", f"{CACHE}/{cache_id}"),
        ("GET", f"{CACHE}/{cache_id}/content"),
        ("PUT", f"{CACHE}/{cache_id}/hit"),
        ("GET", f"{CACHE}/frame/{frame_id}"),
        ("DELETE", f"{CACHE}/{cache_id}"),
    ):
        response = await client.request(method, url, headers=stranger)
        assert response.status_code == 404, (method, url)
    other_org = stack.auth("u1", "org_other", Role.ADMIN)
    assert (await client.get(f"{CACHE}/{cache_id}", headers=other_org)).status_code == 404
    assert (await client.get(f"{CACHE}/cache_nonsense", headers=owner(stack))).status_code == 404
    bad = await client.post(
        CACHE, headers=owner(stack, "u2"), json={"frame_id": frame_id, "photo_id": photos[0]}
    )
    assert bad.status_code == 422
    unknown = await client.post(
        CACHE, headers=owner(stack), json={"frame_id": frame_id, "photo_id": "file_x"}
    )
    assert unknown.status_code == 422
    assert (await client.delete(f"{CACHE}/{cache_id}", headers=owner(stack))).status_code == 204
    assert await entries(client, stack, frame_id) == []


async def test_storage_failures_are_retried_with_back_off(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    frame_id, _ = await showing(client, stack, 1)
    store = FailingPuts(stack.state.blobs)
    stack.state.blobs = store
    policy = CachePolicy(retry_base=timedelta(minutes=1), max_retries=3)
    now = utcnow()
    first = await Precache(stack.state, policy).run(frame_id, now)
    assert len(first.failed) == 1 and first.cached == []
    (item,) = await entries(client, stack, frame_id)
    assert item["cache_status"] == "FAILED" and item["retry_count"] == 1
    assert "injected" in item["error_message"] and item["cached_url"] is None
    # Within the back-off nothing is tried; after it, the second failure doubles it.
    assert (
        await Precache(stack.state, policy).run(frame_id, now + timedelta(seconds=30))
    ).failed == []
    second = await Precache(stack.state, policy).run(frame_id, now + timedelta(seconds=61))
    assert second.failed == [item["cache_id"]]
    (item,) = await entries(client, stack, frame_id)
    assert item["retry_count"] == 2
    store.failing = False
    assert (
        await Precache(stack.state, policy).run(frame_id, now + timedelta(seconds=150))
    ).cached == []
    late = await Precache(stack.state, policy).run(frame_id, now + timedelta(seconds=190))
    assert late.cached == [item["cache_id"]]
    (item,) = await entries(client, stack, frame_id)
    assert item["cache_status"] == "CACHED" and item["error_message"] is None


async def test_illegal_states_are_refused_by_the_database(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    frame_id, photos = await showing(client, stack, 1)
    created = await client.post(
        CACHE, headers=owner(stack), json={"frame_id": frame_id, "photo_id": photos[0]}
    )
    cache_id = created.json()["cache_id"]
    # The pre-cache job may already have cached the entry, so each update clears what
    # the status needs itself rather than trusting the entry to still be pending.
    for status in ("CACHED", "FAILED"):
        with pytest.raises(IntegrityError):
            async with unit_of_work(stack.state.sessions) as session:
                await session.execute(
                    text(
                        "UPDATE photo_cache SET cache_status = :s, local_path = NULL,"
                        " cache_size = NULL, error_message = NULL WHERE cache_id = :c"
                    ),
                    {"s": status, "c": cache_id},
                )


async def test_lru_eviction_keeps_the_recently_used_within_budget(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    frame_id, _ = await showing(client, stack, 3)
    await Precache(stack.state, CachePolicy(keep_count=3)).run(frame_id)
    # The pre-cache job the schedule queued must be over (not still queued, nor
    # downloading an entry it claimed first): run later, it would cache again what the
    # evictions below remove.
    await precache_jobs_done(stack)
    items = await entries(client, stack, frame_id)
    assert {i["cache_status"] for i in items} == {"CACHED"}
    assert len(items) == 3
    used = [items[2]["cache_id"], items[1]["cache_id"]]  # the newest use last
    for cache_id in used:
        await asyncio.sleep(0.01)
        await client.put(f"{CACHE}/{cache_id}/hit", headers=device(stack, frame_id))
    async with unit_of_work(stack.state.sessions) as session:
        evicted = await cache.evict_lru(
            session, stack.state.blobs, frame_id, CachePolicy(keep_count=2)
        )
    assert evicted == [items[0]["cache_id"]]
    assert await stack.state.blobs.head(_key(items[0], frame_id)) is None
    size = next(i["cache_size"] for i in items if i["cache_id"] == used[1])
    async with unit_of_work(stack.state.sessions) as session:
        evicted = await cache.evict_lru(
            session, stack.state.blobs, frame_id, CachePolicy(keep_count=10, byte_budget=size)
        )
    assert evicted == [used[0]]
    assert [i["cache_id"] for i in await entries(client, stack, frame_id)] == [used[1]]


async def test_entries_expire_and_are_swept(client: httpx.AsyncClient, stack: Stack) -> None:
    frame_id, _ = await showing(client, stack, 2)
    policy = CachePolicy(ttl=timedelta(days=1))
    now = utcnow()
    await Precache(stack.state, policy).run(frame_id, now)
    items = await entries(client, stack, frame_id)
    schedule = (await client.get(f"{SCHEDULES}/frame/{frame_id}", headers=owner(stack))).json()
    for row in schedule["schedules"]:
        await client.delete(f"{SCHEDULES}/{row['schedule_id']}", headers=owner(stack))
    await Precache(stack.state, policy).run(frame_id, now + timedelta(hours=1))
    assert len(await entries(client, stack, frame_id)) == 2  # not needed, not expired yet
    await Precache(stack.state, policy).run(frame_id, now + timedelta(days=2))
    assert await entries(client, stack, frame_id) == []
    for item in items:
        assert await stack.state.blobs.head(_key(item, frame_id)) is None


async def test_a_new_current_version_or_deletion_invalidates(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    frame_id, photos = await showing(client, stack, 2)
    await Precache(stack.state).run(frame_id)
    by_photo = {i["photo_id"]: i for i in await entries(client, stack, frame_id)}
    version = await client.post(
        f"/api/v1/media/photos/{photos[0]}/versions",
        headers=owner(stack),
        json={"version_type": "STYLED", "processing_mode": "sepia", "set_current": True},
    )
    assert version.status_code == 201, version.text
    assert (await client.delete(f"{FILES}/{photos[1]}", headers=owner(stack))).status_code == 204
    for _ in range(200):  # the consumers run after the events are relayed
        items = {i["photo_id"]: i for i in await entries(client, stack, frame_id)}
        if (
            photos[1] not in items
            and items[photos[0]]["cache_status"] == "EXPIRED"
            # the file goes after the expiry's commit
            and await stack.state.blobs.head(_key(by_photo[photos[0]], frame_id)) is None
        ):
            break
        await asyncio.sleep(0.05)
    assert photos[1] not in items and items[photos[0]]["cache_status"] == "EXPIRED"
    assert await stack.state.blobs.head(_key(by_photo[photos[0]], frame_id)) is None
    rerun = await Precache(stack.state).run(frame_id)
    assert rerun.cached == [by_photo[photos[0]]["cache_id"]]
    (item,) = await entries(client, stack, frame_id)
    assert item["version_id"] == version.json()["version_id"]


async def test_concurrent_runs_do_not_repeat_work(client: httpx.AsyncClient, stack: Stack) -> None:
    frame_id, _ = await showing(client, stack, 4)
    runs = await asyncio.gather(*(Precache(stack.state).run(frame_id) for _ in range(3)))
    done = [cache_id for run in runs for cache_id in run.cached]
    assert len(done) == len(set(done)) == 4
    assert all(run.failed == [] for run in runs)


def _key(item: dict[str, Any], frame_id: str) -> str:
    return cache.cache_key(item["photo_id"], frame_id, item["version_id"])


async def test_the_periodic_round_caches_every_active_frame_through_the_job(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """What the service does by itself every MEDIA_FRAME_PRECACHE_INTERVAL_SECONDS: one
    pre-cache job per recently seen frame, run by the worker; a second round in the same
    interval queues nothing new (the job id is the frame and the round)."""
    frame_id, photos = await showing(client, stack, 2)
    rounds = FrameCacheLoop(stack.state, interval=300.0)
    assert await rounds.run_once() >= 1
    async with asyncio.timeout(60):
        while True:
            items = await entries(client, stack, frame_id)
            if len(items) == 2 and {i["cache_status"] for i in items} == {"CACHED"}:
                break
            await asyncio.sleep(0.1)
    assert {i["photo_id"] for i in items} == set(photos)
    assert await rounds.run_once() >= 1  # the same round: the jobs are recognised
    await asyncio.sleep(0.5)
    assert {i["cache_id"] for i in await entries(client, stack, frame_id)} == {
        i["cache_id"] for i in items
    }


async def test_deleting_a_frame_deletes_its_cached_files(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    frame_id, _ = await showing(client, stack, 2)
    await Precache(stack.state).run(frame_id)
    async with stack.state.sessions() as session:
        keys = set(
            await session.scalars(
                select(PhotoCache.local_path).where(PhotoCache.frame_id == frame_id)
            )
        )
    assert len(keys) == 2 and all(keys)
    for key in keys:
        assert await stack.state.blobs.head(str(key)) is not None
    deleted = await client.delete(f"{FRAMES}/{frame_id}", headers=owner(stack))
    assert deleted.status_code == 204, deleted.text
    for key in keys:
        assert await stack.state.blobs.head(str(key)) is None, key
    async with stack.state.sessions() as session:
        left = await session.scalars(select(PhotoCache).where(PhotoCache.frame_id == frame_id))
        assert list(left) == []
