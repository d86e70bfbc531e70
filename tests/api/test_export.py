"""Export of a person's data (``GET /api/v1/media/users/{user_id}/export``) on both stacks:
a ZIP of their originals, their photos' versions and ``data.json``, for the person and
admins only, streamed while it is built."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tracemalloc
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from PIL import Image
from starlette.types import ASGIApp, Message

from media_service.app import create_app
from media_service.auth.principal import Role
from media_service.privacy.export_zip import ZipStream

from conftest import Stack

ORG = "org_export"
FILES = "/api/v1/media/files"
PLAYLISTS = "/api/v1/media/playlists"
FRAMES = "/api/v1/media/frames"
SCHEDULES = "/api/v1/media/schedules"
PDF = b"%PDF-1.4\n%%EOF\n"
BERLIN = (52.5163, 13.3777)


def export_url(user_id: str) -> str:
    return f"/api/v1/media/users/{user_id}/export"


def member(stack: Stack, name: str) -> dict[str, str]:
    return stack.auth(name, ORG, Role.MEMBER)


def gps_jpeg(seed: int, gps: tuple[float, float] | None = None) -> bytes:
    """A small JPEG of its own colour, with GPS EXIF when asked."""
    exif = Image.Exif()
    if gps:
        exif.get_ifd(0x8825).update({1: "N", 2: _dms(gps[0]), 3: "E", 4: _dms(gps[1])})
    buffer = io.BytesIO()
    Image.new("RGB", (48 + seed, 32), ((seed * 67) % 256, 80, 160)).save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def _dms(value: float) -> tuple[float, float, float]:
    degrees, rest = int(value), (value - int(value)) * 60
    return float(degrees), float(int(rest)), round((rest - int(rest)) * 60, 2)


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    data: bytes,
    name: str,
    content_type: str = "image/jpeg",
    **fields: str,
) -> str:
    response = await client.post(
        FILES, headers=headers, files={"file": (name, data, content_type)}, data=fields
    )
    assert response.status_code == 201, response.text
    return str(response.json()["file_id"])


async def processed(client: httpx.AsyncClient, headers: dict[str, str], file_id: str) -> None:
    async with asyncio.timeout(60):
        while not (await client.get(f"{FILES}/{file_id}", headers=headers)).json()["processed"]:
            await asyncio.sleep(0.1)


async def exported(
    client: httpx.AsyncClient, headers: dict[str, str], user_id: str
) -> tuple[zipfile.ZipFile, dict[str, Any]]:
    response = await client.get(export_url(user_id), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith(f'attachment; filename="media-export-{user_id}-')
    assert disposition.split(";")[1].strip().endswith('.zip"')
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None  # every entry's CRC matches its bytes
    return archive, orjson.loads(archive.read("data.json"))


@pytest.mark.parametrize("settings_overrides", [{"preprocess_uploads": True}])
async def test_a_person_gets_their_originals_versions_metadata_playlists_and_schedules(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    mine = member(stack, "mem-1")
    uploaded = {
        "beach.jpg": gps_jpeg(1, BERLIN),
        "park.jpg": gps_jpeg(2),
        "letter.pdf": PDF,
    }
    ids = {
        name: await upload(
            client, mine, data, name, "application/pdf" if name.endswith(".pdf") else "image/jpeg"
        )
        for name, data in uploaded.items()
    }
    beach, park = ids["beach.jpg"], ids["park.jpg"]
    # Not theirs: another member's photo, and a class photo under the same owner id.
    theirs = await upload(client, member(stack, "mem-2"), gps_jpeg(3), "other.jpg")
    teacher = stack.auth("teacher-1", ORG, Role.TEACHER)
    class_photo = await upload(
        client, teacher, gps_jpeg(4), "class.jpg", owner_type="ClassSession", owner_id="mem-1"
    )
    for file_id in (beach, park):
        await processed(client, mine, file_id)
    styled = await client.post(
        f"/api/v1/media/photos/{park}/versions",
        headers=mine,
        json={"version_type": "STYLED", "processing_mode": "sepia"},
    )
    assert styled.status_code == 201, styled.text
    playlist = await client.post(
        PLAYLISTS,
        headers=mine,
        json={"name": "Summer", "playlist_type": "MANUAL", "photo_ids": [beach, park]},
    )
    assert playlist.status_code == 201, playlist.text
    frame = await client.post(FRAMES, headers=mine, json={"name": "Hall", "time_zone": "UTC"})
    assert frame.status_code == 201, frame.text
    frame_id = frame.json()["frame_id"]
    schedule = await client.post(
        SCHEDULES,
        headers=mine,
        json={
            "frame_id": frame_id,
            "schedule_type": "CONTINUOUS",
            "playlist_id": playlist.json()["playlist_id"],
        },
    )
    assert schedule.status_code == 201, schedule.text
    consent = await client.put(
        "/api/v1/media/users/mem-1/consent", headers=mine, json={"face_processing": False}
    )
    assert consent.status_code == 200, consent.text

    archive, data = await exported(client, mine, "mem-1")

    for name, file_id in ids.items():
        assert archive.read(f"files/{file_id}/{name}") == uploaded[name]
    names = archive.namelist()
    assert not any(theirs in name or class_photo in name for name in names)
    [version_entry] = [name for name in names if "/versions/" in name]
    assert version_entry.startswith(f"files/{park}/versions/park-v")
    version_bytes = archive.read(version_entry)
    assert version_bytes[:2] == b"\xff\xd8" and version_bytes != uploaded["park.jpg"]

    assert data["user_id"] == "mem-1" and data["organization_id"] == ORG
    assert data["missing"] == []
    files = {record["file_id"]: record for record in data["files"]}
    assert set(files) == set(ids.values())
    assert files[beach]["file_name"] == "beach.jpg" and files[beach]["owner_id"] == "mem-1"
    assert files[beach]["archive_path"] == f"files/{beach}/beach.jpg"
    location = files[beach]["metadata"]
    assert abs(float(location["latitude"]) - BERLIN[0]) < 1e-3  # their own: not redacted
    assert abs(float(location["longitude"]) - BERLIN[1]) < 1e-3
    assert "GPS" in location["full_metadata"]
    assert files[ids["letter.pdf"]]["metadata"] is None
    versions = files[park]["versions"]
    assert [v["version_type"] for v in versions] == ["ORIGINAL", "STYLED"]
    assert versions[1]["archive_path"] == version_entry
    assert versions[1]["processing_mode"] == "sepia"
    [exported_playlist] = data["playlists"]
    assert exported_playlist["name"] == "Summer" and exported_playlist["photo_count"] == 2
    assert [item["photo_id"] for item in exported_playlist["items"]] == [beach, park]
    [exported_frame] = data["frames"]
    assert exported_frame["frame_id"] == frame_id
    assert [s["schedule_id"] for s in exported_frame["schedules"]] == [
        schedule.json()["schedule_id"]
    ]

    assert data["consent"]["face_processing"] is False and data["consent"]["explicit"] is True
    assert data["consent"]["updated_by"] == "mem-1"

    # An admin of the organization gets the same person's archive.
    _, by_admin = await exported(client, stack.auth("admin-1", ORG, Role.ADMIN), "mem-1")
    assert {record["file_id"] for record in by_admin["files"]} == set(ids.values())
    assert by_admin["exported_by"] == "admin-1"


async def test_nobody_else_may_export_a_person(client: httpx.AsyncClient, stack: Stack) -> None:
    photo = await upload(client, member(stack, "mem-1"), gps_jpeg(5), "p.jpg")
    for headers in (
        member(stack, "mem-2"),
        stack.auth("teacher-1", ORG, Role.TEACHER),
        stack.auth("vision", ORG, Role.SERVICE),
        stack.auth("mem-1", ORG, Role.SERVICE),  # the same name, but not a person's token
    ):
        refused = await client.get(export_url("mem-1"), headers=headers)
        assert refused.status_code == 404, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    assert (await client.get(export_url("mem-1"))).status_code == 401
    # An admin of another organization exports only what that organization holds.
    _, elsewhere = await exported(client, stack.auth("admin-9", "org_other", Role.ADMIN), "mem-1")
    assert elsewhere["files"] == [] and photo not in orjson.dumps(elsewhere).decode()


async def test_exporting_a_students_media_is_an_audited_read(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    admin = stack.auth("admin-1", ORG, Role.ADMIN)
    photo = await upload(
        client, admin, gps_jpeg(6), "s.jpg", owner_type="Student", owner_id="stu-1"
    )
    archive, _ = await exported(client, admin, "stu-1")
    assert any(name.startswith(f"files/{photo}/") for name in archive.namelist())

    trail = await client.get("/api/v1/media/audit", headers=admin, params={"file_id": photo})
    reads = [row for row in trail.json()["items"] if row["action"] == "read"]
    assert [(row["actor_id"], row["detail"].get("via")) for row in reads] == [("admin-1", "export")]


@pytest.mark.parametrize("user_id", ["bad%01id", "x" * 129, "%E2%80%AEevil"])
async def test_a_malformed_user_id_is_a_problem_not_an_error(
    client: httpx.AsyncClient, stack: Stack, user_id: str
) -> None:
    response = await client.get(export_url(user_id), headers=stack.auth("a", ORG, Role.ADMIN))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["path", "user_id"]


async def test_an_original_gone_from_storage_is_named_not_fatal(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    mine = member(stack, "mem-1")
    kept = await upload(client, mine, gps_jpeg(6), "kept.jpg")
    lost = await upload(client, mine, gps_jpeg(7), "lost.jpg")
    record = (await client.get(f"{FILES}/{lost}", headers=mine)).json()
    await stack.state.blobs.delete(record["storage_path"])
    archive, data = await exported(client, mine, "mem-1")
    assert archive.read(f"files/{kept}/kept.jpg") == gps_jpeg(6)
    assert data["missing"] == [f"files/{lost}/lost.jpg"]
    assert {record["file_id"] for record in data["files"]} == {kept, lost}


# -- streaming ----------------------------------------------------------------------------------


async def raw_get(app: ASGIApp, path: str, token: str, body_to: Path) -> list[int]:
    """GET ``path`` straight through ASGI (httpx's transport would buffer the body), the
    body written to ``body_to`` as it comes; the size of every body message."""
    sizes: list[int] = []
    status: list[int] = []
    done = asyncio.Event()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"media.test"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("media.test", 80),
    }
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    with body_to.open("wb") as sink:

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                sizes.append(len(message.get("body", b"")))
                sink.write(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        await app(scope, receive, send)
    assert status == [200]
    return sizes


async def test_a_large_original_is_streamed_in_chunks_with_flat_memory(
    stack: Stack, tmp_path: Path
) -> None:
    """20 MiB out without 20 MiB held: many body messages of at most about a read chunk,
    and Python's peak allocation during the export well under the file's size."""
    original = b"%PDF-1.4\n" + bytes(range(256)) * (20 * 4096) + b"\n%%EOF\n"
    app = create_app(stack.settings, stack.state)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://media.test") as http:
            file_id = await upload(
                http, member(stack, "mem-big"), original, "big.pdf", "application/pdf"
            )
        token = stack.token("mem-big", ORG, Role.MEMBER)
        tracemalloc.start()
        try:
            sizes = await raw_get(manager.app, export_url("mem-big"), token, tmp_path / "x.zip")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(sizes) >= 20
    assert max(sizes) <= 2 * 1024 * 1024
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while exporting 20 MiB"
    with zipfile.ZipFile(tmp_path / "x.zip") as archive:
        digest = hashlib.sha256(archive.read(f"files/{file_id}/big.pdf")).hexdigest()
    assert digest == hashlib.sha256(original).hexdigest()


async def test_zip_stream_sends_an_entry_while_its_source_is_still_being_read() -> None:
    """The writer passes each chunk on before asking for the next one, and an entry that
    may pass 4 GiB is written as ZIP64 (readable by any ZIP64 reader)."""
    produced = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal produced
        for n in range(8):
            produced += 1
            yield bytes([n]) * (256 * 1024)

    stream = ZipStream()
    out = io.BytesIO()
    produced_when_seen: list[int] = []
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    async for data in stream.entry("big.bin", moment, source(), size=2**32):
        if len(data) >= 256 * 1024:
            produced_when_seen.append(produced)
        out.write(data)
    out.write(stream.small_entry("data.json", moment, b"{}"))
    out.write(stream.finish())
    assert produced_when_seen == list(range(1, 9))  # one chunk out per chunk in
    with zipfile.ZipFile(out) as archive:
        big = archive.getinfo("big.bin")
        assert big.file_size == 8 * 256 * 1024 and big.date_time == (2024, 5, 1, 12, 0, 0)
        assert archive.read("big.bin") == b"".join(bytes([n]) * (256 * 1024) for n in range(8))
        assert archive.read("data.json") == b"{}"
    extra = out.getvalue()[30 + len("big.bin") :]
    assert extra[:2] == b"\x01\x00"  # the local header's ZIP64 extra field follows the name
