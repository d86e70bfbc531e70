"""Photo metadata end to end on both stacks: analysis after upload, privacy, AI results,
criteria queries and media.metadata.updated."""

from __future__ import annotations

import asyncio
import base64
import io
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image, ImageFilter
from sqlalchemy import delete, select

from media_service.auth.principal import Role
from media_service.db.uow import unit_of_work
from media_service.metadata.models import PhotoMetadata

from conftest import Stack

ORG = "org_meta"
FILES = "/api/v1/media/files"
META = "/api/v1/media/metadata"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"preprocess_uploads": True}


def teacher(stack: Stack, name: str = "teacher-1") -> dict[str, str]:
    return stack.auth(name, ORG, Role.TEACHER)


def admin(stack: Stack) -> dict[str, str]:
    return stack.auth("admin-1", ORG, Role.ADMIN)


def service(stack: Stack) -> dict[str, str]:
    return stack.auth("vision", ORG, Role.SERVICE)


def photo(
    *,
    size: tuple[int, int] = (800, 600),
    seed: int = 1,
    gps: tuple[float, float] | None = None,
    make: str | None = None,
    blur: float = 0,
    darken: float = 1.0,
) -> bytes:
    """A detailed photo-like image (noise + shapes), optionally with EXIF and GPS."""
    rng = np.random.default_rng(seed)
    width, height = size
    base = np.zeros((height, width, 3), np.float32)
    base[..., 0] = np.linspace(40, 220, width)[None, :]
    base[..., 2] = np.linspace(200, 60, height)[:, None]
    base[..., 1] = 120
    base += rng.normal(0, 25, base.shape)
    for _ in range(30):
        x, y = rng.integers(0, width - 60), rng.integers(0, height - 60)
        base[y : y + 50, x : x + 50] = rng.integers(0, 255, 3)
    image = Image.fromarray(np.clip(base * darken, 0, 255).astype(np.uint8))
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
        exif[0x0110] = "Model X"
        exif.get_ifd(0x8769).update(
            {0x9003: "2024:07:14 18:30:00", 0x9011: "+02:00", 0x829D: 2.8, 0x8827: 200}
        )
    if gps:
        lat, lon = gps
        exif.get_ifd(0x8825).update(
            {
                1: "N" if lat >= 0 else "S",
                2: _dms(abs(lat)),
                3: "E" if lon >= 0 else "W",
                4: _dms(abs(lon)),
            }
        )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def _dms(value: float) -> tuple[float, float, float]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round(((value - degrees) * 60 - minutes) * 60, 2)
    return (float(degrees), float(minutes), seconds)


async def upload(
    client: httpx.AsyncClient, stack: Stack, data: bytes, headers: dict[str, str], owner: str
) -> str:
    response = await client.post(
        FILES,
        headers=headers,
        files={"file": ("p.jpg", data, "image/jpeg")},
        data={"owner_type": "ClassSession", "owner_id": owner},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["file_id"])


async def analysed(client: httpx.AsyncClient, stack: Stack, file_id: str) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while not (await client.get(f"{FILES}/{file_id}", headers=admin(stack))).json()[
            "processed"
        ]:
            await asyncio.sleep(0.1)
    response = await client.get(f"{META}/{file_id}", headers=admin(stack))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def metadata_events(stack: Stack, client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every media.metadata.updated seen by a durable consumer of the stack's bus."""
    return await stack.tap("test-metadata-tap", "media.metadata.updated")


async def test_an_uploaded_photo_gets_exif_place_quality_colours_and_labels(
    client: httpx.AsyncClient, stack: Stack, metadata_events: list[dict[str, Any]]
) -> None:
    data = photo(gps=(52.5163, 13.3777), make="Canon")
    file_id = await upload(client, stack, data, teacher(stack), "cs-1")
    body = await analysed(client, stack, file_id)
    assert body["camera_make"] == "Canon" and body["camera_model"] == "Model X"
    assert body["aperture"] == "f/2.8" and body["iso"] == 200
    assert abs(float(body["latitude"]) - 52.5163) < 1e-3
    assert abs(float(body["longitude"]) - 13.3777) < 1e-3
    assert "Berlin" in body["location_name"]
    taken = datetime.fromisoformat(body["photo_taken_at"])
    assert (taken.hour, taken.minute) == (16, 30)  # 18:30 at +02:00, stored in UTC
    assert body["photo_taken_offset_minutes"] == 120
    for score in ("quality_score", "blur_score", "brightness", "contrast"):
        assert 0 <= float(body[score]) <= 1
    assert body["ai_colors"] and all(c["name"] and c["hex"] for c in body["ai_colors"])
    assert "landscape" in body["ai_labels"]
    assert body["label_sources"]["labels"]["landscape"] == "dimensions"
    assert body["orientation"] == "landscape" and body["face_count"] == 0
    assert len(body["perceptual_hash"]) == 16
    async with asyncio.timeout(10):
        while not [e for e in metadata_events if e["file_id"] == file_id]:
            await asyncio.sleep(0.05)
    event = next(e for e in metadata_events if e["file_id"] == file_id)
    assert event["user_id"] == "cs-1" and "landscape" in event["ai_labels"]
    assert event["quality_score"] == pytest.approx(float(body["quality_score"]))


async def test_a_blurred_or_dark_copy_scores_lower(client: httpx.AsyncClient, stack: Stack) -> None:
    sharp = await analysed(
        client, stack, await upload(client, stack, photo(seed=3), teacher(stack), "cs-2")
    )
    blurred = await analysed(
        client, stack, await upload(client, stack, photo(seed=3, blur=4), teacher(stack), "cs-2")
    )
    dark = await analysed(
        client,
        stack,
        await upload(client, stack, photo(seed=3, darken=0.3), teacher(stack), "cs-2"),
    )
    assert float(blurred["blur_score"]) < float(sharp["blur_score"])
    assert float(blurred["quality_score"]) < float(sharp["quality_score"])
    assert float(dark["brightness"]) < float(sharp["brightness"])


async def test_location_and_faces_are_only_for_the_owner_and_admins(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    file_id = await upload(
        client, stack, photo(gps=(-33.8568, 151.2153), seed=5), teacher(stack), "cs-3"
    )
    await analysed(client, stack, file_id)
    own = (await client.get(f"{META}/{file_id}", headers=teacher(stack))).json()
    assert own["latitude"] is not None and own["redacted"] == []
    other = (await client.get(f"{META}/{file_id}", headers=teacher(stack, "teacher-2"))).json()
    assert other["latitude"] is None and other["longitude"] is None
    assert other["location_name"] is None and other["face_detection"] is None
    assert "GPS" not in other["full_metadata"]
    assert set(other["redacted"]) >= {"latitude", "longitude", "location_name", "face_detection"}
    # Nor can a filter on place reveal it.
    near = {"criteria": {"near": {"latitude": -33.86, "longitude": 151.21, "radius_km": 5}}}
    found = await client.post(f"{META}/query", headers=teacher(stack, "teacher-2"), json=near)
    assert found.status_code == 200 and found.json()["items"] == []
    found = await client.post(f"{META}/query", headers=teacher(stack), json=near)
    assert [item["file_id"] for item in found.json()["items"]] == [file_id]
    outsider = stack.auth("x", "org_other", Role.ADMIN)
    assert (await client.get(f"{META}/{file_id}", headers=outsider)).status_code == 404


async def test_an_ai_service_writes_labels_that_keep_their_source(
    client: httpx.AsyncClient, stack: Stack, metadata_events: list[dict[str, Any]]
) -> None:
    file_id = await upload(client, stack, photo(seed=7), teacher(stack), "cs-4")
    await analysed(client, stack, file_id)
    update = {"ai_labels": ["Beach ", "sea"], "ai_scenes": ["beach"], "source": "vision-2"}
    response = await client.put(f"{META}/{file_id}", headers=service(stack), json=update)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["ai_labels"]) == {"landscape", "beach", "sea"}
    assert body["ai_scenes"] == ["beach"]
    assert body["label_sources"]["labels"]["beach"] == "ai:vision-2"
    assert body["label_sources"]["labels"]["landscape"] == "dimensions"
    # The same source answering again replaces its earlier answer, nothing else.
    again = {"ai_labels": ["dog"], "source": "vision-2"}
    body = (await client.put(f"{META}/{file_id}", headers=service(stack), json=again)).json()
    assert set(body["ai_labels"]) == {"landscape", "dog"} and body["ai_scenes"] == ["beach"]
    forbidden = await client.put(f"{META}/{file_id}", headers=teacher(stack), json=again)
    assert forbidden.status_code == 403
    invalid = await client.put(
        f"{META}/{file_id}", headers=service(stack), json={"ai_labels": [""]}
    )
    assert invalid.status_code == 422
    async with asyncio.timeout(10):
        while len([e for e in metadata_events if e["file_id"] == file_id]) < 3:
            await asyncio.sleep(0.05)


async def test_labels_with_control_characters_are_refused(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    # A NUL reached PostgreSQL, which refuses it in text and JSON: it was a 500 there.
    file_id = await upload(client, stack, photo(seed=8), teacher(stack), "cs-4")
    for label in ("\u0000", "dog\u0000", "two\nlines", "c1\u009f"):
        for field in ("ai_labels", "ai_objects", "ai_scenes"):
            body = {field: [label], "source": "vision-2"}
            response = await client.put(f"{META}/{file_id}", headers=service(stack), json=body)
            assert response.status_code == 422, (field, label, response.text)
            assert response.json()["code"] == "validation_error"


async def test_a_criteria_query_returns_exactly_the_callers_matching_photos(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    mine = [
        await upload(client, stack, photo(seed=s), teacher(stack), "cs-5") for s in (11, 12, 13)
    ]
    theirs = await upload(client, stack, photo(seed=14), teacher(stack, "teacher-9"), "cs-6")
    for file_id in [*mine, theirs]:
        await analysed(client, stack, file_id)
    for file_id in (mine[0], mine[2], theirs):
        scenes = {"ai_scenes": ["beach"], "source": "vision"}
        await client.put(f"{META}/{file_id}", headers=service(stack), json=scenes)
    criteria = {
        "scenes": {"any": ["beach"]},
        "sort": {"field": "quality_score", "direction": "desc"},
    }
    # A student sees none of these class photos; the admin sees all of them.
    student = stack.auth("stu", ORG, Role.STUDENT)
    empty = await client.post(f"{META}/query", headers=student, json={"criteria": criteria})
    assert empty.json()["items"] == []
    everything = await client.post(
        f"{META}/query", headers=admin(stack), json={"criteria": criteria}
    )
    assert {i["file_id"] for i in everything.json()["items"]} == {mine[0], mine[2], theirs}
    # Paging with a cursor gives the same, in quality order.
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await client.post(
            f"{META}/query",
            headers=admin(stack),
            json={"criteria": criteria, "limit": 1, "cursor": cursor},
        )
        assert page.status_code == 200, page.text
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [i["file_id"] for i in seen] == [i["file_id"] for i in everything.json()["items"]]
    qualities = [float(i["quality_score"]) for i in seen]
    assert qualities == sorted(qualities, reverse=True)


async def test_invalid_criteria_get_422_with_the_path_of_the_bad_field(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    for criteria, path in (
        ({"quality": {"min": 2}}, ["body", "criteria", "quality", "min"]),
        ({"scenes": {"some": ["x"]}}, ["body", "criteria", "scenes", "some"]),
        (
            {"near": {"latitude": 95, "longitude": 0, "radius_km": 1}},
            ["body", "criteria", "near", "latitude"],
        ),
        ({"sort": {"field": "password"}}, ["body", "criteria", "sort", "field"]),
        ({"bogus": 1}, ["body", "criteria", "bogus"]),
    ):
        response = await client.post(
            f"{META}/query", headers=admin(stack), json={"criteria": criteria}
        )
        assert response.status_code == 422, criteria
        assert any(error["loc"][: len(path)] == path for error in response.json()["errors"]), (
            criteria,
            response.json(),
        )
    # Not a cursor; a cursor whose time overflows once converted to UTC (was a 500).
    overflowing = '["photo_taken_at","desc","0001-01-01T00:00:00+01:00","x"]'
    for cursor in ("not-a-cursor", base64.urlsafe_b64encode(overflowing.encode()).decode()):
        bad_cursor = await client.post(
            f"{META}/query", headers=admin(stack), json={"criteria": {}, "cursor": cursor}
        )
        assert bad_cursor.status_code == 422, bad_cursor.text


async def test_a_members_query_follows_an_owner_change(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    alice = stack.auth("alice", ORG, Role.MEMBER)
    bob = stack.auth("bob", ORG, Role.MEMBER)
    response = await client.post(
        FILES,
        headers=alice,
        files={"file": ("p.jpg", photo(seed=21), "image/jpeg")},
        data={"owner_type": "User", "owner_id": "alice"},
    )
    file_id = response.json()["file_id"]
    await analysed(client, stack, file_id)

    async def found(headers: dict[str, str]) -> list[str]:
        page = await client.post(f"{META}/query", headers=headers, json={"criteria": {}})
        assert page.status_code == 200, page.text
        return [item["file_id"] for item in page.json()["items"]]

    assert await found(alice) == [file_id] and await found(bob) == []
    moved = await client.patch(f"{FILES}/{file_id}", headers=admin(stack), json={"owner_id": "bob"})
    assert moved.status_code == 200, moved.text
    assert (await client.get(f"{META}/{file_id}", headers=admin(stack))).json()["user_id"] == "bob"
    assert await found(alice) == [] and await found(bob) == [file_id]


async def test_first_writers_racing_for_a_record_make_one(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """The upload's consumer, the analysis job and an AI service's PUT may each be the
    first to need a photo's record: all of them succeed and one record exists (was a
    duplicate-key 500 on PostgreSQL)."""
    file_id = await upload(client, stack, photo(seed=11), teacher(stack), "cs-race")
    await analysed(client, stack, file_id)
    async with unit_of_work(stack.state.sessions) as session:  # as if it never existed
        await session.execute(delete(PhotoMetadata).where(PhotoMetadata.file_id == file_id))

    async def first_write(source: str) -> int:
        response = await client.put(
            f"{META}/{file_id}",
            headers=service(stack),
            json={"source": source, "ai_labels": [f"label-{source}"]},
        )
        return response.status_code

    statuses = await asyncio.gather(*(first_write(f"svc{n}") for n in range(6)))
    assert statuses == [200] * 6
    async with stack.state.sessions() as session:
        rows = (
            await session.scalars(select(PhotoMetadata).where(PhotoMetadata.file_id == file_id))
        ).all()
    assert len(rows) == 1
    # Each writer's answer is kept: none overwrote another's (the row is locked on PG).
    assert {f"label-svc{n}" for n in range(6)} <= set(rows[0].ai_labels)
