"""Kill the API (SIGKILL) while uploads are in flight, again and again, then check the
invariants of RELIABILITY.md: every upload that got a 2xx downloads byte-identical; no
row points to a missing object; after one gc, no object lacks a row."""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from pathlib import Path

import httpx
import pytest

from media_service.auth.principal import Role
from media_service.storage import open_blob_store

from harness.postgres import PostgresServer, unique_database_name
from harness.seaweed import with_prefix
from harness.service import ServiceProcess, service_env

KILLS = 3
WRITERS = 4
ORG = "org_crash"


def pdf_payload(rng: random.Random) -> bytes:
    """A document of 64-512 KiB: sniffed as PDF, no image header to probe."""
    return b"%PDF-1.7\n" + rng.randbytes(rng.randint(64, 512) * 1024)


@pytest.fixture(params=["sqlite-local", "postgres-s3"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> ServiceProcess:
    overrides: dict[str, str] = {}
    if request.param == "postgres-s3":
        postgres: PostgresServer = request.getfixturevalue("postgres")
        overrides = {
            "MEDIA_DATABASE_URL": postgres.create_database(unique_database_name("crash")),
            "MEDIA_STORAGE_URL": with_prefix(
                request.getfixturevalue("s3_url"), f"crash-{uuid.uuid4().hex}"
            ),
            "MEDIA_AUTO_MIGRATE": "true",
        }
    return ServiceProcess(tmp_path, service_env(tmp_path, **overrides))


async def upload_until_killed(
    service: ServiceProcess, token: str, rng: random.Random, acknowledged: dict[str, str]
) -> None:
    """Upload distinct documents until the server goes away; remember every 2xx."""
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
        while True:
            body = pdf_payload(rng)
            try:
                response = await client.post(
                    "/api/v1/media/files",
                    params={"owner_type": "Other", "owner_id": "crash-test"},
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/octet-stream",
                    },
                    content=body,
                )
            except httpx.TransportError:
                return
            if response.status_code in (200, 201):
                acknowledged[response.json()["file_id"]] = hashlib.sha256(body).hexdigest()
            else:
                assert response.status_code < 500, response.text


async def crash_repeatedly(service: ServiceProcess, token: str) -> dict[str, str]:
    acknowledged: dict[str, str] = {}
    rng = random.Random(7)
    for _ in range(KILLS):
        service.start()
        writers = [
            asyncio.create_task(
                upload_until_killed(service, token, random.Random(rng.random()), acknowledged)
            )
            for _ in range(WRITERS)
        ]
        await asyncio.sleep(rng.uniform(0.4, 1.2))
        await asyncio.to_thread(service.kill)
        await asyncio.gather(*writers)
    return acknowledged


async def test_invariants_hold_after_repeated_crashes(service: ServiceProcess) -> None:
    token = service.token("admin", ORG, Role.ADMIN)
    acknowledged = await crash_repeatedly(service, token)
    assert acknowledged, "no upload completed before the crashes: the test proved nothing"

    service.start()
    try:
        async with httpx.AsyncClient(
            base_url=service.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            rows = await all_rows(client)
            # 1. every acknowledged upload is there, byte-identical
            for file_id, digest in acknowledged.items():
                content = await client.get(f"/api/v1/media/files/{file_id}/content")
                assert content.status_code == 200, (file_id, content.text)
                assert hashlib.sha256(content.content).hexdigest() == digest
            # 2. no row points to a missing object
            blobs = open_blob_store(service.env["MEDIA_STORAGE_URL"])
            try:
                for row in rows:
                    assert await blobs.head(row["storage_path"]) is not None, row
                # 3. after one gc, no object without a row
                result = await asyncio.to_thread(service.cli, "gc", "--grace-seconds", "0")
                assert result.returncode == 0, result.stderr
                keys = {info.key async for info in blobs.list("files/")}
                assert keys == {row["storage_path"] for row in rows}
            finally:
                await blobs.close()
    finally:
        service.stop()


async def all_rows(client: httpx.AsyncClient) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    cursor: str | None = None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/media/files", params=params)).json()
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows
