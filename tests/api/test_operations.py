"""Operations: ``doctor`` and ``/health/ready`` check the bus and warn when NATS does not
sync acknowledged writes to disk; ``/metrics`` exposes the outbox backlog, its age, dead
letters and the event counters, moving as uploads happen, and jobs by state (queued,
waiting, dead), moving as jobs are enqueued, run and dead-lettered.

``doctor`` runs as the real console script against NATS servers of the test's own: one
with ``sync_interval: always`` (the harness default), one without, and one stopped.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from asgi_lifespan import LifespanManager
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from media_service.app import create_app
from media_service.auth.principal import Role
from media_service.db.migrate import alembic_config, upgrade_to_head
from media_service.db.uow import unit_of_work
from media_service.events import DeadLetterRepository, FileDeleted
from media_service.events.bus import DeadLetter, DeliveryPolicy, RejectMessage
from media_service.jobs import JobContext, JobRegistry, Worker, enqueue, job
from media_service.media.consumers import PURGE_CONSUMER
from media_service.metrics import ServiceMetrics
from media_service.runtime import domain_consumers
from media_service.state import ServiceState

from conftest import Stack, stack_settings
from harness.nats import NatsNotInstalled, NatsServer, start_nats
from harness.service import ServiceProcess, service_env

ORG = "org_ops"


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A NATS server (sync always) of this test's own, to stop."""
    try:
        server = start_nats(tmp_path / "synced", allow_external=False)
    except NatsNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    with server:
        yield server


@pytest.fixture
def lax_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A NATS server started without ``sync_interval: always``."""
    with start_nats(tmp_path / "lax", sync_always=False, allow_external=False) as server:
        yield server


# -- doctor -------------------------------------------------------------------------------


def doctor(tmp_path: Path, sqlite_template: Path, events_url: str) -> tuple[int, dict[str, str]]:
    """Run ``media-service doctor``; its exit code and ``check -> "ok | detail"``."""
    (tmp_path / "data").mkdir(exist_ok=True)
    shutil.copy(sqlite_template, tmp_path / "data" / "media.db")
    env = service_env(tmp_path, MEDIA_EVENTS_URL=events_url, COLUMNS="400")
    result = ServiceProcess(tmp_path, env).cli("doctor")
    assert "Traceback" not in result.stderr, result.stderr
    rows: dict[str, str] = {}
    last = ""
    for line in result.stdout.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) != 3:
            continue
        if cells[0]:
            last = cells[0]
            rows[last] = f"{cells[1]} | {cells[2]}"
        elif last:
            rows[last] += cells[2]
    return result.returncode, rows


def test_doctor_passes_on_nats_that_syncs_every_write(
    own_nats: NatsServer, tmp_path: Path, sqlite_template: Path
) -> None:
    code, rows = doctor(tmp_path, sqlite_template, own_nats.events_url)
    assert code == 0, rows
    assert rows["bus"].startswith("yes | nats://127.0.0.1:"), rows
    assert "MEDIA_EVENTS" in rows["bus"]
    assert "lag" in rows["bus"] or "no durable consumers" in rows["bus"]
    assert rows["bus sync"].startswith("yes | ") and "synced to disk" in rows["bus sync"]
    assert "warning" not in rows["bus sync"]


def test_doctor_warns_when_nats_acknowledges_before_fsync(
    lax_nats: NatsServer, tmp_path: Path, sqlite_template: Path
) -> None:
    code, rows = doctor(tmp_path, sqlite_template, lax_nats.events_url)
    assert code == 0, rows  # a warning, not a failure
    assert rows["bus"].startswith("yes | "), rows
    sync = rows["bus sync"]
    assert sync.startswith("WARN | warning: NATS acknowledges before fsync"), sync
    assert "power failure" in sync and "sync_interval: always" in sync


def test_doctor_says_when_it_cannot_tell_and_how_to_find_out(
    own_nats: NatsServer, tmp_path: Path, sqlite_template: Path
) -> None:
    code, rows = doctor(tmp_path, sqlite_template, own_nats.url)  # no ?monitor=
    assert code == 0, rows
    assert rows["bus sync"].startswith("WARN | warning: cannot tell"), rows
    assert "?monitor=http://HOST:8222" in rows["bus sync"]


def test_doctor_fails_with_one_clear_line_when_nats_is_down(
    own_nats: NatsServer, tmp_path: Path, sqlite_template: Path
) -> None:
    own_nats.stop()
    code, rows = doctor(tmp_path, sqlite_template, own_nats.events_url)
    assert code == 1, rows
    assert rows["bus"].startswith("NO | cannot connect to NATS at nats://127.0.0.1:"), rows
    assert "bus sync" not in rows
    assert rows["database"].startswith("yes") and rows["storage"].startswith("yes")


def test_doctor_on_the_in_process_bus_reports_its_consumers(
    tmp_path: Path, sqlite_template: Path
) -> None:
    code, rows = doctor(tmp_path, sqlite_template, "memory://")
    assert code == 0, rows
    assert rows["bus"].startswith("yes | memory://: in-process"), rows
    assert "bus sync" not in rows  # as durable as the database: nothing to warn about


def test_doctor_reports_ocr_and_how_to_enable_it_when_tesseract_is_missing(
    tmp_path: Path, sqlite_template: Path
) -> None:
    code, rows = doctor(tmp_path, sqlite_template, "memory://")
    assert code == 0, rows  # optional: never a failure
    if shutil.which("tesseract") is None:  # as on the machine this was written on
        assert rows["ocr"].startswith("WARN | warning: tesseract is not installed"), rows
        assert "tesseract-ocr" in rows["ocr"] and "MEDIA_OCR=false" in rows["ocr"]
    else:
        assert rows["ocr"].startswith("yes | tesseract "), rows


# -- readiness ------------------------------------------------------------------------------


@pytest.fixture
async def nats_app(
    lax_nats: NatsServer, tmp_path: Path, sqlite_template: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on SQLite + local files + the lax NATS server."""
    shutil.copy(sqlite_template, tmp_path / "media.db")
    settings = stack_settings(
        "ops",
        f"sqlite+aiosqlite:///{tmp_path / 'media.db'}",
        f"file://{tmp_path / 'blobs'}",
        tmp_path / "data",
        events_url=lax_nats.events_url,
    )
    state = ServiceState.build(settings)
    try:
        async with LifespanManager(create_app(settings, state)) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ops.test") as http:
                yield http
    finally:
        await state.close()


async def test_readiness_warns_on_lax_nats_and_fails_while_it_is_down(
    nats_app: httpx.AsyncClient, lax_nats: NatsServer
) -> None:
    ready = await nats_app.get("/health/ready")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["bus"]["ok"] is True and PURGE_CONSUMER in checks["bus"]["detail"]
    assert checks["bus sync"] == {
        "ok": True,
        "warning": True,
        "detail": checks["bus sync"]["detail"],
    }
    assert "power failure" in checks["bus sync"]["detail"]

    await asyncio.to_thread(lax_nats.stop)
    down = await nats_app.get("/health/ready")
    assert down.status_code == 503
    assert down.json()["checks"]["bus"]["ok"] is False
    assert "not connected to NATS" in down.json()["checks"]["bus"]["detail"]

    await asyncio.to_thread(lax_nats.start)
    async with asyncio.timeout(15):
        while (await nats_app.get("/health/ready")).status_code != 200:
            await asyncio.sleep(0.1)


async def test_readiness_names_the_schema_behind_head_until_it_is_migrated(
    tmp_path: Path,
) -> None:
    """A database migrated only to the revision before the newest: 503 with the
    migrations check failing (and saying what to run), everything else fine; 200 once
    migrated."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    settings = stack_settings(
        "behind",
        f"sqlite+aiosqlite:///{tmp_path / 'media.db'}",
        f"file://{tmp_path / 'blobs'}",
        tmp_path / "data",
    )
    state = ServiceState.build(settings)
    try:
        async with state.engine.begin() as connection:
            await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), previous))
        async with LifespanManager(create_app(settings, state)) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ops.test") as http:
                behind = await http.get("/health/ready")
                assert behind.status_code == 503, behind.text
                body = behind.json()
                assert body["status"] == "unavailable"
                migrations = body["checks"]["migrations"]
                assert migrations["ok"] is False
                assert f"1 pending ({head})" in migrations["detail"]
                assert "media-service migrate" in migrations["detail"]
                others = {
                    name: c["ok"] for name, c in body["checks"].items() if name != "migrations"
                }
                assert others["database"] and others["storage"] and others["bus"], others
                await upgrade_to_head(state.engine)
                ready = await http.get("/health/ready")
                assert ready.status_code == 200, ready.text
                assert ready.json()["checks"]["migrations"] == {"ok": True, "detail": "at head"}
    finally:
        await state.close()


# -- metrics --------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``(sample name, sorted labels) -> value`` of a Prometheus text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


PUBLISHED = ("media_events_published_total", (("event_type", "file.uploaded"),))
DELETED = ("media_events_published_total", (("event_type", "file.deleted"),))
BACKLOG = ("media_outbox_backlog", ())
AGE = ("media_outbox_oldest_age_seconds", ())
HANDLED = ("media_events_handled_total", (("consumer", PURGE_CONSUMER),))
DUPLICATE = ("media_events_duplicate_total", (("consumer", PURGE_CONSUMER),))
FAILED = ("media_event_handler_failures_total", (("consumer", PURGE_CONSUMER),))
DEAD = ("media_dead_letters", ())


async def wait_for_metric(
    client: httpx.AsyncClient, key: tuple[str, tuple[tuple[str, str], ...]], value: float
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with asyncio.timeout(15):
        while True:
            seen = await scrape(client)
            if seen.get(key) == value:
                return seen
            await asyncio.sleep(0.05)


async def test_metrics_follow_the_outbox_and_the_consumers(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    first = await scrape(client)
    assert first[BACKLOG] == 0 and first[AGE] == 0 and first[DEAD] == 0
    assert PUBLISHED not in first  # no event yet: no series

    await stack.state.relay.stop()  # hold the outbox back to see the backlog
    headers = stack.auth("admin-1", ORG, Role.ADMIN)
    uploads = []
    for shade in (10, 20):
        response = await client.post(
            "/api/v1/media/files",
            headers=headers,
            files={"file": ("p.jpg", make_jpeg(20, 20, (shade, 0, 0)), "image/jpeg")},
            data={"owner_type": "Student", "owner_id": "stu-1"},
        )
        assert response.status_code == 201, response.text
        uploads.append(response.json()["file_id"])
    await asyncio.sleep(0.1)
    held = await scrape(client)
    assert held[BACKLOG] == 2
    assert 0.1 <= held[AGE] < 60
    assert PUBLISHED not in held

    stack.state.relay.start()
    await wait_for_metric(client, PUBLISHED, 2)
    # (the uploads' consumers add events of their own, such as media.version.created)
    drained = await wait_for_metric(client, BACKLOG, 0)
    assert drained[AGE] == 0

    # A delete: file.deleted is published and applied by the purge consumer, once; the
    # same event again (an external re-publish) is a duplicate; a poison one fails.
    assert (
        await client.delete(f"/api/v1/media/files/{uploads[0]}", headers=headers)
    ).status_code == 204
    await wait_for_metric(client, HANDLED, 1)
    # counted once marked, which may come after the consumer already handled it
    await wait_for_metric(client, DELETED, 1)
    again = FileDeleted(file_id=uploads[1], user_id="storage", organization_id=ORG)
    for msg_id in ("external-copy-1", "external-copy-2"):  # distinct ids: both delivered
        await stack.state.bus.publish(again.subject, again.to_json(), msg_id)
    await wait_for_metric(client, DUPLICATE, 1)
    await stack.state.bus.publish("file.deleted", b"{not json", "poison-1")
    # Every consumer of file.deleted refuses it: one dead letter each.
    deleted_consumers = [
        consumer
        for consumer in domain_consumers(stack.state)
        if consumer.subjects == ("file.deleted",)
    ]
    poisoned = await wait_for_metric(client, DEAD, len(deleted_consumers))
    assert poisoned[FAILED] == 1
    assert poisoned[HANDLED] == 2
    assert all(not math.isnan(value) for value in poisoned.values())


# -- jobs by state ---------------------------------------------------------------------------


def job_state(state: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("media_jobs", (("state", state),))


QUEUED, WAITING, DEAD_JOBS = job_state("queued"), job_state("waiting"), job_state("dead")
QUEUED_AGE = ("media_jobs_oldest_queued_age_seconds", ())
JOB_POLICY = DeliveryPolicy(max_deliver=2, backoff=(0.1,), handler_timeout=20.0, ack_margin=5.0)


class OpsPayload(BaseModel):
    n: int


async def test_metrics_count_jobs_by_state(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    """A job is queued while in the outbox, waiting once published until a worker
    acknowledges it, dead when it fails; events in the outbox and dead letters of events
    are not jobs."""
    first = await scrape(client)
    assert first[QUEUED] == 0 and first[WAITING] == 0 and first[DEAD_JOBS] == 0
    assert first[QUEUED_AGE] == 0

    name = f"ops.metrics-{uuid.uuid4().hex[:8]}"  # a consumer of its own on a shared NATS
    release = asyncio.Event()

    @job(name, OpsPayload)
    async def run(ctx: JobContext, payload: OpsPayload) -> None:
        if payload.n < 0:
            raise RejectMessage("negative")
        async with asyncio.timeout(15):
            await release.wait()

    await stack.state.relay.stop()  # hold the outbox back: the job stays queued
    async with unit_of_work(stack.state.sessions) as session:
        await enqueue(session, name, OpsPayload(n=1), job_id=f"job-ops-{uuid.uuid4().hex}")
    response = await client.post(  # an event in the outbox too: not a job
        "/api/v1/media/files",
        headers=stack.auth("admin-1", ORG, Role.ADMIN),
        files={"file": ("p.jpg", make_jpeg(20, 20, (5, 0, 0)), "image/jpeg")},
        data={"owner_type": "Student", "owner_id": "stu-1"},
    )
    assert response.status_code == 201, response.text
    await asyncio.sleep(0.1)
    held = await scrape(client)
    assert held[BACKLOG] == 2 and held[QUEUED] == 1
    assert 0.1 <= held[QUEUED_AGE] < 60
    assert held[WAITING] == 0

    # A worker of the job type takes it and holds it: published, not yet acknowledged.
    await Worker(
        stack.state.bus, stack.state.sessions, JobRegistry([run]), policy=JOB_POLICY
    ).start()
    stack.state.relay.start()
    running = await wait_for_metric(client, QUEUED, 0)  # marked published after the bus took it
    assert running[QUEUED_AGE] == 0
    assert (await wait_for_metric(client, WAITING, 1))[QUEUED] == 0  # the handler holds it
    release.set()
    done = await wait_for_metric(client, WAITING, 0)
    assert done[DEAD_JOBS] == 0 and done[QUEUED] == 0

    # A dead letter of an event is not a dead job; a job that fails is.
    await DeadLetterRepository(stack.state.sessions).add(
        DeadLetter("some-consumer", "file.deleted", b"{}", "poison-event", 1, "bad")
    )
    event_dead = await wait_for_metric(client, DEAD, 1)
    assert event_dead[DEAD_JOBS] == 0
    async with unit_of_work(stack.state.sessions) as session:
        await enqueue(session, name, OpsPayload(n=-1))
    await wait_for_metric(client, DEAD_JOBS, 1)
    # The relay marks the row published only after the bus took it, and the in-process
    # bus may dead-letter the job before that: wait for both to settle.
    await wait_for_metric(client, QUEUED, 0)
    dead = await wait_for_metric(client, DEAD, 2)  # read by another query: may come later
    assert dead[DEAD_JOBS] == 1 and dead[QUEUED] == 0
    assert (await wait_for_metric(client, WAITING, 0))[DEAD_JOBS] == 1
    assert all(not math.isnan(value) for value in dead.values())


@pytest.mark.parametrize("settings_overrides", [{"metrics_token": "scrape-me-7f3a"}])
async def test_metrics_ask_for_the_configured_token(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-me-7f3a"}):
        refused = await client.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert "MEDIA_METRICS_TOKEN" in refused.json()["detail"]
    allowed = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me-7f3a"})
    assert allowed.status_code == 200
    assert ("media_outbox_backlog", ()) in samples(allowed.text)


# -- the spec's series ---------------------------------------------------------------------------


async def test_the_specs_metric_names_move_as_work_is_done(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    """media_photo_versions_total, media_playlist_query_duration_seconds,
    media_ai_analysis_duration_seconds, media_smart_playlist_update_total and
    media_cache_hit_rate exist under these exact names and count what happened."""
    headers = stack.auth("teacher-9", ORG, Role.TEACHER)
    photo = make_jpeg(64, 48, (90, 30, 10))
    upload = await client.post(
        "/api/v1/media/files",
        headers=headers,
        files={"file": ("p.jpg", photo, "image/jpeg")},
        data={"owner_type": "ClassSession", "owner_id": "cs-9"},
    )
    assert upload.status_code == 201, upload.text
    photo_id = upload.json()["file_id"]
    versions = f"/api/v1/media/photos/{photo_id}/versions"
    styled = await client.post(
        versions, headers=headers, json={"version_type": "STYLED", "processing_mode": "sepia"}
    )
    assert styled.status_code == 201, styled.text
    playlist = await client.post(
        "/api/v1/media/playlists",
        headers=headers,
        json={"name": "Class", "playlist_type": "MANUAL", "photo_ids": [photo_id]},
    )
    assert playlist.status_code == 201, playlist.text
    listed = await client.get(
        f"/api/v1/media/playlists/{playlist.json()['playlist_id']}/photos", headers=headers
    )
    assert listed.status_code == 200, listed.text
    stack.state.observations.duration("ai_analysis", 0.3)  # as ask_analyzer reports a call

    STYLED = ("media_photo_versions_total", (("version_type", "STYLED"),))
    ORIGINAL = ("media_photo_versions_total", (("version_type", "ORIGINAL"),))
    seen = await wait_for_metric(client, STYLED, 1)
    seen = await wait_for_metric(client, ORIGINAL, 1)
    assert seen[("media_playlist_query_duration_seconds_count", ())] == 1
    assert seen[("media_ai_analysis_duration_seconds_count", ())] == 1
    assert seen[("media_ai_analysis_duration_seconds_sum", ())] == pytest.approx(0.3)
    assert seen[("media_smart_playlist_update_total", ())] == 0  # no smart playlist yet
    # The upload's bytes, counted once its file.uploaded left (the version's are not).
    UPLOADED = ("media_upload_bytes_total", (("file_type", "Image"),))
    seen = await wait_for_metric(client, UPLOADED, len(photo))
    assert seen[("media_uploads_total", (("file_type", "Image"),))] == 1
    assert ("media_upload_bytes_total", (("file_type", "Document"),)) not in seen


def test_only_smart_playlist_changes_count_as_smart_updates() -> None:
    metrics = ServiceMetrics()
    for playlist_type in ("SMART", "MANUAL", "SMART", "AI_CURATED"):
        payload = {"playlist_type": playlist_type, "photo_count": 3}
        metrics.published("event", "media.playlist.updated", payload)
    metrics.published("job", "jobs.media.preprocess", {"playlist_type": "SMART"})
    seen = samples(generate_latest(metrics.registry).decode())
    assert seen[("media_smart_playlist_update_total", ())] == 2
    assert seen[("media_events_published_total", (("event_type", "media.playlist.updated"),))] == 4


async def test_requests_are_counted_by_route_template_not_raw_path(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    headers = stack.auth("admin-1", ORG, Role.ADMIN)
    for n in range(3):  # three different files: one route, one series
        missing = await client.get(f"/api/v1/media/files/file_nope{n}", headers=headers)
        assert missing.status_code == 404
    assert (await client.get(f"/no/such/path/{uuid.uuid4().hex}")).status_code == 404
    seen = samples((await client.get("/metrics")).text)
    route = "/api/v1/media/files/{file_id}"
    key = ("method", "GET"), ("route", route), ("status", "404")
    assert seen[("media_http_requests_total", key)] == 3
    duration = ("media_http_request_duration_seconds_count", (("method", "GET"), ("route", route)))
    assert seen[duration] == 3
    unmatched = ("method", "GET"), ("route", "unmatched"), ("status", "404")
    assert seen[("media_http_requests_total", unmatched)] == 1
    assert not any("file_nope" in str(labels) for _, labels in seen)
