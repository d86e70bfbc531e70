"""The service's log output (JSON, as configured for production) on both stacks: request
lines carry the request id, job lines the job id, event handlers' lines the event id, and
no line carries a bearer token, a signed URL's signature or a photo's coordinates, whoever
logged it (structlog, a stdlib logger, a traceback)."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import structlog
from PIL import Image

from media_service.auth.principal import Role
from media_service.config import Settings
from media_service.events import FileDeleted
from media_service.logs import (
    MAX_TEXT,
    MAX_TRACEBACK,
    REDACTED,
    configure_logging,
    redact,
    redact_text,
)

from conftest import Stack
from harness.service import BIN, ServiceProcess, service_env

ORG = "org_logs"
FILES = "/api/v1/media/files"
# Written to EXIF as fractional degrees, so that every form in which they could be
# logged (EXIF rationals, decimal degrees) contains these texts, which no timestamp or
# duration can (their integer parts are above 59).
LATITUDE, LONGITUDE = 64.1466, 121.4737
COORDINATE_TEXTS = ("64.1466", "121.4737")


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"preprocess_uploads": True}  # uploads run the analysis job


@pytest.fixture
def json_logs(tmp_path: Path) -> Iterator[io.StringIO]:
    """The service's logging as ``serve`` sets it up (JSON), into a buffer; restored
    afterwards (and never cached, so that ``structlog.testing`` works in later tests)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    settings = Settings(_env_file=None, data_dir=tmp_path, log_format="json")  # type: ignore[call-arg]
    configure_logging(settings, stream=buffer)
    structlog.configure(cache_logger_on_first_use=False)
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
        root.handlers[:], root.level = handlers, level


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    """Every line written so far, each one a JSON object."""
    return [orjson.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def gps_jpeg() -> bytes:
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (LATITUDE, 0.0, 0.0), 3: "E", 4: (LONGITUDE, 0.0, 0.0)})
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 80, 40)).save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


async def test_log_lines_carry_their_ids_and_no_secrets_or_coordinates(
    json_logs: io.StringIO, client: httpx.AsyncClient, stack: Stack
) -> None:
    token = stack.token("mem-1", ORG, Role.MEMBER)
    headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "req0upload0001"}
    response = await client.post(
        FILES, headers=headers, files={"file": ("place.jpg", gps_jpeg(), "image/jpeg")}
    )
    assert response.status_code == 201, response.text
    file_id = response.json()["file_id"]
    async with asyncio.timeout(60):  # the analysis job reads the GPS EXIF
        while not (await client.get(f"{FILES}/{file_id}", headers=headers)).json()["processed"]:
            await asyncio.sleep(0.1)
    metadata = await client.get(f"/api/v1/media/metadata/{file_id}", headers=headers)
    assert abs(float(metadata.json()["latitude"]) - LATITUDE) < 1e-3  # really extracted

    signed = await client.post(f"{FILES}/{file_id}/signed-url", headers=headers, json={})
    assert signed.status_code == 200, signed.text
    url = signed.json()["url"]
    signature = httpx.URL(url).params["sig"]
    assert (await client.get(url)).status_code == 200  # a download by signed URL, no token

    # A file.deleted applied, then the same event again: the consumer skips it.
    assert (await client.delete(f"{FILES}/{file_id}", headers=headers)).status_code == 204
    again = FileDeleted(file_id=file_id, user_id="storage", organization_id=ORG)
    for msg_id in ("copy-1", "copy-2"):
        await stack.state.bus.publish(again.subject, again.to_json(), msg_id)
    async with asyncio.timeout(30):
        while not any(line["event"] == "event_already_handled" for line in lines(json_logs)):
            await asyncio.sleep(0.05)

    # Careless code: secrets and coordinates handed to every kind of logger.
    careless = structlog.get_logger("media_service.test")
    careless.info(
        "leak",
        token=token,
        url=url,
        link=httpx.URL(url),  # an object, rendered as text
        latitude=LATITUDE,
        exif={"GPS": {"2": LATITUDE}},
    )
    logging.getLogger("uvicorn.error").warning("GET %s Bearer %s", url, token)
    try:
        raise RuntimeError(f"could not fetch {url} (lat={LATITUDE}, lon={LONGITUDE})")
    except RuntimeError:
        careless.exception("fetch_failed")

    output = json_logs.getvalue()
    for secret in (token, signature, *COORDINATE_TEXTS):
        assert secret not in output, f"{secret!r} leaked into the logs"
    logged = lines(json_logs)
    by_event = {line["event"]: line for line in logged}
    assert by_event["leak"]["token"] == REDACTED and by_event["leak"]["latitude"] == REDACTED
    assert by_event["leak"]["url"].endswith("/content?" + REDACTED)
    assert by_event["leak"]["link"] == by_event["leak"]["url"]
    assert "Traceback" in by_event["fetch_failed"]["exception"]

    requests = [line for line in logged if line["event"] == "request"]
    assert requests and all(line.get("request_id") for line in requests)
    uploaded = [line for line in logged if line["event"] == "file_stored"]
    assert [line["request_id"] for line in uploaded] == ["req0upload0001"]
    jobs = [line for line in logged if line["event"] in ("job_done", "photo_analysed")]
    assert {line["event"] for line in jobs} == {"job_done", "photo_analysed"}
    assert all(line.get("job_id") and line.get("job") for line in jobs)
    assert all("request_id" not in line for line in jobs)  # contexts do not bleed
    [analysed] = [line for line in jobs if line["event"] == "photo_analysed"]
    assert analysed["job"] == "media.analyse"
    skipped = [line for line in logged if line["event"] == "event_already_handled"]
    assert all(line.get("event_id") == again.event_id and line["consumer"] for line in skipped)


async def test_request_lines_name_no_person_whose_id_is_in_the_path(
    json_logs: io.StringIO, client: httpx.AsyncClient, stack: Stack
) -> None:
    """Logs outlive an erasure: /users/{user_id}/… is logged by its template."""
    headers = stack.auth("admin-1", ORG, Role.ADMIN)
    consent = await client.get("/api/v1/media/users/pupil-w4q/consent", headers=headers)
    assert consent.status_code == 200, consent.text
    exported = await client.get("/api/v1/media/users/pupil-w4q/export", headers=headers)
    assert exported.status_code == 200
    unknown = await client.get("/api/v1/media/users/pupil-w4q/nothing", headers=headers)
    assert unknown.status_code == 404
    requests = [line for line in lines(json_logs) if line["event"] == "request"]
    assert {line["path"] for line in requests} == {
        "/api/v1/media/users/{user_id}/consent",
        "/api/v1/media/users/{user_id}/export",
        "/api/v1/media/users/{user_id}/nothing",
    }
    served = [line for line in lines(json_logs) if line.get("logger") != "httpx"]  # the test's
    assert served and "pupil-w4q" not in orjson.dumps(served).decode()


def test_every_process_of_a_multi_process_server_logs_json(tmp_path: Path) -> None:
    """``serve --workers 2`` serves from fresh interpreters: their lines are JSON and
    carry the request id too (as the single-process server's)."""
    server = ServiceProcess(tmp_path, service_env(tmp_path, MEDIA_LOG_LEVEL="INFO"))
    token = server.token("admin-1", ORG, Role.ADMIN)
    command = [str(BIN), "serve", "--workers", "2", "--host", "127.0.0.1"]
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(server.port)],
            cwd=tmp_path,
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, server.log_tail()
            assert time.monotonic() < deadline, server.log_tail()
            try:
                answer = httpx.get(
                    f"{server.url}{FILES}",
                    headers={"Authorization": f"Bearer {token}", "X-Request-ID": "reqworkers01"},
                    timeout=5,
                )
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer.status_code == 200, answer.text
    finally:
        process.terminate()
        process.wait(30)
    output = (tmp_path / "server.log").read_text()
    mentions = [line for line in output.splitlines() if "reqworkers01" in line]
    assert mentions, output
    parsed = [orjson.loads(line) for line in mentions]  # fails on a console-rendered line
    assert any(line["event"] == "request" and line["status"] == 200 for line in parsed)
    assert all(line["request_id"] == "reqworkers01" for line in parsed)
    assert token not in output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /f/x/content?exp=1&kid=k0&sig=abc-_1", "GET /f/x/content?[redacted]"),
        ("https://s3/b/k?X-Amz-Signature=ff&X-Amz-Date=1 done", "https://s3/b/k?[redacted] done"),
        ("list?cursor=abc&limit=5", "list?cursor=abc&limit=5"),
        ("signed with sig=abc&exp=9", "signed with sig=[redacted]&exp=[redacted]"),
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2ln", "Authorization: Bearer [redacted]"),
        ("token eyJhbGciOi.eyJzdWIi.c2ln!", "token [redacted]!"),
        ("postgresql://media:hunter2@db/media", "postgresql://media:[redacted]@db/media"),
        (
            '{"latitude": 52.5163, "longitude": -13.3777}',
            '{"latitude": [redacted], "longitude": [redacted]}',
        ),
        ("GPSLatitude=(52.0, 30.0, 58.68) ok", "GPSLatitude=[redacted] ok"),
        ("latency: 5 ms, translated: 3", "latency: 5 ms, translated: 3"),
        (
            "x-eyJhbGciOi.eyJzdWIi.c2ln and token.eyJhbGciOi.eyJzdWIi.c2ln",
            "x-[redacted] and token.[redacted]",
        ),
        ("lat:(52.1, 13.4) and gps=[1, 2]", "lat:[redacted] and gps=[redacted]"),
    ],
)
def test_redaction_of_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize("text", ["?" * 20_000, "eyJ-" * 5_000, "a." * 10_000 + "://x:y"])
def test_a_huge_hostile_value_is_written_cut_to_max_text(text: str) -> None:
    """A request path is attacker-controlled: what is written is at most MAX_TEXT characters
    and says how much was left out (docs/operations.md)."""
    redacted = redact_text(text)
    assert len(redacted) <= MAX_TEXT + 40
    assert redacted.endswith(f"…[{len(text) - MAX_TEXT} more characters]")


def test_a_secret_across_the_cut_is_redacted_and_a_traceback_keeps_its_end() -> None:
    straddling = "x" * (MAX_TEXT - 20) + " postgresql://app:hunter2-very-secret@db/media"
    assert "hunter2" not in redact_text(straddling)
    frames = "".join(f'  File "m.py", line {n}, in f{n}\n    f{n + 1}()\n' for n in range(400))
    traceback = f"Traceback (most recent call last):\n{frames}ValueError: bad sig=abc123"
    assert len(traceback) > MAX_TRACEBACK
    logged = redact(None, "error", {"event": "boom", "exception": traceback})["exception"]
    assert logged.endswith("ValueError: bad sig=[redacted]") and len(logged) < MAX_TRACEBACK + 64
