"""Upload → analysis → smart playlist → event on the bus, and curation over real perceptual
hashes, on both stacks (the production one with NATS JetStream)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from media_service.auth.principal import Role

from conftest import Stack

ORG = "org_pl_e2e"
FILES = "/api/v1/media/files"
PL = "/api/v1/media/playlists"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"preprocess_uploads": True, "detect_faces": False, "ocr": False}


def teacher(stack: Stack) -> dict[str, str]:
    return stack.auth("t1", ORG, Role.TEACHER)


def picture(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A photo-like image: gradients, blocks and noise (distinct hashes per seed)."""
    rng = np.random.default_rng(seed)
    width, height = 640, 480
    base = np.zeros((height, width, 3), np.float32)
    base[..., 0] = np.linspace(40, 220, width)[None, :]
    base[..., 2] = np.linspace(200, 60, height)[:, None]
    base += rng.normal(0, 20, base.shape)
    for _ in range(12):
        x, y = rng.integers(0, width - 120), rng.integers(0, height - 120)
        base[y : y + 110, x : x + 110] = rng.integers(0, 255, 3)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    return image.resize(size) if size != (width, height) else image


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


async def upload_analysed(client: httpx.AsyncClient, stack: Stack, data: bytes) -> str:
    response = await client.post(
        FILES,
        headers=teacher(stack),
        files={"file": ("p.jpg", data, "image/jpeg")},
        data={"owner_type": "ClassSession", "owner_id": "cs-1"},
    )
    assert response.status_code == 201, response.text
    file_id = str(response.json()["file_id"])
    async with asyncio.timeout(90):
        while not (await client.get(f"{FILES}/{file_id}", headers=teacher(stack))).json()[
            "processed"
        ]:
            await asyncio.sleep(0.1)
    return file_id


@pytest.fixture
async def playlist_events(stack: Stack, client: httpx.AsyncClient) -> list[dict[str, Any]]:
    return await stack.tap("test-playlist-e2e-tap", "media.playlist.updated")


async def test_an_analysed_upload_joins_the_smart_playlists_it_matches(
    client: httpx.AsyncClient, stack: Stack, playlist_events: list[dict[str, Any]]
) -> None:
    criteria = {"labels": {"all": ["landscape"]}, "quality": {"min": 0}}
    response = await client.post(
        PL,
        headers=teacher(stack),
        json={"name": "Landscapes", "playlist_type": "SMART", "smart_criteria": criteria},
    )
    assert response.status_code == 201 and response.json()["photo_ids"] == []
    pid = response.json()["playlist_id"]

    landscape = await upload_analysed(client, stack, jpeg(picture(1)))
    portrait = await upload_analysed(client, stack, jpeg(picture(2, (300, 500))))
    async with asyncio.timeout(30):
        while len(mine := [e for e in playlist_events if e["playlist_id"] == pid]) < 2:
            await asyncio.sleep(0.05)
    await asyncio.sleep(1)  # and nothing more: the portrait changed no playlist
    mine = sorted(
        (e for e in playlist_events if e["playlist_id"] == pid), key=lambda e: str(e["event_id"])
    )
    assert [e["photo_count"] for e in mine] == [0, 1]  # created empty, then gained the photo
    assert (mine[1]["playlist_type"], mine[1]["user_id"]) == ("SMART", "t1")
    body = (await client.get(f"{PL}/{pid}", headers=teacher(stack))).json()
    assert body["photo_ids"] == [landscape] and portrait not in body["photo_ids"]
    [item] = (await client.get(f"{PL}/{pid}/photos", headers=teacher(stack))).json()["items"]
    assert item["reason"]["matched"]["labels"] == ["landscape"]
    assert item["reason"]["score"] == item["reason"]["matched"]["quality"] is not None


async def test_curation_keeps_one_of_near_duplicate_photos(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    original = picture(3)
    photos = {
        "original": await upload_analysed(client, stack, jpeg(original)),
        "resized copy": await upload_analysed(client, stack, jpeg(original.resize((480, 360)), 70)),
        "other": await upload_analysed(client, stack, jpeg(picture(4))),
        "third": await upload_analysed(client, stack, jpeg(picture(5))),
    }
    response = await client.post(
        PL,
        headers=teacher(stack),
        json={"name": "Best of", "playlist_type": "AI_CURATED", "curation": {"count": 4}},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["photo_ids"]) == 3  # four asked for, but two are the same picture
    copies = {photos["original"], photos["resized copy"]}
    assert len(copies & set(body["photo_ids"])) == 1
    assert {photos["other"], photos["third"]} <= set(body["photo_ids"])
    url = f"{PL}/{body['playlist_id']}/photos"
    items = (await client.get(url, headers=teacher(stack))).json()["items"]
    kept = next(item for item in items if item["photo_id"] in copies)
    assert kept["reason"]["duplicates_collapsed"] == 1
    scores = [item["reason"]["score"] for item in items]
    assert scores == sorted(scores, reverse=True)
