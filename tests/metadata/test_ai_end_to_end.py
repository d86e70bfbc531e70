"""The analysis job asks a real (scripted) AI service about each photo, on both stacks."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from media_service.auth.principal import Role

from .analyzer_server import Reply, ScriptedService, running
from conftest import Stack

ORG = "org_ai"
TOKEN = "ai-token-0123456789abcdef"
PUBLIC_URL = "http://media.test"


@pytest.fixture(scope="module")
def ai_service() -> Iterator[tuple[ScriptedService, str]]:
    app = ScriptedService()
    with running(app) as url:
        yield app, url


@pytest.fixture
def settings_overrides(ai_service: tuple[ScriptedService, str]) -> dict[str, object]:
    _, url = ai_service
    return {
        "preprocess_uploads": True,
        "ai_service_url": f"{url}/analyse",
        "ai_service_token": TOKEN,
        "public_url": PUBLIC_URL,
        "detect_faces": False,
    }


def admin(stack: Stack) -> dict[str, str]:
    return stack.auth("admin-1", ORG, Role.ADMIN)


async def upload_and_wait(client: httpx.AsyncClient, stack: Stack, colour: tuple[int, ...]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), colour).save(buffer, "JPEG")
    response = await client.post(
        "/api/v1/media/files",
        headers=admin(stack),
        files={"file": ("p.jpg", buffer.getvalue(), "image/jpeg")},
        data={"owner_type": "Teacher", "owner_id": "t-1"},
    )
    assert response.status_code == 201, response.text
    file_id = str(response.json()["file_id"])
    async with asyncio.timeout(60):
        while not (await client.get(f"/api/v1/media/files/{file_id}", headers=admin(stack))).json()[
            "processed"
        ]:
            await asyncio.sleep(0.1)
    return file_id


async def metadata(client: httpx.AsyncClient, stack: Stack, file_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/media/metadata/{file_id}", headers=admin(stack))
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_the_ai_service_is_asked_with_a_signed_image_url_and_its_labels_are_kept(
    client: httpx.AsyncClient, stack: Stack, ai_service: tuple[ScriptedService, str]
) -> None:
    app, _ = ai_service
    answer = {
        "model": "vision-7",
        "labels": [{"name": "Beach", "confidence": 0.92}, {"name": "blurry", "confidence": 0.2}],
        "objects": [{"name": "umbrella", "confidence": 0.8}],
        "scenes": [{"name": "beach", "confidence": 0.9}],
    }
    app.script(Reply(body=answer))
    file_id = await upload_and_wait(client, stack, (10, 120, 200))
    body = await metadata(client, stack, file_id)
    assert "beach" in body["ai_labels"] and "blurry" not in body["ai_labels"]  # below 0.5
    assert body["ai_objects"] == ["umbrella"] and body["ai_scenes"] == ["beach"]
    assert body["label_sources"]["labels"]["beach"] == "ai:vision-7"
    assert body["label_sources"]["labels"]["landscape"] == "dimensions"
    [request] = [r for r in app.requests if r.json()["file_id"] == file_id]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    sent = request.json()
    assert (sent["width"], sent["height"]) == (640, 480)
    assert sent["image_url"].startswith(f"{PUBLIC_URL}/api/v1/media/files/{file_id}/rendition?")
    # The URL works without a token: it is what the AI service downloads.
    image = await client.get(sent["image_url"].removeprefix(PUBLIC_URL))
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image.content)).size == (640, 480)
    # The call was timed under the spec's metric name.
    metrics = (await client.get("/metrics")).text
    [count] = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("media_ai_analysis_duration_seconds_count")
    ]
    assert count >= 1


async def test_a_failing_ai_service_does_not_fail_the_analysis(
    client: httpx.AsyncClient, stack: Stack, ai_service: tuple[ScriptedService, str]
) -> None:
    app, _ = ai_service
    app.script(*[Reply(status=503)] * 3)  # the first try and both retries
    file_id = await upload_and_wait(client, stack, (200, 40, 40))
    body = await metadata(client, stack, file_id)
    assert body["ai_scenes"] == [] and body["ai_labels"] == ["landscape"]
    assert body["quality_score"] is not None  # our own analysis is all there
    assert len([r for r in app.requests if r.json()["file_id"] == file_id]) == 3
    app.script()
