"""Upload, read back, list, change and delete files through the HTTP API."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

import httpx
import pytest

from media_service.auth.principal import Role
from media_service.media.repository import MediaFileRepository

from conftest import Stack

ORG = "org_a"


def member(stack: Stack, sub: str = "alice") -> dict[str, str]:
    return stack.auth(sub, ORG, Role.MEMBER)


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    data: bytes,
    name: str = "photo.jpg",
    **fields: str,
) -> httpx.Response:
    return await client.post(
        "/api/v1/media/files",
        headers=headers,
        files={"file": (name, data, "image/jpeg")},
        data=fields,
    )


async def test_multipart_upload_round_trips_byte_identical(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    jpeg = make_jpeg(640, 480)
    response = await upload(client, member(stack), jpeg)
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["file_type"] == "Image"
    assert record["content_type"] == "image/jpeg"
    assert record["file_size"] == len(jpeg)
    assert record["sha256"] == hashlib.sha256(jpeg).hexdigest()
    assert (record["width"], record["height"]) == (640, 480)
    assert record["owner_type"] == "User" and record["owner_id"] == "alice"
    assert record["media_id"] == record["file_id"] and record["file_id"].startswith("file_")
    assert record["processed"] is False and record["processed_at"] is None

    content = await client.get(
        f"/api/v1/media/files/{record['file_id']}/content", headers=member(stack)
    )
    assert content.status_code == 200
    assert content.content == jpeg
    assert content.headers["content-type"] == "image/jpeg"
    assert content.headers["x-content-type-options"] == "nosniff"
    assert content.headers["etag"] == f'"{record["sha256"]}"'
    assert content.headers["content-disposition"].startswith("inline;")
    assert "private" in content.headers["cache-control"]


async def test_raw_body_upload_uses_query_fields(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    jpeg = make_jpeg()
    response = await client.post(
        "/api/v1/media/files",
        params={"owner_type": "User", "owner_id": "alice", "file_name": "raw.jpg"},
        headers={**member(stack), "Content-Type": "application/octet-stream"},
        content=jpeg,
    )
    assert response.status_code == 201, response.text
    assert response.json()["file_name"] == "raw.jpg"
    assert response.headers["location"].endswith(response.json()["file_id"])


async def test_same_bytes_same_owner_returns_existing_record(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    jpeg = make_jpeg()
    first = await upload(client, member(stack), jpeg)
    second = await upload(client, member(stack), jpeg, name="again.jpg")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["file_id"] == first.json()["file_id"]
    keys = [info.key async for info in stack.state.blobs.list("files/")]
    assert len(keys) == 1, keys  # the second copy was not kept


async def test_same_bytes_different_owner_are_two_files(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    jpeg = make_jpeg()
    first = await upload(client, member(stack, "alice"), jpeg)
    second = await upload(client, member(stack, "bob"), jpeg)
    assert first.status_code == second.status_code == 201
    assert first.json()["file_id"] != second.json()["file_id"]


async def test_moving_a_file_to_an_owner_with_the_same_bytes_is_409(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    admin = stack.auth("admin-1", ORG, Role.ADMIN)
    jpeg = make_jpeg()
    held = await upload(client, admin, jpeg, owner_type="Other", owner_id="owner-a")
    moved = await upload(client, admin, jpeg, owner_type="Other", owner_id="owner-b")
    assert held.status_code == moved.status_code == 201
    file_id = moved.json()["file_id"]
    response = await client.patch(
        f"/api/v1/media/files/{file_id}", headers=admin, json={"owner_id": "owner-a"}
    )
    assert response.status_code == 409, response.text  # was a 500 (the unique key)
    assert response.json()["code"] == "already_stored"
    assert response.json()["file_id"] == held.json()["file_id"]
    after = await client.get(f"/api/v1/media/files/{file_id}", headers=admin)
    assert after.json()["owner_id"] == "owner-b"  # nothing changed
    renamed = await client.patch(
        f"/api/v1/media/files/{file_id}", headers=admin, json={"file_name": "b.jpg"}
    )
    assert renamed.status_code == 200  # its own bytes under its own owner are no conflict


async def test_a_move_racing_the_same_bytes_to_that_owner_is_409(
    client: httpx.AsyncClient,
    stack: Stack,
    make_jpeg: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check found no twin, but the unique key does (one arrived meanwhile)."""
    admin = stack.auth("admin-1", ORG, Role.ADMIN)
    jpeg = make_jpeg(color=(4, 5, 6))
    held = await upload(client, admin, jpeg, owner_type="Other", owner_id="owner-a")
    moved = await upload(client, admin, jpeg, owner_type="Other", owner_id="owner-b")
    assert held.status_code == moved.status_code == 201

    async def no_twin(*_args: object) -> None:
        return None

    monkeypatch.setattr(MediaFileRepository, "find_duplicate", no_twin)
    file_id = moved.json()["file_id"]
    response = await client.patch(
        f"/api/v1/media/files/{file_id}", headers=admin, json={"owner_id": "owner-a"}
    )
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "already_stored"
    after = await client.get(f"/api/v1/media/files/{file_id}", headers=admin)
    assert after.json()["owner_id"] == "owner-b"


async def test_the_409_names_the_other_file_only_to_who_may_see_it(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    first, second = (stack.auth(t, ORG, Role.TEACHER) for t in ("teacher-1", "teacher-2"))
    jpeg = make_jpeg(color=(1, 2, 3))
    theirs = await upload(client, first, jpeg, owner_type="Other", owner_id="owner-a")
    mine = await upload(client, second, jpeg, owner_type="Other", owner_id="owner-b")
    assert theirs.status_code == mine.status_code == 201
    response = await client.patch(
        f"/api/v1/media/files/{mine.json()['file_id']}",
        headers=second,
        json={"owner_id": "owner-a"},
    )
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "already_stored"
    assert "file_id" not in response.json()
    assert theirs.json()["file_id"] not in response.text


async def test_range_requests(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    jpeg = make_jpeg(800, 600)
    file_id = (await upload(client, member(stack), jpeg)).json()["file_id"]
    url = f"/api/v1/media/files/{file_id}/content"
    size = len(jpeg)
    cases = {
        "bytes=0-0": (0, 0),
        "bytes=0-99": (0, 99),
        "bytes=100-": (100, size - 1),
        "bytes=-10": (size - 10, size - 1),
        f"bytes={size - 1}-{size + 100}": (size - 1, size - 1),
        f"bytes=0-{size - 1}": (0, size - 1),
    }
    for header, (start, end) in cases.items():
        response = await client.get(url, headers={**member(stack), "Range": header})
        assert response.status_code == 206, header
        assert response.content == jpeg[start : end + 1], header
        assert response.headers["content-range"] == f"bytes {start}-{end}/{size}"
        assert int(response.headers["content-length"]) == end - start + 1
    for header in ("bytes=999999999-", "bytes=-0"):
        response = await client.get(url, headers={**member(stack), "Range": header})
        assert response.status_code == 416, header
        assert response.headers["content-range"] == f"bytes */{size}"
    many = "bytes=" + ",".join("0-10" for _ in range(1000))
    response = await client.get(url, headers={**member(stack), "Range": many})
    assert response.status_code == 200 and response.content == jpeg


async def test_etag_and_if_none_match(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    file_id = (await upload(client, member(stack), make_jpeg())).json()["file_id"]
    url = f"/api/v1/media/files/{file_id}/content"
    etag = (await client.get(url, headers=member(stack))).headers["etag"]
    response = await client.get(url, headers={**member(stack), "If-None-Match": etag})
    assert response.status_code == 304 and response.content == b""
    response = await client.get(url, headers={**member(stack), "If-None-Match": '"other"'})
    assert response.status_code == 200
    head = await client.head(url, headers=member(stack))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == etag


async def test_signed_url_downloads_without_token(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    jpeg = make_jpeg()
    file_id = (await upload(client, member(stack), jpeg)).json()["file_id"]
    signed = await client.post(
        f"/api/v1/media/files/{file_id}/signed-url", headers=member(stack), json={"expires_in": 60}
    )
    assert signed.status_code == 200, signed.text
    url = signed.json()["url"]
    response = await client.get(url)
    assert response.status_code == 200 and response.content == jpeg
    ranged = await client.get(url, headers={"Range": "bytes=2-5"})
    assert ranged.status_code == 206 and ranged.content == jpeg[2:6]


async def test_list_filters_and_paginates(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    ids = []
    for shade in range(5):
        response = await upload(client, member(stack), make_jpeg(color=(shade * 40, 10, 10)))
        ids.append(response.json()["file_id"])
    await upload(client, member(stack, "bob"), make_jpeg(color=(1, 2, 3)))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get("/api/v1/media/files", params=params, headers=member(stack))
        ).json()
        seen += [item["file_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)  # newest first, each once, none of bob's
    filtered = await client.get(
        "/api/v1/media/files", params={"file_type": "Video"}, headers=member(stack)
    )
    assert filtered.json()["items"] == []


async def test_patch_and_delete(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    file_id = (await upload(client, member(stack), make_jpeg())).json()["file_id"]
    url = f"/api/v1/media/files/{file_id}"
    service = stack.auth("ai-service", ORG, Role.SERVICE)
    patched = await client.patch(url, headers=service, json={"processed": True})
    assert patched.status_code == 200, patched.text
    assert patched.json()["processed"] is True and patched.json()["processed_at"]
    renamed = await client.patch(url, headers=member(stack), json={"file_name": "../../x\r\n.jpg"})
    assert renamed.json()["file_name"] == "x.jpg"
    assert (await client.delete(url, headers=member(stack))).status_code == 204
    assert (await client.get(url, headers=member(stack))).status_code == 404
    # The blob is removed by the file.deleted consumer (relay, bus, consumer), after the
    # commit: on a loaded machine that chain can take seconds.
    async with asyncio.timeout(20):
        while [info async for info in stack.state.blobs.list("files/")]:
            await asyncio.sleep(0.05)
