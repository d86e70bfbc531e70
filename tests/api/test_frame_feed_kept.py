"""Kept feeds on both stacks: an idle frame's poll is answered from the feed built before
(same body, same ETag, 304), and every change to what the feed shows reaches the very
next poll, whichever table it lands in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from test_frames import FRAMES, PL, SCHEDULES, device, new_frame, new_playlist, owner, upload

from media_service.db.uow import unit_of_work
from media_service.frames.cache_jobs import Precache
from media_service.frames.feed_memo import FeedInputs, FeedMemo, KeptFeed
from media_service.frames.models import PhotoCache
from media_service.frames.schedules import ScheduleService

from conftest import Stack

FILES = "/api/v1/media/files"


async def poll(client: httpx.AsyncClient, token: dict[str, str], frame_id: str) -> httpx.Response:
    response = await client.get(f"{FRAMES}/{frame_id}/feed", headers=token)
    assert response.status_code == 200, response.text
    return response


async def fresh(client: httpx.AsyncClient, token: dict[str, str], frame_id: str) -> Any:
    """The feed built anew (a preview at this instant is never kept)."""
    at = datetime.now(UTC).isoformat()
    response = await client.get(f"{FRAMES}/{frame_id}/feed", headers=token, params={"at": at})
    assert response.status_code == 200, response.text
    return response.json()


def shown(feed: Any) -> Any:
    """The feed without the signatures of its URLs (they move with the signing period)."""
    items = [{**item, "url": item["url"].split("?")[0]} for item in feed["items"]]
    return {**feed, "items": items}


async def one_hour_schedule(
    client: httpx.AsyncClient, headers: dict[str, str], frame_id: str, playlist_id: str, **body: Any
) -> str:
    body = {"frame_id": frame_id, "playlist_id": playlist_id, "schedule_type": "CONTINUOUS",
            "rotation_interval": 3600, **body}  # fmt: skip
    response = await client.post(SCHEDULES, headers=headers, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["schedule_id"])


async def versions_recorded(client: httpx.AsyncClient, token: dict[str, str], frame_id: str) -> Any:
    # The original versions are recorded by a consumer of file.uploaded: on the NATS stack
    # of a loaded CI machine that can take seconds.
    async with asyncio.timeout(30):
        while True:
            feed = (await poll(client, token, frame_id)).json()
            if all(item["version_id"] for item in feed["items"]):
                return feed
            await asyncio.sleep(0.05)


async def original_recorded(
    client: httpx.AsyncClient, headers: dict[str, str], photo_id: str
) -> None:
    """Wait for the consumer of ``file.uploaded`` to record ``photo_id``'s original version:
    recorded between a poll and the check after it, it would look like a stale kept feed."""
    for _ in range(200):
        response = await client.get(f"/api/v1/media/photos/{photo_id}/versions", headers=headers)
        if response.status_code == 200 and response.json()["current_version_id"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the original version of {photo_id} was not recorded")


async def test_an_idle_frame_is_answered_from_its_kept_feed(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    headers = owner(stack)
    frame_id = await new_frame(client, headers)
    playlist_id = await new_playlist(client, headers, 3)
    await one_hour_schedule(client, headers, frame_id, playlist_id)
    token = device(stack, frame_id)
    await versions_recorded(client, token, frame_id)
    memo = stack.state.feeds
    first = await poll(client, token, frame_id)
    hits, misses = memo.hits, memo.misses
    again = await poll(client, token, frame_id)
    assert (again.content, again.headers["etag"]) == (first.content, first.headers["etag"])
    unchanged = await client.get(
        f"{FRAMES}/{frame_id}/feed", headers={**token, "If-None-Match": first.headers["etag"]}
    )
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert (memo.hits, memo.misses) == (hits + 2, misses)
    metrics = (await client.get("/metrics")).text
    assert f'media_frame_feeds_total{{source="kept"}} {float(memo.hits)}' in metrics
    # A preview at another time is built anew and not kept.
    assert shown(await fresh(client, token, frame_id)) == shown(first.json())
    assert (memo.hits, memo.misses) == (hits + 2, misses)


async def test_every_change_to_what_a_feed_shows_reaches_the_next_poll(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    headers = owner(stack)
    frame_id = await new_frame(client, headers)
    playlist_id = await new_playlist(client, headers, 3)
    other_playlist = await new_playlist(client, headers, 2, first=10)
    schedule_id = await one_hour_schedule(client, headers, frame_id, playlist_id)
    token = device(stack, frame_id)
    feed = await versions_recorded(client, token, frame_id)
    # The other playlist's photos are shown from "schedule of more priority" on: their
    # originals too must not be recorded between two polls.
    others = (await client.get(f"{PL}/{other_playlist}", headers=headers)).json()["photo_ids"]
    assert len(others) == 2
    for photo_id in others:
        await original_recorded(client, headers, photo_id)
    extra = await upload(client, headers, 20)
    await original_recorded(client, headers, extra)
    photos = [item["photo_id"] for item in feed["items"]]

    async def request(method: str, url: str, **kwargs: Any) -> None:
        response = await client.request(method, url, headers=headers, **kwargs)
        assert response.status_code < 300, response.text

    async def cache_one() -> None:
        await Precache(stack.state).run(frame_id)

    async def reorder() -> None:
        items = (await poll(client, token, frame_id)).json()["items"]
        order = sorted(item["photo_id"] for item in items)[::-1]
        await request("PUT", f"{PL}/{playlist_id}/photos", json={"photo_ids": order})

    async def recache_one() -> None:
        """One entry cached again under another URL: as many CACHED rows as before."""
        async with unit_of_work(stack.state.sessions) as session:
            entry = (
                await session.scalars(
                    select(PhotoCache)
                    .where(PhotoCache.frame_id == frame_id, PhotoCache.cache_status == "CACHED")
                    .limit(1)
                )
            ).one()
            assert entry.cached_url is not None
            entry.cached_url = entry.cached_url.replace("/content", "-again/content")

    async def expire_cache() -> None:
        async with unit_of_work(stack.state.sessions) as session:
            await session.execute(
                update(PhotoCache)
                .where(PhotoCache.frame_id == frame_id)
                .values(cache_status="EXPIRED", cached_url=None, local_path=None)
            )

    changes: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("photo added", lambda: request("POST", f"{PL}/{playlist_id}/photos",
                                        json={"photo_ids": [extra]})),
        ("photo removed", lambda: request("DELETE", f"{PL}/{playlist_id}/photos/{photos[0]}")),
        ("playlist reordered", reorder),
        ("new current version", lambda: request(
            "POST", f"/api/v1/media/photos/{photos[1]}/versions",
            json={"version_type": "STYLED", "processing_mode": "sepia", "set_current": True})),
        ("file deleted", lambda: request("DELETE", f"{FILES}/{photos[2]}")),
        ("schedule changed", lambda: request("PUT", f"{SCHEDULES}/{schedule_id}",
                                             json={"transition": "slide"})),
        ("playlist changed", lambda: request("PUT", f"{PL}/{playlist_id}",
                                             json={"transition_duration": 9})),
        ("frame turned", lambda: request("PUT", f"{FRAMES}/{frame_id}",
                                         json={"orientation": "PORTRAIT"})),
        ("photos cached", cache_one),
        ("photo cached again", recache_one),
        ("cache expired", expire_cache),
        ("schedule of more priority", lambda: one_hour_schedule(
            client, headers, frame_id, other_playlist, priority=5)),
        ("playlist deleted", lambda: request("DELETE", f"{PL}/{other_playlist}")),
    ]  # fmt: skip
    for name, change in changes:
        before = shown((await poll(client, token, frame_id)).json())
        await change()
        after = shown((await poll(client, token, frame_id)).json())
        assert after != before, name
        assert after == shown(await fresh(client, token, frame_id)), name


async def test_an_empty_cycle_moves_on_with_the_rotation(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """Active with no photos: ``cycle`` counts rotation slots, so a kept feed ends with its
    slot."""
    headers = owner(stack)
    frame_id = await new_frame(client, headers)
    body = {"name": "Empty", "playlist_type": "MANUAL", "photo_ids": []}
    playlist_id = (await client.post(PL, headers=headers, json=body)).json()["playlist_id"]
    await one_hour_schedule(client, headers, frame_id, playlist_id, rotation_interval=3)
    token = device(stack, frame_id)
    first = (await poll(client, token, frame_id)).json()
    await asyncio.sleep(3.2)
    later = (await poll(client, token, frame_id)).json()
    assert later["cycle"] > first["cycle"]
    assert shown(later) == shown(await fresh(client, token, frame_id))


async def test_a_change_committed_during_a_build_is_not_in_it_but_in_the_next_poll(
    client: httpx.AsyncClient, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll reads one snapshot: a version made current while it builds is not in the
    feed it builds and keeps (the fingerprint it read does not have it either), and the
    next poll, whose fingerprint has it, shows it; undone, the poll after shows the first
    again. On SQLite as on PostgreSQL: a poll takes no write lock, so the change commits
    in the middle of the build on both."""
    headers = owner(stack)
    frame_id = await new_frame(client, headers)
    playlist_id = await new_playlist(client, headers, 2)
    await one_hour_schedule(client, headers, frame_id, playlist_id)
    token = device(stack, frame_id)
    photo = (await versions_recorded(client, token, frame_id))["items"][0]
    made = await client.post(f"/api/v1/media/photos/{photo['photo_id']}/versions",
                             headers=headers, json={"version_type": "STYLED",
                             "processing_mode": "sepia", "set_current": True})  # fmt: skip
    assert made.status_code == 201, made.text
    styled = made.json()["version_id"]

    async def make_current(version_id: str) -> None:
        url = f"/api/v1/media/photos/{photo['photo_id']}/versions/{version_id}/current"
        response = await client.put(url, headers=headers)
        assert response.status_code == 200, response.text

    await poll(client, token, frame_id)  # kept: the styled version
    await make_current(photo["version_id"])  # the next poll builds the original...
    original = ScheduleService.now_showing

    async def change_then_show(self: ScheduleService, frame: Any, at: Any) -> Any:
        monkeypatch.setattr(ScheduleService, "now_showing", original)
        await make_current(styled)  # ...while this commits in the middle of its build
        return await original(self, frame, at)

    monkeypatch.setattr(ScheduleService, "now_showing", change_then_show)
    built = (await poll(client, token, frame_id)).json()
    assert built["items"][0]["version_id"] == photo["version_id"]  # the snapshot's rows
    after = (await poll(client, token, frame_id)).json()
    assert after["items"][0]["version_id"] == styled
    assert shown(after) == shown(await fresh(client, token, frame_id))
    await make_current(photo["version_id"])  # undone
    served = (await poll(client, token, frame_id)).json()
    assert served["items"][0]["version_id"] == photo["version_id"]
    assert shown(served) == shown(await fresh(client, token, frame_id))


# -- the memo itself -------------------------------------------------------------------------


def kept(inputs: FeedInputs, built_at: datetime, minutes: int, size: int = 10) -> KeptFeed:
    return KeptFeed(inputs, built_at, built_at + timedelta(minutes=minutes), b"x" * size, '"e"')


def test_a_kept_feed_serves_only_its_inputs_and_its_time() -> None:
    memo = FeedMemo()
    inputs = FeedInputs(("UTC", 800, 480, "LANDSCAPE"), "s", "p", "i", None)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    memo.put("frame_a", kept(inputs, start, 5))
    assert memo.get("frame_a", inputs, start + timedelta(minutes=4)) is not None
    assert memo.get("frame_a", inputs, start + timedelta(minutes=5)) is None  # until: exclusive
    assert memo.get("frame_a", inputs, start - timedelta(seconds=1)) is None  # before it was built
    changed = FeedInputs(("UTC", 800, 480, "LANDSCAPE"), "s", "p", "i2", None)
    assert memo.get("frame_a", changed, start) is None
    assert memo.get("frame_b", inputs, start) is None
    assert (memo.hits, memo.misses) == (1, 4)


def test_the_memo_drops_the_least_recently_used_past_its_budget() -> None:
    memo = FeedMemo(budget=25)
    inputs = FeedInputs(("UTC", 1, 1, "LANDSCAPE"), None, None, None, None)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    memo.put("a", kept(inputs, start, 5))
    memo.put("b", kept(inputs, start, 5))
    assert memo.get("a", inputs, start) is not None  # b is now the least recently used
    memo.put("c", kept(inputs, start, 5))
    assert memo.get("b", inputs, start) is None
    assert memo.get("a", inputs, start) is not None and memo.get("c", inputs, start) is not None
    assert memo.size == 20 and len(memo) == 2
    memo.put("a", kept(inputs, start, 5, size=15))  # replacing counts the new size only
    assert memo.size == 25 and len(memo) == 2
    memo.put("huge", kept(inputs, start, 5, size=26))
    assert memo.get("huge", inputs, start) is None and memo.size == 25
