"""Photo versions end to end on both stacks: the original from the upload, built-in styles,
edited uploads, switching the current version (also under concurrent requests), deleting,
what downloads and renditions serve, media.version.created, authorisation and bad input."""

from __future__ import annotations

import asyncio
import hashlib
import io
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from PIL import Image
from sqlalchemy import delete, func, select

from api.test_bad_upload import assert_request_timeout, post_then_stall
from media_service.app import create_app
from media_service.auth.principal import Role
from media_service.ids import new_id
from media_service.imaging.specs import Fit
from media_service.media.gc import collect_garbage
from media_service.media.service import signed_path
from media_service.media.storage_keys import file_folder
from media_service.preprocessing.params import RenditionParams
from media_service.preprocessing.service import rendition_query
from media_service.preprocessing.sources import put_bytes
from media_service.versions import service as versions_service
from media_service.versions.keys import version_key
from media_service.versions.models import PhotoVersion, PhotoVersionCounter

from conftest import Stack

ORG = "org_ver"
FILES = "/api/v1/media/files"
PHOTOS = "/api/v1/media/photos"
RED, BLUE, GREEN = (220, 30, 30), (30, 40, 210), (20, 200, 40)


def owner(stack: Stack) -> dict[str, str]:
    return stack.auth("t1", ORG, Role.TEACHER)


def admin(stack: Stack) -> dict[str, str]:
    return stack.auth("admin-1", ORG, Role.ADMIN)


def photo(width: int = 96, height: int = 64, fmt: str = "JPEG") -> bytes:
    """Red on the left half, blue on the right, a green square at the top-left corner."""
    image = Image.new("RGB", (width, height), RED)
    image.paste(BLUE, (width // 2, 0, width, height))
    image.paste(GREEN, (0, 0, 12, 12))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def pixel(image: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    value = image.getpixel((x, y))
    assert isinstance(value, tuple)
    return (int(value[0]), int(value[1]), int(value[2]))


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    data: bytes,
    owner_type: str = "Teacher",
    owner_id: str = "t1",
    name: str = "p.jpg",
    content_type: str = "image/jpeg",
) -> str:
    response = await client.post(
        FILES,
        headers=headers,
        files={"file": (name, data, content_type)},
        data={"owner_type": owner_type, "owner_id": owner_id},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["file_id"])


def versions_url(photo_id: str, version_id: str | None = None) -> str:
    base = f"{PHOTOS}/{photo_id}/versions"
    return base if version_id is None else f"{base}/{version_id}"


async def styled(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    photo_id: str,
    mode: str,
    params: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body = {"version_type": "STYLED", "processing_mode": mode, **extra}
    if params is not None:
        body["processing_params"] = params
    response = await client.post(versions_url(photo_id), headers=headers, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def listed(client: httpx.AsyncClient, stack: Stack, photo_id: str) -> dict[str, Any]:
    response = await client.get(versions_url(photo_id), headers=admin(stack))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored_keys(stack: Stack, photo_id: str) -> list[str]:
    return [info.key async for info in stack.state.blobs.list(file_folder(photo_id))]


async def wait_until_gone(stack: Stack, prefix: str) -> None:
    async with asyncio.timeout(15):
        while [info async for info in stack.state.blobs.list(prefix)]:
            await asyncio.sleep(0.05)


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body


@pytest.fixture
async def version_events(stack: Stack, client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every media.version.created seen by a durable consumer of the stack's bus."""
    return await stack.tap("test-versions-tap", "media.version.created")


async def events_for(seen: list[dict[str, Any]], photo_id: str, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(15):
        while len([e for e in seen if e["photo_id"] == photo_id]) < count:
            await asyncio.sleep(0.05)
    return [e for e in seen if e["photo_id"] == photo_id]


# -- the original, and new versions -----------------------------------------------------------


async def test_an_uploaded_photo_is_its_own_current_original_and_that_is_announced(
    client: httpx.AsyncClient, stack: Stack, version_events: list[dict[str, Any]]
) -> None:
    data = photo()
    photo_id = await upload(client, owner(stack), data)
    [event] = await events_for(version_events, photo_id, 1)  # from file.uploaded
    assert event["version_type"] == "ORIGINAL" and event["file_id"] == photo_id
    assert event["user_id"] == "t1" and event["organization_id"] == ORG
    body = await listed(client, stack, photo_id)
    [original] = body["items"]
    assert body["current_version_id"] == original["version_id"] == event["version_id"]
    assert original["version_number"] == 1 and original["is_current"] is True
    assert original["version_type"] == "ORIGINAL" and original["version_name"] == "Original"
    assert original["sha256"] == hashlib.sha256(data).hexdigest()
    assert original["file_size"] == len(data) and original["content_type"] == "image/jpeg"
    assert original["cloud_url"] == f"{FILES}/{photo_id}/content?version=1"
    record = (await client.get(f"{FILES}/{photo_id}", headers=owner(stack))).json()
    assert original["local_path"] == record["storage_path"]
    await asyncio.sleep(0.3)  # the lazy path and the consumer never make two originals
    assert len(await events_for(version_events, photo_id, 1)) == 1
    one = await client.get(versions_url(photo_id, original["version_id"]), headers=owner(stack))
    assert one.status_code == 200 and one.json() == original


async def test_a_photo_without_version_rows_gets_its_original_on_first_use(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """Photos stored before versions existed (or by an external storage service)."""
    photo_id = await upload(client, owner(stack), photo())
    await listed(client, stack, photo_id)
    async with stack.state.sessions.begin() as session:  # back to "before versions"
        await session.execute(delete(PhotoVersion))
        await session.execute(delete(PhotoVersionCounter))
    body = await listed(client, stack, photo_id)
    assert [(v["version_number"], v["is_current"]) for v in body["items"]] == [(1, True)]


async def test_built_in_modes_render_new_versions_with_growing_numbers(
    client: httpx.AsyncClient, stack: Stack, version_events: list[dict[str, Any]]
) -> None:
    photo_id = await upload(client, owner(stack), photo())
    cases: list[tuple[str, dict[str, Any] | None]] = [
        ("black_and_white", None),
        ("sepia", None),
        ("rotate", {"angle": 90}),
        ("crop", {"x": 0, "y": 0, "width": 48, "height": 32}),
        ("crop", {"x": 0.5, "y": 0, "width": 0.5, "height": 1, "unit": "fraction"}),
        ("auto_enhance", None),
        ("vivid", None),
        ("warm", None),
        ("cool", None),
        ("vintage", None),
        ("high_contrast", None),
    ]
    made: dict[str, Image.Image] = {}
    for number, (mode, params) in enumerate(cases, start=2):
        version = await styled(client, owner(stack), photo_id, mode, params)
        assert version["version_number"] == number and version["version_type"] == "STYLED"
        assert version["processing_mode"] == mode and version["is_current"] is False
        assert version["user_id"] == "t1" and version["content_type"] == "image/jpeg"
        assert version["metadata"]["source_version_number"] == 1  # from the current one
        defaults = {"unit": "px"} if mode == "crop" else {}
        assert version["processing_params"] == {**defaults, **(params or {})}
        content = await client.get(version["cloud_url"], headers=owner(stack))
        assert content.status_code == 200 and content.headers["content-type"] == "image/jpeg"
        assert hashlib.sha256(content.content).hexdigest() == version["sha256"]
        image = decoded(content.content)
        assert (image.width, image.height) == (version["width"], version["height"])
        made[f"{mode}{number}"] = image

    grey = pixel(made["black_and_white2"], 70, 40)
    assert max(grey) - min(grey) <= 3
    red, green, blue = pixel(made["sepia3"], 70, 40)
    assert red > green > blue
    rotated = made["rotate4"]
    assert rotated.size == (64, 96)
    assert pixel(rotated, 58, 5)[1] > 150  # the green corner turned to the top right
    assert made["crop5"].size == (48, 32) and pixel(made["crop5"], 30, 20)[0] > 150
    assert made["crop6"].size == (48, 64) and pixel(made["crop6"], 20, 40)[2] > 150
    assert pixel(made["warm9"], 20, 40)[0] >= pixel(made["cool10"], 20, 40)[0] + 10
    created = await events_for(version_events, photo_id, len(cases) + 1)
    assert sorted(e["version_type"] for e in created) == ["ORIGINAL"] + ["STYLED"] * len(cases)
    assert all(e["file_id"] == photo_id and e["user_id"] == "t1" for e in created)


async def test_an_edited_file_uploaded_as_a_version_is_kept_byte_for_byte(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    photo_id = await upload(client, owner(stack), photo())
    edited = photo(80, 80, "PNG")
    response = await client.post(
        versions_url(photo_id),
        headers=owner(stack),
        files={"file": ("edit.png", edited, "image/png")},
        data={"version_name": "Retouched", "set_current": "true"},
    )
    assert response.status_code == 201, response.text
    version = response.json()
    assert response.headers["location"] == versions_url(photo_id, version["version_id"])
    assert version["version_type"] == "EDITED" and version["version_name"] == "Retouched"
    assert version["is_current"] is True and version["content_type"] == "image/png"
    assert (version["width"], version["height"]) == (80, 80)
    assert version["metadata"]["uploaded_file_name"] == "edit.png"
    download = await client.get(f"{FILES}/{photo_id}/content", headers=owner(stack))
    assert download.content == edited  # the current version, untouched
    assert download.headers["content-type"] == "image/png"
    assert download.headers["etag"] == f'"{hashlib.sha256(edited).hexdigest()}"'
    assert "-v2.png" in download.headers["content-disposition"]


# -- current version: what is served ----------------------------------------------------------


async def test_downloads_and_renditions_serve_the_current_version_unless_one_is_named(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    data = photo()
    photo_id = await upload(client, owner(stack), data)
    grey = await styled(client, owner(stack), photo_id, "black_and_white", set_current=True)
    assert grey["is_current"] is True
    headers = owner(stack)

    current = await client.get(f"{FILES}/{photo_id}/content", headers=headers)
    assert hashlib.sha256(current.content).hexdigest() == grey["sha256"]
    assert current.headers["etag"] == f'"{grey["sha256"]}"'
    head = await client.head(f"{FILES}/{photo_id}/content", headers=headers)
    assert head.headers["content-length"] == str(grey["file_size"])
    original = await client.get(f"{FILES}/{photo_id}/content?version=1", headers=headers)
    assert original.content == data
    ranged = await client.get(
        f"{FILES}/{photo_id}/content", headers={**headers, "Range": "bytes=0-9"}
    )
    assert ranged.status_code == 206 and ranged.content == current.content[:10]

    rendition = f"{FILES}/{photo_id}/rendition?width=48&format=png"
    shown = decoded((await client.get(rendition, headers=headers)).content)
    r, g, b = pixel(shown, 10, 20)
    assert max(r, g, b) - min(r, g, b) <= 3  # grey: the current version
    shown = decoded((await client.get(rendition + "&version=1", headers=headers)).content)
    assert pixel(shown, 10, 20)[0] > 150  # red: the original
    thumbnail = await client.get(f"{FILES}/{photo_id}/renditions/thumbnail", headers=headers)
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/webp"
    r, g, b = pixel(decoded(thumbnail.content), 10, 20)
    assert max(r, g, b) - min(r, g, b) <= 6

    # Signed URLs: the signature covers the version named, and only that one.
    signed = await client.post(f"{FILES}/{photo_id}/signed-url", headers=headers, json={})
    url = signed.json()["url"].removeprefix("http://media.test")
    assert (await client.get(url)).content == current.content
    assert_problem(await client.get(url + "&version=1"), 403, "invalid_signature")
    params = RenditionParams(48, None, Fit.CONTAIN, "png", None)
    path = f"{FILES}/{photo_id}/rendition?{rendition_query(params, 1)}"
    signed_rendition = signed_path(stack.state.signer, path, 60).path_and_query
    shown = decoded((await client.get(signed_rendition)).content)
    assert pixel(shown, 10, 20)[0] > 150  # version 1, as signed
    tampered = signed_rendition.replace("version=1", "version=2")
    assert_problem(await client.get(tampered), 403, "invalid_signature")

    # Back to the original: served again at once.
    versions = (await listed(client, stack, photo_id))["items"]
    switched = await client.put(
        versions_url(photo_id, versions[0]["version_id"]) + "/current", headers=headers
    )
    assert switched.status_code == 200 and switched.json()["is_current"] is True
    assert (await client.get(f"{FILES}/{photo_id}/content", headers=headers)).content == data
    shown = decoded((await client.get(rendition, headers=headers)).content)
    assert pixel(shown, 10, 20)[0] > 150
    body = await listed(client, stack, photo_id)
    assert [v["is_current"] for v in body["items"]] == [True, False]


async def test_deleting_the_current_version_makes_the_original_current_again(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    photo_id = await upload(client, owner(stack), photo())
    kept = await styled(client, owner(stack), photo_id, "sepia")
    gone = await styled(client, owner(stack), photo_id, "vivid", set_current=True)
    folder = f"{file_folder(photo_id)}versions/{gone['version_id']}/"
    # a rendition of it is kept in its folder: it must go too
    rendered = await client.get(f"{FILES}/{photo_id}/rendition?width=20", headers=owner(stack))
    assert rendered.status_code == 200
    assert len([key for key in await stored_keys(stack, photo_id) if key.startswith(folder)]) == 2

    deleted = await client.delete(versions_url(photo_id, gone["version_id"]), headers=owner(stack))
    assert deleted.status_code == 204
    body = await listed(client, stack, photo_id)
    assert [(v["version_number"], v["is_current"]) for v in body["items"]] == [
        (1, True),
        (2, False),
    ]
    assert body["items"][1]["version_id"] == kept["version_id"]
    await wait_until_gone(stack, folder)
    missing = await client.get(versions_url(photo_id, gone["version_id"]), headers=owner(stack))
    assert_problem(missing, 404, "not_found")
    assert_problem(await client.get(gone["cloud_url"], headers=owner(stack)), 404)
    newer = await styled(client, owner(stack), photo_id, "cool")
    assert newer["version_number"] == 4  # numbers only grow: 3 is not handed out again


async def test_bytes_gone_under_a_request_are_a_404_not_a_crash(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """Another process deleted the version after this one looked it up."""
    photo_id = await upload(client, owner(stack), photo())
    version = await styled(client, owner(stack), photo_id, "sepia", set_current=True)
    await stack.state.blobs.delete(version["local_path"])
    for url in (
        f"{FILES}/{photo_id}/rendition?width=17",
        f"{FILES}/{photo_id}/renditions/preview",
    ):
        assert_problem(await client.get(url, headers=owner(stack)), 404)


async def test_the_original_goes_only_with_the_photo(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    photo_id = await upload(client, owner(stack), photo())
    extra = await styled(client, owner(stack), photo_id, "sepia", set_current=True)
    original = (await listed(client, stack, photo_id))["items"][0]
    refused = await client.delete(
        versions_url(photo_id, original["version_id"]), headers=owner(stack)
    )
    assert_problem(refused, 409, "original_version")
    assert len((await listed(client, stack, photo_id))["items"]) == 2

    assert (await client.delete(f"{FILES}/{photo_id}", headers=owner(stack))).status_code == 204
    await wait_until_gone(stack, file_folder(photo_id))  # versions' bytes included
    async with stack.state.sessions() as session:
        rows = await session.scalar(select(func.count()).where(PhotoVersion.photo_id == photo_id))
    assert rows == 0
    assert_problem(await client.get(versions_url(photo_id), headers=owner(stack)), 404)
    gone = await client.get(versions_url(photo_id, extra["version_id"]), headers=owner(stack))
    assert_problem(gone, 404)


async def test_gc_removes_a_version_folder_whose_version_is_gone_and_keeps_the_rest(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """Bytes of a version whose row never committed (a crash) are garbage; a live
    version's bytes and the photo's own objects are not."""
    photo_id = await upload(client, owner(stack), photo())
    kept = await styled(client, owner(stack), photo_id, "sepia")
    orphan = version_key(photo_id, new_id("ver"))
    await put_bytes(stack.state.blobs, orphan, b"a version whose row never committed")
    before = set(await stored_keys(stack, photo_id))

    report = await collect_garbage(stack.state, timedelta(0))

    assert report.orphans == [orphan]
    after = set(await stored_keys(stack, photo_id))
    assert after == before - {orphan}
    assert kept["local_path"] in after
    served = await client.get(f"{FILES}/{photo_id}/content?version=2", headers=owner(stack))
    assert served.status_code == 200, served.text


# -- concurrency --------------------------------------------------------------------------------


async def test_concurrent_switches_always_leave_exactly_one_current_version(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    photo_id = await upload(client, owner(stack), photo())
    ids = [(await listed(client, stack, photo_id))["items"][0]["version_id"]]
    for mode in ("sepia", "black_and_white", "cool"):
        ids.append((await styled(client, owner(stack), photo_id, mode))["version_id"])
    seen: list[int] = []
    done = asyncio.Event()

    async def read() -> None:
        while not done.is_set():
            items = (await listed(client, stack, photo_id))["items"]
            seen.append(sum(item["is_current"] for item in items))

    async def switch(version_id: str) -> int:
        url = versions_url(photo_id, version_id) + "/current"
        response = await client.put(url, headers=owner(stack))
        assert response.json()["version_id"] == version_id
        return response.status_code

    readers = [asyncio.create_task(read()) for _ in range(2)]
    try:
        statuses = await asyncio.gather(*(switch(ids[i % len(ids)]) for i in range(24)))
    finally:
        done.set()
        await asyncio.gather(*readers)
    assert statuses == [200] * 24
    assert seen and set(seen) == {1}  # never none, never two
    items = (await listed(client, stack, photo_id))["items"]
    assert sum(item["is_current"] for item in items) == 1
    async with stack.state.sessions() as session:
        current = await session.scalar(
            select(func.count()).where(
                PhotoVersion.photo_id == photo_id, PhotoVersion.is_current.is_(True)
            )
        )
    assert current == 1


async def test_concurrent_creations_get_distinct_numbers(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    photo_id = await upload(client, owner(stack), photo())

    async def make(index: int) -> int:
        mode = ("sepia", "warm", "cool", "vivid")[index % 4]
        version = await styled(client, owner(stack), photo_id, mode, set_current=index % 2 == 0)
        return int(version["version_number"])

    numbers = await asyncio.gather(*(make(index) for index in range(8)))
    assert sorted(numbers) == list(range(2, 10))
    items = (await listed(client, stack, photo_id))["items"]
    assert sum(item["is_current"] for item in items) == 1


# -- authorisation ------------------------------------------------------------------------------

ORG_B = "org_ver_b"
CALLERS: dict[str, tuple[str, str, tuple[Role, ...]] | None] = {
    "admin_a": ("admin-a", ORG, (Role.ADMIN,)),
    "admin_b": ("admin-b", ORG_B, (Role.ADMIN,)),
    "service_a": ("svc-a", ORG, (Role.SERVICE,)),
    "teacher_t1": ("t1", ORG, (Role.TEACHER,)),
    "teacher_t2": ("t2", ORG, (Role.TEACHER,)),
    "student_s1": ("s1", ORG, (Role.STUDENT,)),
    "student_s2": ("s2", ORG, (Role.STUDENT,)),
    "member_m1": ("m1", ORG, (Role.MEMBER,)),
    "frame": ("frame-1", ORG, (Role.FRAME,)),
    "anonymous": None,
}
# photo label → (uploader, owner_type, owner_id)
PHOTOS_OF = {
    "t1": ("teacher_t1", "Teacher", "t1"),
    "cs1": ("teacher_t1", "ClassSession", "cs1"),
    "s1": ("student_s1", "Student", "s1"),
    "cs_b": ("admin_b", "ClassSession", "cs-b"),
}
# caller → (photos it may see, photos it may change): the rules of the files themselves
GRANTS: dict[str, tuple[set[str], set[str]]] = {
    "admin_a": ({"t1", "cs1", "s1"}, {"t1", "cs1", "s1"}),
    "admin_b": ({"cs_b"}, {"cs_b"}),
    "service_a": ({"t1", "cs1", "s1"}, set()),
    "teacher_t1": ({"t1", "cs1"}, {"t1", "cs1"}),
    "teacher_t2": ({"cs1"}, {"cs1"}),
    "student_s1": ({"s1"}, {"s1"}),
    "student_s2": (set(), set()),
    "member_m1": (set(), set()),
    "frame": (set(), set()),
}
SUCCESS = {"list": 200, "get": 200, "create": 201, "set_current": 200, "delete": 204}


def caller_headers(stack: Stack, name: str) -> dict[str, str]:
    claims = CALLERS[name]
    if claims is None:
        return {"X-Internal-Call": "true"}  # grants nothing
    subject, org, roles = claims
    return stack.auth(subject, org, *roles)


def expected(caller: str, endpoint: str, label: str) -> int:
    if caller not in GRANTS:
        return 401
    reads, writes = GRANTS[caller]
    if label not in reads:
        return 404  # never 403: ids cannot be probed
    if endpoint in ("list", "get") or label in writes:
        return SUCCESS[endpoint]
    return 403


async def test_every_endpoint_follows_the_photos_rules(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    photos: dict[str, str] = {}
    for index, (label, (uploader, owner_type, owner_id)) in enumerate(PHOTOS_OF.items()):
        data = photo(40 + index, 30)
        photos[label] = await upload(
            client, caller_headers(stack, uploader), data, owner_type, owner_id
        )

    async def fresh(label: str) -> str:
        org_admin = "admin_b" if label == "cs_b" else "admin_a"
        made = await styled(client, caller_headers(stack, org_admin), photos[label], "sepia")
        return str(made["version_id"])

    targets = {label: await fresh(label) for label in photos}
    wrong: list[str] = []
    for caller in CALLERS:
        headers = caller_headers(stack, caller)
        for label, photo_id in photos.items():
            target = targets[label]
            requests = {
                "list": client.get(versions_url(photo_id), headers=headers),
                "get": client.get(versions_url(photo_id, target), headers=headers),
                "create": client.post(
                    versions_url(photo_id),
                    headers=headers,
                    json={"version_type": "STYLED", "processing_mode": "black_and_white"},
                ),
                "set_current": client.put(
                    versions_url(photo_id, target) + "/current", headers=headers
                ),
                "delete": client.delete(versions_url(photo_id, target), headers=headers),
            }
            for endpoint, request in requests.items():
                response = await request
                want = expected(caller, endpoint, label)
                if response.status_code != want:
                    wrong.append(f"{caller} {endpoint} {label}: {response.status_code} != {want}")
                elif want >= 400:
                    assert response.headers["content-type"].startswith("application/problem")
                elif endpoint == "get":
                    assert response.json()["version_id"] == target
                elif endpoint == "create":
                    claims = CALLERS[caller]
                    assert claims is not None and response.json()["user_id"] == claims[0]
            if expected(caller, "delete", label) == 204:
                targets[label] = await fresh(label)  # that one is gone now
    assert wrong == []


# -- bad input ----------------------------------------------------------------------------------


async def test_bad_requests_to_create_a_version_are_4xx_problems(
    client: httpx.AsyncClient, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo_id = await upload(client, owner(stack), photo())
    url, headers = versions_url(photo_id), owner(stack)

    def styled_body(mode: str, **params: Any) -> dict[str, Any]:
        return {"version_type": "STYLED", "processing_mode": mode, "processing_params": params}

    invalid_json: list[tuple[Any, list[str]]] = [
        ({"version_type": "STYLED", "processing_mode": "posterize"}, ["processing_mode"]),
        ({"version_type": "STYLED"}, ["processing_mode"]),
        ({"version_type": "ORIGINAL", "processing_mode": "sepia"}, []),
        ({"version_type": "EDITED"}, []),
        ({"processing_mode": "sepia"}, []),
        (styled_body("rotate", angle=45), ["processing_params", "angle"]),
        (styled_body("rotate"), ["processing_params", "angle"]),
        (styled_body("crop", x=-1, y=0, width=10, height=10), ["processing_params", "x"]),
        (styled_body("crop", x=0, y=0, width=0, height=10), ["processing_params", "width"]),
        (styled_body("crop", x=0.6, y=0, width=0.5, height=1, unit="fraction"), []),
        (styled_body("crop", x=0, y=0, width=10, height=10, unit="cm"), []),
        (styled_body("sepia", strength=2), ["processing_params", "strength"]),
        ({**styled_body("sepia"), "colour": "red"}, ["colour"]),
        ({**styled_body("sepia"), "version_name": "a\x00b"}, ["version_name"]),
        ({**styled_body("sepia"), "version_name": ""}, ["version_name"]),
        ({**styled_body("sepia"), "set_current": "perhaps"}, ["set_current"]),
        ({"version_type": "AI_ENHANCED", "processing_mode": "Not A Mode!"}, []),
        ([1, 2, 3], []),
    ]
    for body, path in invalid_json:
        response = await client.post(url, headers=headers, json=body)
        assert_problem(response, 422, "validation_error")
        locs = [error["loc"] for error in response.json()["errors"]]
        if path:
            assert any(loc[-len(path) :] == path for loc in locs), (body, locs)
    for raw in (b"{", b"", b'{"version_type": "STYLED", "processing_mode": "sepia",}'):
        response = await client.post(
            url, headers={**headers, "Content-Type": "application/json"}, content=raw
        )
        assert_problem(response, 422, "validation_error")
    too_big = orjson.dumps({**styled_body("sepia"), "version_name": "x" * 70_000})
    response = await client.post(
        url, headers={**headers, "Content-Type": "application/json"}, content=too_big
    )
    assert_problem(response, 413)
    response = await client.post(
        url, headers={**headers, "Content-Type": "text/plain"}, content=b"sepia please"
    )
    assert_problem(response, 415)

    # Parameters that only the image can refuse.
    for params in (
        {"x": 0, "y": 0, "width": 500, "height": 10},
        {"x": 90, "y": 60, "width": 10, "height": 10},
        {"x": 0.5, "y": 0, "width": 10.5, "height": 10},
    ):
        response = await client.post(url, headers=headers, json=styled_body("crop", **params))
        assert_problem(response, 422, "unprocessable")
        assert response.json()["errors"][0]["loc"] == ["body", "processing_params", "crop"]

    # Sources that do not exist, or belong to another photo.
    other_id = await upload(client, owner(stack), photo(50, 50))
    other_original = (await listed(client, stack, other_id))["items"][0]["version_id"]
    for source in ("ver_nope", other_original, "x" * 50):
        body = {**styled_body("sepia"), "source_version_id": source}
        assert_problem(await client.post(url, headers=headers, json=body), 404)

    # Not a photo, not a file, no AI service.
    pdf_id = await upload(
        client, owner(stack), b"%PDF-1.4\n%%EOF\n", name="d.pdf", content_type="application/pdf"
    )
    for target in (pdf_id, "file_nope", "ver_01jd3k5x9m2q8r7t6v5w4y3z2a"):
        assert_problem(
            await client.post(versions_url(target), headers=headers, json=styled_body("sepia")),
            404,
        )
    ai = {"version_type": "AI_ENHANCED"}
    assert_problem(
        await client.post(url, headers=headers, json=ai), 503, "ai_service_not_configured"
    )

    # At most MAX_VERSIONS versions per photo.
    monkeypatch.setattr(versions_service, "MAX_VERSIONS", 3)
    await styled(client, headers, photo_id, "sepia")
    await styled(client, headers, photo_id, "warm")
    response = await client.post(url, headers=headers, json=styled_body("cool"))
    assert_problem(response, 409, "too_many_versions")
    assert len((await listed(client, stack, photo_id))["items"]) == 3
    assert len([key for key in await stored_keys(stack, photo_id) if "/versions/" in key]) == 2


async def test_bad_edited_uploads_are_refused_and_leave_nothing_behind(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    photo_id = await upload(client, owner(stack), photo())
    url, headers = versions_url(photo_id), owner(stack)
    good = photo(40, 40)

    async def post(
        data: bytes, name: str = "e.jpg", fields: dict[str, str] | None = None
    ) -> httpx.Response:
        return await client.post(
            url, headers=headers, files={"file": (name, data, "image/jpeg")}, data=fields or {}
        )

    assert_problem(await post(b"%PDF-1.4\n%%EOF\n"), 415, "unsupported_media_type")
    assert_problem(await post(b"just some text, not a picture"), 415)
    assert_problem(await post(good[: len(good) // 2]), 422, "corrupt_image")
    assert_problem(await post(b""), 400, "empty_file")
    assert_problem(await post(good, fields={"colour": "red"}), 422)
    assert_problem(await post(good, fields={"version_type": "STYLED"}), 422)
    assert_problem(await post(good, fields={"set_current": "maybe"}), 422)
    no_file = await client.post(url, headers=headers, files={"other": ("x", b"1")})
    assert_problem(no_file, 400)
    assert [key for key in await stored_keys(stack, photo_id) if "/versions/" in key] == []
    assert len((await listed(client, stack, photo_id))["items"]) == 1


async def test_bad_version_references_are_4xx_problems(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    photo_id = await upload(client, owner(stack), photo())
    other_id = await upload(client, owner(stack), photo(50, 50))
    foreign = (await listed(client, stack, other_id))["items"][0]["version_id"]
    headers = owner(stack)
    for version_id in ("nope", foreign, "ver_01jd3k5x9m2q8r7t6v5w4y3z2a", "ver_" + "z" * 300):
        assert_problem(await client.get(versions_url(photo_id, version_id), headers=headers), 404)
        put = await client.put(versions_url(photo_id, version_id) + "/current", headers=headers)
        assert_problem(put, 404)
        delete = await client.delete(versions_url(photo_id, version_id), headers=headers)
        assert_problem(delete, 404)
    for bad in ("0", "-1", "abc", "1.5", str(2**40)):
        response = await client.get(f"{FILES}/{photo_id}/content?version={bad}", headers=headers)
        assert_problem(response, 422, "validation_error")
        response = await client.get(
            f"{FILES}/{photo_id}/rendition?width=10&version={bad}", headers=headers
        )
        assert_problem(response, 422, "validation_error")
    for url in (
        f"{FILES}/{photo_id}/content?version=7",
        f"{FILES}/{photo_id}/rendition?width=10&version=7",
        f"{FILES}/{photo_id}/renditions/thumbnail?version=7",
    ):
        assert_problem(await client.get(url, headers=headers), 404)
    assert (
        await client.get(f"{FILES}/{photo_id}/content?version=1", headers=headers)
    ).status_code == 200
    pdf_id = await upload(
        client, headers, b"%PDF-1.4\n%%EOF\n", name="d.pdf", content_type="application/pdf"
    )
    assert_problem(await client.get(versions_url(pdf_id), headers=headers), 404)
    pdf = await client.get(f"{FILES}/{pdf_id}/content?version=1", headers=headers)
    assert pdf.status_code == 200
    assert_problem(await client.get(f"{FILES}/{pdf_id}/content?version=2", headers=headers), 404)


@pytest.mark.parametrize(
    "settings_overrides", [{"upload_idle_timeout_seconds": 0.5}], ids=["idle-0.5s"]
)
@pytest.mark.parametrize("kind", ["edited-file", "json"])
async def test_a_version_body_that_stops_arriving_is_408(stack: Stack, kind: str) -> None:
    app = create_app(stack.settings, stack.state)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://media.test") as client:
            photo_id = await upload(client, owner(stack), photo())
        if kind == "json":
            content_type, first = "application/json", b'{"version_type": "STY'
        else:
            content_type = "multipart/form-data; boundary=b"
            first = b'--b\r\nContent-Disposition: form-data; name="file"; filename="e.jpg"\r\n\r\n'
        headers = {**owner(stack), "content-type": content_type}
        sent = await post_then_stall(manager.app, versions_url(photo_id), headers, first)
    assert_request_timeout(sent)
    async with stack.state.sessions() as session:
        versions = (await session.scalars(select(PhotoVersion))).all()
    assert [v.version_type.value for v in versions] in ([], ["ORIGINAL"])  # nothing new
