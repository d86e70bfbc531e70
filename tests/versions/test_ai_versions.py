"""AI-enhanced versions end to end on both stacks, against a real (scripted) AI service:
the job asks with a signed URL of the source, stores the image it gets back as a new
version, retries when the service is down, and dead-letters what can never work."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from media_service.auth.principal import Role
from media_service.events.consumers import HandledEvents
from media_service.events.models import DeadLetterRecord
from media_service.jobs import job_consumer
from media_service.media.storage_keys import file_folder
from media_service.versions.ai import ENHANCE
from metadata.analyzer_server import Reply, ScriptedService, running

from conftest import Stack

ORG = "org_ai_ver"
TOKEN = "ai-token-for-versions-0123456789"
PUBLIC_URL = "http://media.test"
PHOTOS = "/api/v1/media/photos"
FILES = "/api/v1/media/files"


@pytest.fixture(scope="module")
def ai_service() -> Iterator[tuple[ScriptedService, str]]:
    app = ScriptedService()
    with running(app) as url:
        yield app, url


@pytest.fixture
def settings_overrides(ai_service: tuple[ScriptedService, str]) -> dict[str, object]:
    _, url = ai_service
    return {
        "ai_service_url": f"{url}/v1/analyse",
        "ai_service_token": TOKEN,
        "public_url": PUBLIC_URL,
    }


def owner(stack: Stack) -> dict[str, str]:
    return stack.auth("m1", ORG, Role.MEMBER)


def image(
    colour: tuple[int, int, int], fmt: str = "PNG", size: tuple[int, int] = (60, 40)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt)
    return buffer.getvalue()


def noisy_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((200, 150), 60).convert("RGB").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


NOISY = noisy_jpeg()


def png_reply(data: bytes) -> Reply:
    return Reply(body=data, headers={"content-type": "image/png"})


async def upload(client: httpx.AsyncClient, stack: Stack, data: bytes) -> str:
    response = await client.post(
        FILES, headers=owner(stack), files={"file": ("p.jpg", data, "image/jpeg")}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["file_id"])


async def request_enhancement(
    client: httpx.AsyncClient, stack: Stack, photo_id: str, **extra: Any
) -> dict[str, Any]:
    body = {"version_type": "AI_ENHANCED", **extra}
    response = await client.post(f"{PHOTOS}/{photo_id}/versions", headers=owner(stack), json=body)
    assert response.status_code == 202, response.text
    queued: dict[str, Any] = response.json()
    assert response.headers["location"] == f"{PHOTOS}/{photo_id}/versions/{queued['version_id']}"
    assert queued["status"] == "queued" and queued["version_type"] == "AI_ENHANCED"
    return queued


async def made(
    client: httpx.AsyncClient, stack: Stack, photo_id: str, version_id: str
) -> dict[str, Any]:
    url = f"{PHOTOS}/{photo_id}/versions/{version_id}"
    async with asyncio.timeout(60):
        while (response := await client.get(url, headers=owner(stack))).status_code == 404:
            await asyncio.sleep(0.1)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def dead_letter(stack: Stack, job_id: str) -> DeadLetterRecord:
    async with asyncio.timeout(60):
        while True:
            async with stack.state.sessions() as session:
                statement = select(DeadLetterRecord).where(DeadLetterRecord.msg_id == job_id)
                letter = await session.scalar(statement)
            if letter is not None:
                return letter
            await asyncio.sleep(0.1)


async def job_done(stack: Stack, job_id: str) -> None:
    async with asyncio.timeout(60):
        while True:
            async with stack.state.sessions() as session:
                if await HandledEvents(session).contains(job_consumer(ENHANCE), job_id):
                    return
            await asyncio.sleep(0.1)


async def version_blobs(stack: Stack, photo_id: str) -> list[str]:
    prefix = f"{file_folder(photo_id)}versions/"
    return [info.key async for info in stack.state.blobs.list(prefix)]


async def test_the_ai_service_enhances_the_source_and_its_image_becomes_a_version(
    client: httpx.AsyncClient, stack: Stack, ai_service: tuple[ScriptedService, str]
) -> None:
    app, _ = ai_service
    enhanced = image((250, 200, 10))
    app.script(png_reply(enhanced))
    seen = await stack.tap("test-ai-versions-tap", "media.version.created")
    original = image((10, 20, 200), "JPEG")
    photo_id = await upload(client, stack, original)
    queued = await request_enhancement(
        client,
        stack,
        photo_id,
        processing_mode="portrait",
        processing_params={"strength": 0.7},
        version_name="Sharper",
        set_current=True,
    )
    version = await made(client, stack, photo_id, queued["version_id"])
    assert version["version_type"] == "AI_ENHANCED" and version["version_name"] == "Sharper"
    assert version["processing_mode"] == "portrait"
    assert version["processing_params"] == {"strength": 0.7}
    assert version["is_current"] is True and version["version_number"] == 2
    assert version["sha256"] == hashlib.sha256(enhanced).hexdigest()
    assert version["content_type"] == "image/png" and (version["width"], version["height"]) == (
        60,
        40,
    )
    download = await client.get(f"{FILES}/{photo_id}/content", headers=owner(stack))
    assert download.content == enhanced  # the current version now

    [request] = [r for r in app.requests if r.json()["photo_id"] == photo_id]
    assert request.path == "/v1/enhance" and request.method == "POST"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    sent = request.json()
    listed = (await client.get(f"{PHOTOS}/{photo_id}/versions", headers=owner(stack))).json()
    assert sent["version_id"] == listed["items"][0]["version_id"]  # the source: the original
    assert (sent["mode"], sent["params"]) == ("portrait", {"strength": 0.7})
    assert (sent["organization_id"], sent["user_id"]) == (ORG, "m1")
    prefix = f"{PUBLIC_URL}{FILES}/{photo_id}/content?version=1&"
    assert sent["image_url"].startswith(prefix)
    # The URL works without a token and serves the source's bytes: what the service fetches.
    fetched = await client.get(sent["image_url"].removeprefix(PUBLIC_URL))
    assert fetched.status_code == 200 and fetched.content == original
    async with asyncio.timeout(15):
        while not [e for e in seen if e["version_id"] == queued["version_id"]]:
            await asyncio.sleep(0.05)
    [event] = [e for e in seen if e["version_id"] == queued["version_id"]]
    assert event["version_type"] == "AI_ENHANCED" and event["photo_id"] == photo_id
    assert event["user_id"] == "m1"


async def test_an_unavailable_ai_service_is_asked_again(
    client: httpx.AsyncClient, stack: Stack, ai_service: tuple[ScriptedService, str]
) -> None:
    app, _ = ai_service
    enhanced = image((0, 250, 0))
    app.script(Reply(status=503), png_reply(enhanced))
    photo_id = await upload(client, stack, image((10, 20, 30), "JPEG"))
    queued = await request_enhancement(client, stack, photo_id)
    version = await made(client, stack, photo_id, queued["version_id"])
    assert version["sha256"] == hashlib.sha256(enhanced).hexdigest()
    assert version["is_current"] is False and version["version_name"] == "AI enhanced"
    assert len([r for r in app.requests if r.json()["photo_id"] == photo_id]) == 2


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=400),  # refused: asking again cannot help
        Reply(body=b"this is no picture", headers={"content-type": "image/png"}),
        Reply(body=NOISY[: len(NOISY) // 2], headers={"content-type": "image/jpeg"}),
    ],
    ids=["refused", "not-an-image", "truncated"],
)
async def test_what_can_never_work_is_dead_lettered_and_leaves_nothing(
    client: httpx.AsyncClient,
    stack: Stack,
    ai_service: tuple[ScriptedService, str],
    reply: Reply,
) -> None:
    app, _ = ai_service
    app.script(reply)
    photo_id = await upload(client, stack, image((40, 50, 60), "JPEG"))
    queued = await request_enhancement(client, stack, photo_id)
    letter = await dead_letter(stack, queued["job_id"])
    assert letter.attempts == 1  # rejected at once, not retried
    missing = await client.get(
        f"{PHOTOS}/{photo_id}/versions/{queued['version_id']}", headers=owner(stack)
    )
    assert missing.status_code == 404
    assert await version_blobs(stack, photo_id) == []


async def test_a_declined_enhancement_makes_no_version(
    client: httpx.AsyncClient, stack: Stack, ai_service: tuple[ScriptedService, str]
) -> None:
    app, _ = ai_service
    app.script(Reply(status=204, body=b""))
    photo_id = await upload(client, stack, image((90, 20, 30), "JPEG"))
    queued = await request_enhancement(client, stack, photo_id)
    await job_done(stack, queued["job_id"])
    listed = (await client.get(f"{PHOTOS}/{photo_id}/versions", headers=owner(stack))).json()
    assert [v["version_type"] for v in listed["items"]] == ["ORIGINAL"]
    assert await version_blobs(stack, photo_id) == []


async def test_only_those_who_may_change_the_photo_may_ask(
    client: httpx.AsyncClient, stack: Stack, ai_service: tuple[ScriptedService, str]
) -> None:
    app, _ = ai_service
    app.script()
    photo_id = await upload(client, stack, image((5, 5, 5), "JPEG"))
    body = {"version_type": "AI_ENHANCED"}
    url = f"{PHOTOS}/{photo_id}/versions"
    service = await client.post(url, headers=stack.auth("svc", ORG, Role.SERVICE), json=body)
    assert service.status_code == 403
    stranger = await client.post(url, headers=stack.auth("m2", ORG, Role.MEMBER), json=body)
    assert stranger.status_code == 404
    await asyncio.sleep(0.3)
    assert app.requests == []
