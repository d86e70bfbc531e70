"""Uploads and deletes put their events on the bus, once, and only for committed changes.

On the production stack the wire is NATS and it is watched with a plain NATS subscriber;
on the embedded stack a durable consumer of the in-process bus watches it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import nats
import orjson
import pytest

from media_service.auth.principal import Role
from media_service.events import Delivery, FileDeleted, FileUploaded, parse_event

from conftest import Stack

ORG = "org_events"
QUIET = 0.5  # how long "nothing more arrives" is watched


@dataclass
class WireTap:
    """Every event seen on the bus since the tap was opened."""

    seen: list[dict[str, object]] = field(default_factory=list)

    def of(self, event_type: str, file_id: str) -> list[dict[str, object]]:
        return [e for e in self.seen if e["event_type"] == event_type and e["file_id"] == file_id]

    async def wait_for(self, event_type: str, file_id: str, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not self.of(event_type, file_id):
                await asyncio.sleep(0.02)
        await asyncio.sleep(QUIET)  # and give duplicates a chance to show up


@pytest.fixture
async def wire(stack: Stack, client: httpx.AsyncClient) -> AsyncIterator[WireTap]:
    tap = WireTap()
    if stack.settings.events_url.startswith("nats"):
        connection = await nats.connect(stack.settings.events_url.split("?", 1)[0])

        async def on_message(message: nats.aio.msg.Msg) -> None:
            tap.seen.append(orjson.loads(message.data))

        await connection.subscribe("file.>", cb=on_message)
        yield tap
        await connection.close()
        return

    async def on_delivery(delivery: Delivery) -> None:
        tap.seen.append(orjson.loads(delivery.payload))

    async def no_dead_letters(_letter: object) -> None:
        raise AssertionError("the tap never fails")

    await stack.state.bus.subscribe(
        "test-wire-tap", ["file.>"], on_delivery, on_dead_letter=no_dead_letters
    )
    yield tap


def admin(stack: Stack) -> dict[str, str]:
    return stack.auth("admin-1", ORG, Role.ADMIN)


async def upload(client: httpx.AsyncClient, stack: Stack, data: bytes) -> httpx.Response:
    return await client.post(
        "/api/v1/media/files",
        headers=admin(stack),
        files={"file": ("p.jpg", data, "image/jpeg")},
        data={"owner_type": "Student", "owner_id": "stu-1"},
    )


async def test_an_upload_puts_exactly_one_file_uploaded_on_the_wire(
    client: httpx.AsyncClient, stack: Stack, wire: WireTap, make_jpeg: Callable[..., bytes]
) -> None:
    jpeg = make_jpeg(33, 22)
    record = (await upload(client, stack, jpeg)).json()
    await wire.wait_for("file.uploaded", record["file_id"])
    [event] = wire.of("file.uploaded", record["file_id"])
    parsed = parse_event(orjson.dumps(event))
    assert isinstance(parsed, FileUploaded)
    assert parsed.event_id.startswith("evt_")
    assert (parsed.owner_type, parsed.owner_id, parsed.user_id) == ("Student", "stu-1", "admin-1")
    assert parsed.sha256 == hashlib.sha256(jpeg).hexdigest()
    assert (parsed.file_size, parsed.file_type, parsed.organization_id) == (len(jpeg), "Image", ORG)

    again = await upload(client, stack, jpeg)  # the same bytes again: no new file, no event
    assert again.status_code == 200
    refused = await client.post(
        "/api/v1/media/files",
        headers=admin(stack),
        files={"file": ("x.jpg", b"<html>not an image</html>", "image/jpeg")},
        data={"owner_type": "Student", "owner_id": "stu-1"},
    )
    assert refused.status_code == 415
    await asyncio.sleep(QUIET)
    assert [e["file_id"] for e in wire.seen if e["event_type"] == "file.uploaded"] == [
        record["file_id"]
    ]


async def test_a_delete_publishes_file_deleted_and_the_consumer_purges_storage(
    client: httpx.AsyncClient, stack: Stack, wire: WireTap, make_jpeg: Callable[..., bytes]
) -> None:
    file_id = (await upload(client, stack, make_jpeg(40, 30))).json()["file_id"]
    assert (
        await client.delete(f"/api/v1/media/files/{file_id}", headers=admin(stack))
    ).status_code == 204
    await wire.wait_for("file.deleted", file_id)
    [event] = wire.of("file.deleted", file_id)
    assert isinstance(parse_event(orjson.dumps(event)), FileDeleted)
    async with asyncio.timeout(10):
        while [info async for info in stack.state.blobs.list("files/")]:
            await asyncio.sleep(0.05)


async def test_a_rolled_back_change_publishes_nothing(
    client: httpx.AsyncClient, stack: Stack, wire: WireTap, make_jpeg: Callable[..., bytes]
) -> None:
    """A checksum mismatch is found after the bytes were stored: the transaction rolls
    back, the blob is removed, and no event leaves."""
    response = await client.post(
        "/api/v1/media/files",
        headers={**admin(stack), "X-Checksum-SHA256": "0" * 64},
        files={"file": ("p.jpg", make_jpeg(10, 10), "image/jpeg")},
        data={"owner_type": "Student", "owner_id": "stu-1"},
    )
    assert response.status_code == 400
    await asyncio.sleep(QUIET * 2)
    assert wire.seen == []
    backlog = await _outbox_rows(stack)
    assert backlog == 0


async def test_an_external_file_deleted_event_removes_a_file_we_hold_once(
    client: httpx.AsyncClient, stack: Stack, wire: WireTap, make_jpeg: Callable[..., bytes]
) -> None:
    """A storage service publishes file.deleted (twice, as at-least-once delivery may)."""
    file_id = (await upload(client, stack, make_jpeg(50, 20))).json()["file_id"]
    event = FileDeleted(file_id=file_id, user_id="storage-service", organization_id=ORG)
    for _ in range(2):
        await stack.state.bus.publish(event.subject, event.to_json(), event.event_id)
    async with asyncio.timeout(10):
        while (
            await client.get(f"/api/v1/media/files/{file_id}", headers=admin(stack))
        ).status_code != 404:
            await asyncio.sleep(0.05)
        while [info async for info in stack.state.blobs.list("files/")]:
            await asyncio.sleep(0.05)


async def _outbox_rows(stack: Stack) -> int:
    from sqlalchemy import func, select

    from media_service.events.models import OutboxMessage

    async with stack.state.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)
