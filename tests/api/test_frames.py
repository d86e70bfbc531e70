"""Frames, frame tokens and rotation schedules over HTTP on both stacks: the registry, who
sees what (a frame token reads only its own frame), schedule validation (422), which
schedule applies when, and the seeded no-repeat order of a schedule's photos."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import pytest
from PIL import Image

from media_service.auth.principal import Role
from media_service.frames.schedules import MAX_SCHEDULES_PER_FRAME

from conftest import Stack

ORG, OTHER_ORG = "org_fr", "org_fr_b"
FRAMES = "/api/v1/media/frames"
SCHEDULES = "/api/v1/media/schedules"
FILES = "/api/v1/media/files"
PL = "/api/v1/media/playlists"


def owner(stack: Stack, name: str = "u1") -> dict[str, str]:
    return stack.auth(name, ORG, Role.TEACHER)


def device(stack: Stack, frame_id: str) -> dict[str, str]:
    token = stack.token(frame_id, ORG, Role.FRAME, frame_id=frame_id)
    return {"Authorization": f"Bearer {token}"}


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40 + seed, 30), ((seed * 53) % 256, 90, 140)).save(buffer, "JPEG")
    return buffer.getvalue()


async def new_frame(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> str:
    body = {"name": "Kitchen", "time_zone": "Europe/Berlin", **body}
    response = await client.post(FRAMES, headers=headers, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["frame_id"])


async def new_playlist(
    client: httpx.AsyncClient, headers: dict[str, str], photos: int, first: int = 0
) -> str:
    ids = [await upload(client, headers, seed) for seed in range(first, first + photos)]
    body = {"name": "Family", "playlist_type": "MANUAL", "photo_ids": ids}
    response = await client.post(PL, headers=headers, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["playlist_id"])


async def upload(client: httpx.AsyncClient, headers: dict[str, str], seed: int) -> str:
    """A class photo made from ``seed``; its id."""
    response = await client.post(
        FILES,
        headers=headers,
        files={"file": (f"p{seed}.jpg", jpeg(seed), "image/jpeg")},
        data={"owner_type": "ClassSession", "owner_id": "cs-1"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["file_id"])


async def new_schedule(
    client: httpx.AsyncClient, headers: dict[str, str], frame_id: str, **body: Any
) -> dict[str, Any]:
    response = await client.post(SCHEDULES, headers=headers, json={"frame_id": frame_id, **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


# -- registry and tokens -----------------------------------------------------------------


async def test_frame_registry_round_trip(client: httpx.AsyncClient, stack: Stack) -> None:
    headers = owner(stack)
    frame_id = await new_frame(
        client, headers, screen_width=1080, screen_height=1920, orientation="PORTRAIT"
    )
    got = (await client.get(f"{FRAMES}/{frame_id}", headers=headers)).json()
    assert got["screen_width"] == 1080 and got["orientation"] == "PORTRAIT"
    assert got["time_zone"] == "Europe/Berlin" and got["last_seen_at"] is None
    changed = await client.put(
        f"{FRAMES}/{frame_id}",
        headers=headers,
        json={"name": "Hall", "time_zone": "America/New_York"},
    )
    assert changed.status_code == 200
    assert changed.json()["name"] == "Hall"
    listed = (await client.get(FRAMES, headers=headers)).json()["items"]
    assert [f["frame_id"] for f in listed] == [frame_id]
    assert (await client.get(FRAMES, headers=owner(stack, "u2"))).json()["items"] == []
    assert (await client.delete(f"{FRAMES}/{frame_id}", headers=headers)).status_code == 204
    assert (await client.get(f"{FRAMES}/{frame_id}", headers=headers)).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "time_zone": "Mars/Olympus"},
        {"name": "x", "screen_width": 0},
        {"name": "x", "orientation": "DIAGONAL"},
        {"name": ""},
        {"name": "x", "colour": "red"},
    ],
)
async def test_bad_frames_get_422(
    client: httpx.AsyncClient, stack: Stack, body: dict[str, Any]
) -> None:
    response = await client.post(FRAMES, headers=owner(stack), json=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_frame_token_reads_only_its_own_frame(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    headers = owner(stack)
    mine, other = await new_frame(client, headers), await new_frame(client, headers)
    issued = await client.post(f"{FRAMES}/{mine}/token", headers=headers, json={"ttl_days": 30})
    assert issued.status_code == 201, issued.text
    token = {"Authorization": f"Bearer {issued.json()['token']}"}
    assert (await client.get(f"{FRAMES}/{mine}", headers=token)).status_code == 200
    assert (await client.get(f"{SCHEDULES}/frame/{mine}", headers=token)).status_code == 200
    for path in (f"{FRAMES}/{other}", f"{SCHEDULES}/frame/{other}"):
        response = await client.get(path, headers=token)
        assert response.status_code == 404, path
    listed = (await client.get(FRAMES, headers=token)).json()["items"]
    assert [f["frame_id"] for f in listed] == [mine]
    # A device changes nothing: not its frame, not its schedules, no new tokens.
    assert (
        await client.put(f"{FRAMES}/{mine}", headers=token, json={"name": "y"})
    ).status_code == 403
    assert (await client.post(f"{FRAMES}/{mine}/token", headers=token, json={})).status_code == 403
    response = await client.post(
        SCHEDULES, headers=token, json={"frame_id": mine, "schedule_type": "CONTINUOUS"}
    )
    assert response.status_code == 403


async def test_revoking_a_frames_tokens_locks_out_the_old_device_not_the_new(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    headers = owner(stack)
    frame_id, other = await new_frame(client, headers), await new_frame(client, headers)

    async def issued(frame: str) -> dict[str, str]:
        response = await client.post(f"{FRAMES}/{frame}/token", headers=headers, json={})
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}

    stolen, elsewhere = await issued(frame_id), await issued(other)
    assert (await client.get(f"{FRAMES}/{frame_id}/feed", headers=stolen)).status_code == 200
    # Neither the device itself nor another user may revoke; the owner may.
    assert (await client.delete(f"{FRAMES}/{frame_id}/token", headers=stolen)).status_code == 403
    stranger = owner(stack, "u2")
    assert (await client.delete(f"{FRAMES}/{frame_id}/token", headers=stranger)).status_code == 404
    assert (await client.delete(f"{FRAMES}/{frame_id}/token", headers=headers)).status_code == 204

    for path in (
        f"{FRAMES}/{frame_id}",
        f"{FRAMES}/{frame_id}/feed",
        f"{SCHEDULES}/frame/{frame_id}",
    ):
        refused = await client.get(path, headers=stolen)
        assert refused.status_code == 404, path
    assert (await client.get(FRAMES, headers=stolen)).json()["items"] == []
    fresh = await issued(frame_id)
    assert (await client.get(f"{FRAMES}/{frame_id}/feed", headers=fresh)).status_code == 200
    assert (await client.get(f"{FRAMES}/{other}/feed", headers=elsewhere)).status_code == 200


async def test_other_users_and_organizations_cannot_see_a_frame(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    frame_id = await new_frame(client, owner(stack))
    strangers = [
        owner(stack, "u2"),
        stack.auth("adm", OTHER_ORG, Role.ADMIN),
        device(stack, "frame_01jd3k0000000000000000000a"),
    ]
    for headers in strangers:
        assert (await client.get(f"{FRAMES}/{frame_id}", headers=headers)).status_code == 404
    admin = stack.auth("adm", ORG, Role.ADMIN)
    assert (
        await client.put(f"{FRAMES}/{frame_id}", headers=admin, json={"name": "A"})
    ).status_code == 200
    service = stack.auth("svc", ORG, Role.SERVICE)
    assert (await client.get(f"{FRAMES}/{frame_id}", headers=service)).status_code == 200
    assert (await client.delete(f"{FRAMES}/{frame_id}", headers=service)).status_code == 403
    assert (await client.get(f"{FRAMES}/not-an-id", headers=admin)).status_code == 404


# -- schedules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"schedule_type": "TIME_BASED", "start_time": "25:00", "end_time": "06:00"}, "start_time"),
        ({"schedule_type": "TIME_BASED", "start_time": "7:00", "end_time": "08:00"}, "start_time"),
        ({"schedule_type": "TIME_BASED", "start_time": "07:00"}, None),
        ({"schedule_type": "TIME_BASED", "start_time": "07:00", "end_time": "07:00"}, None),
        (
            {
                "schedule_type": "TIME_BASED",
                "start_time": "07:00",
                "end_time": "08:00",
                "days_of_week": [7],
            },
            "days_of_week",
        ),
        (
            {
                "schedule_type": "TIME_BASED",
                "start_time": "07:00",
                "end_time": "08:00",
                "days_of_week": [1, 1],
            },
            None,
        ),
        ({"schedule_type": "CONTINUOUS", "rotation_interval": 0}, "rotation_interval"),
        ({"schedule_type": "CONTINUOUS", "rotation_interval": 100_000}, "rotation_interval"),
        ({"schedule_type": "CONTINUOUS", "start_time": "07:00", "end_time": "08:00"}, None),
        ({"schedule_type": "EVENT_BASED"}, None),
        (
            {
                "schedule_type": "EVENT_BASED",
                "occasions": [{"kind": "YEARLY", "month": 2, "day": 30}],
            },
            "occasions",
        ),
        (
            {"schedule_type": "EVENT_BASED", "occasions": [{"kind": "HOLIDAYS", "country": "XX"}]},
            "occasions",
        ),
        (
            {
                "schedule_type": "EVENT_BASED",
                "occasions": [
                    {"kind": "DATE_RANGE", "start_date": "2025-05-02", "end_date": "2025-05-01"}
                ],
            },
            "occasions",
        ),
        ({"schedule_type": "SOMETIMES"}, "schedule_type"),
        ({"schedule_type": "CONTINUOUS", "transition": "explode"}, "transition"),
    ],
)
async def test_invalid_schedules_get_422(
    client: httpx.AsyncClient, stack: Stack, body: dict[str, Any], field: str | None
) -> None:
    headers = owner(stack)
    frame_id = await new_frame(client, headers)
    response = await client.post(SCHEDULES, headers=headers, json={"frame_id": frame_id, **body})
    assert response.status_code == 422, response.text
    if field is not None:
        assert field in str(response.json()["errors"])


async def test_schedule_crud_and_the_schedule_that_applies(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    headers = owner(stack)
    frame_id = await new_frame(client, headers)
    always = await new_schedule(client, headers, frame_id, schedule_type="CONTINUOUS")
    night = await new_schedule(
        client,
        headers,
        frame_id,
        schedule_type="TIME_BASED",
        start_time="22:00",
        end_time="06:00",
        days_of_week=[4, 0],
        priority=1,
    )
    assert night["days_of_week"] == [0, 4]
    christmas = await new_schedule(
        client,
        headers,
        frame_id,
        schedule_type="EVENT_BASED",
        priority=1,
        occasions=[{"kind": "HOLIDAYS", "country": "DE"}],
    )

    async def applies(at: str) -> dict[str, Any]:
        response = await client.get(
            f"{SCHEDULES}/frame/{frame_id}", headers=headers, params={"at": at}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    friday_night = await applies("2025-06-13T23:30:00+02:00")
    assert friday_night["active_schedule_id"] == night["schedule_id"]
    assert friday_night["next_change_at"] == "2025-06-14T04:00:00Z"  # 06:00 CEST Saturday
    saturday_noon = await applies("2025-06-14T12:00:00+02:00")
    assert saturday_noon["active_schedule_id"] == always["schedule_id"]
    holiday = await applies("2025-12-25T12:00:00+01:00")
    assert holiday["active_schedule_id"] == christmas["schedule_id"]
    assert len(holiday["schedules"]) == 3

    # Turning the continuous one off leaves the frame asleep between windows.
    path = f"{SCHEDULES}/{always['schedule_id']}"
    response = await client.put(path, headers=headers, json={"is_active": False})
    assert response.status_code == 200 and response.json()["is_active"] is False
    asleep = await applies("2025-06-14T12:00:00+02:00")
    assert asleep["active_schedule_id"] is None
    assert asleep["next_change_at"] == "2025-06-16T20:00:00Z"  # Monday 22:00 CEST

    # A change that would make it invalid is refused, and nothing changes.
    response = await client.put(path, headers=headers, json={"start_time": "07:00"})
    assert response.status_code == 422
    response = await client.put(
        path,
        headers=headers,
        json={"schedule_type": "TIME_BASED", "start_time": "07:00", "end_time": "09:00"},
    )
    assert response.status_code == 200 and response.json()["start_time"] == "07:00"
    assert (await client.delete(path, headers=headers)).status_code == 204
    assert (await client.get(path, headers=headers)).status_code == 404
    assert (await client.get(path, headers=owner(stack, "u2"))).status_code == 404


async def test_schedule_needs_a_playlist_the_user_can_read(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    headers = owner(stack)
    frame_id = await new_frame(client, headers)
    theirs = await new_playlist(client, owner(stack, "u2"), 1)
    response = await client.post(
        SCHEDULES,
        headers=headers,
        json={"frame_id": frame_id, "schedule_type": "CONTINUOUS", "playlist_id": theirs},
    )
    assert response.status_code == 422
    assert "playlist_id" in str(response.json()["errors"])


async def test_schedule_photos_are_a_seeded_shuffle_without_repeats(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    headers = owner(stack)
    frame_id = await new_frame(client, headers)
    playlist_id = await new_playlist(client, headers, 6)
    schedule = await new_schedule(
        client,
        headers,
        frame_id,
        schedule_type="CONTINUOUS",
        playlist_id=playlist_id,
        shuffle=True,
        rotation_interval=10,
    )
    path = f"{SCHEDULES}/{schedule['schedule_id']}/photos"
    token = device(stack, frame_id)

    async def photos(at: str) -> dict[str, Any]:
        response = await client.get(path, headers=token, params={"at": at})
        assert response.status_code == 200, response.text
        return dict(response.json())

    first = await photos("2030-01-01T00:00:00Z")
    again = await photos("2030-01-01T00:00:05Z")
    assert first["photo_count"] == 6 and len(set(first["photo_ids"])) == 6
    assert first["photo_ids"] == again["photo_ids"]  # same cycle, same order (any replica)
    assert first["active"] is True and first["cycle"] == again["cycle"]
    orders = {tuple(first["photo_ids"])}
    for step in range(1, 6):  # the next cycles: 60 s each, every one a permutation
        later = await photos(f"2030-01-01T00:0{step}:00Z")
        assert sorted(later["photo_ids"]) == sorted(first["photo_ids"])
        orders.add(tuple(later["photo_ids"]))
    assert len(orders) > 1  # cycles are shuffled anew

    manual = await client.put(
        f"{SCHEDULES}/{schedule['schedule_id']}", headers=headers, json={"shuffle": False}
    )
    assert manual.status_code == 200
    in_order = (await client.get(f"{PL}/{playlist_id}", headers=headers)).json()["photo_ids"]
    assert (await photos("2030-01-01T00:00:00Z"))["photo_ids"] == in_order
    assert (
        await client.get(path, headers=device(stack, "frame_01jd3k0000000000000000000a"))
    ).status_code == 404


# -- the feed ----------------------------------------------------------------------------


FEED_AT = {"overnight": "2025-06-13T23:30:00+02:00", "day": "2025-06-14T12:00:00+02:00"}


async def feed(
    client: httpx.AsyncClient, headers: dict[str, str], frame_id: str, at: str, **extra: str
) -> httpx.Response:
    return await client.get(
        f"{FRAMES}/{frame_id}/feed", headers={**headers, **extra}, params={"at": at}
    )


async def test_feed_of_a_frame_with_no_schedule_sleeps(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    frame_id = await new_frame(client, owner(stack))
    response = await feed(client, device(stack, frame_id), frame_id, FEED_AT["day"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "SLEEP" and body["items"] == []
    assert body["next_change_at"] is None and body["schedule_id"] is None
    await stack.state.seen.flush()  # the loop would, within seconds (test_frames_seen.py)
    seen = (await client.get(f"{FRAMES}/{frame_id}", headers=owner(stack))).json()
    assert seen["last_seen_at"] is not None  # the device's poll is noted


async def test_feed_follows_an_overnight_schedule_with_etags(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    headers = owner(stack)
    frame_id = await new_frame(
        client, headers, screen_width=800, screen_height=480, orientation="PORTRAIT"
    )
    playlist_id = await new_playlist(client, headers, 3)
    night = await new_schedule(
        client,
        headers,
        frame_id,
        schedule_type="TIME_BASED",
        start_time="22:00",
        end_time="06:00",
        playlist_id=playlist_id,
        transition="slide",
        rotation_interval=30,
    )
    token = device(stack, frame_id)
    for _ in range(100):  # the original versions are recorded by a consumer of file.uploaded
        response = await feed(client, token, frame_id, FEED_AT["overnight"])
        assert response.status_code == 200, response.text
        body = response.json()
        if all(item["version_id"] for item in body["items"]):
            break
        await asyncio.sleep(0.1)
    assert all(item["version_id"] for item in body["items"])
    assert body["state"] == "ACTIVE" and body["schedule_id"] == night["schedule_id"]
    assert body["transition"] == "slide" and body["rotation_interval"] == 30
    assert body["next_change_at"] == "2025-06-14T04:00:00Z"
    assert body["screen"] == {"width": 480, "height": 800}
    assert len(body["items"]) == 3 and not any(item["cached"] for item in body["items"])
    assert len({item["photo_id"] for item in body["items"]}) == 3
    # Each URL works without a token and is sized for the portrait screen.
    image = await client.get(body["items"][0]["url"])
    assert image.status_code == 200, image.text
    with Image.open(io.BytesIO(image.content)) as picture:
        assert picture.width <= 480 and picture.height <= 800
    etag = response.headers["etag"]
    again = await feed(client, token, frame_id, FEED_AT["overnight"], **{"If-None-Match": etag})
    if again.status_code == 200:  # the signing period rolled over in between: new URLs
        assert again.headers["etag"] != etag
        etag = again.headers["etag"]
        again = await feed(client, token, frame_id, FEED_AT["overnight"], **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    daytime = await feed(client, token, frame_id, FEED_AT["day"], **{"If-None-Match": etag})
    assert daytime.status_code == 200 and daytime.json()["state"] == "SLEEP"
    assert daytime.json()["next_change_at"] == "2025-06-14T20:00:00Z"
    other = await new_frame(client, headers)
    assert (await feed(client, token, other, FEED_AT["day"])).status_code == 404
    assert (await feed(client, owner(stack, "u2"), frame_id, FEED_AT["day"])).status_code == 404


async def test_feed_on_an_event_day(client: httpx.AsyncClient, stack: Stack) -> None:
    headers = owner(stack)
    frame_id = await new_frame(client, headers, time_zone="America/New_York")
    everyday = await new_playlist(client, headers, 1)
    party = await new_playlist(client, headers, 2, first=10)
    await new_schedule(client, headers, frame_id, schedule_type="CONTINUOUS", playlist_id=everyday)
    birthday = await new_schedule(
        client,
        headers,
        frame_id,
        schedule_type="EVENT_BASED",
        playlist_id=party,
        occasions=[{"kind": "YEARLY", "month": 7, "day": 4}],
    )
    token = device(stack, frame_id)
    on_the_day = (await feed(client, token, frame_id, "2026-07-04T23:00:00-04:00")).json()
    assert on_the_day["schedule_id"] == birthday["schedule_id"]
    assert on_the_day["playlist_id"] == party and len(on_the_day["items"]) == 2
    assert on_the_day["next_change_at"] == "2026-07-05T04:00:00Z"  # local midnight
    after = (await feed(client, token, frame_id, "2026-07-05T00:00:00-04:00")).json()
    assert after["playlist_id"] == everyday and len(after["items"]) == 1


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00"])
async def test_an_instant_out_of_range_is_422_not_an_overflow(
    client: httpx.AsyncClient, stack: Stack, at: str
) -> None:
    headers = owner(stack)
    frame_id = await new_frame(client, headers)
    playlist_id = await new_playlist(client, headers, 1)
    schedule = await new_schedule(
        client, headers, frame_id, schedule_type="CONTINUOUS", playlist_id=playlist_id
    )
    for path in (
        f"/api/v1/media/frames/{frame_id}/feed",
        f"/api/v1/media/schedules/{schedule['schedule_id']}/photos",
        f"/api/v1/media/schedules/frame/{frame_id}",
    ):
        response = await client.get(path, params={"at": at}, headers=headers)
        assert response.status_code == 422, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_concurrent_schedules_never_pass_the_per_frame_limit(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    headers = owner(stack)
    frame_id = await new_frame(client, headers)
    playlist_id = await new_playlist(client, headers, 1)
    body = {"frame_id": frame_id, "schedule_type": "CONTINUOUS", "playlist_id": playlist_id}
    for _ in range(MAX_SCHEDULES_PER_FRAME - 2):
        created = await client.post(SCHEDULES, headers=headers, json=body)
        assert created.status_code == 201, created.text
    racing = await asyncio.gather(
        *(client.post(SCHEDULES, headers=headers, json=body) for _ in range(6))
    )
    assert sorted(r.status_code for r in racing) == [201, 201, 422, 422, 422, 422]
    listed = await client.get(f"{SCHEDULES}/frame/{frame_id}", headers=headers)
    assert len(listed.json()["schedules"]) == MAX_SCHEDULES_PER_FRAME
