"""The frame feed under load: ``GET /api/v1/media/frames/{frame_id}/feed`` of a real
``media-service serve`` on PostgreSQL, polled by 200 frames at once, each with its own
frame token.

Run with ``make bench`` (or ``.venv/bin/python bench/frames.py --help``). Parts:

- setup (cached): a PostgreSQL cluster of its own (the test harness's binaries and
  bench/metadata.py's server settings) with ``--users`` members of one organization, 10,000
  photos between them (``media_files`` rows, each with its ORIGINAL current version), two
  manual playlists per member (all their photos; a quarter of them as favourites), 1,000
  frames (10 per member, three time zones, landscape and portrait) with their schedules:
  every frame a CONTINUOUS one (half of them shuffled), half an evening TIME_BASED one at
  higher priority, a tenth a YEARLY birthday. A quarter of the frames have their first 20
  photos CACHED in ``photo_cache``. Rows go in by Core inserts; the cluster is kept in
  ``~/.cache/media-bench`` (``/var/tmp`` as root) until this file's ``VERSION``, the sizes
  or the migration head change; ``--regenerate`` rebuilds it.
- load: the real server (``MEDIA_DATABASE_URL`` on that cluster, local files, in-process
  bus) and, in a separate process, a load generator: a small asyncio HTTP/1.1 client with
  one keep-alive connection per frame (cheaper per request than httpx, so that the client
  takes less of the two cores from the server). Cases:

  - cold: the first request of each of the 1,000 frames in a fresh server process,
    200 frames at a time;
  - warm: 200 frames asking again without ``If-None-Match`` (a full 200 body each time);
  - 304: the same with the ``ETag`` of their last answer.

  Each case runs *paced* (every frame polls once every ``--period`` seconds, so 200 frames
  offer 200 / period requests per second: the latency a frame sees at that load) and warm
  and 304 also *closed* (each connection sends its next request as soon as the answer
  arrives: the most requests per second the machine gives; latency then is queueing,
  200 / rate by Little's law). A fresh server process serves each half (cold, warm;
  then 304), without its frame pre-cache loop (its rounds would render photos, which have
  no bytes here, in the middle of the measurement; the bench checks that no cache entry
  appeared). CPU seconds of the server process, of PostgreSQL and of the load generator are
  measured over each case.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import httpx
import numpy as np
import psutil
import structlog
from sqlalchemy import Table, insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the PostgreSQL harness
sys.path.insert(0, str(ROOT / "bench"))  # metadata.py's cluster

import metadata as mb  # noqa: E402
from media_service.auth.principal import Role  # noqa: E402
from media_service.auth.tokens import TokenService  # noqa: E402
from media_service.db.engine import create_engine  # noqa: E402
from media_service.db.migrate import upgrade_to_head  # noqa: E402
from media_service.frames.models import (  # noqa: E402
    CacheStatus,
    Frame,
    Orientation,
    PhotoCache,
    RotationSchedule,
)
from media_service.frames.rotation import ScheduleType  # noqa: E402
from media_service.ids import new_id  # noqa: E402
from media_service.media.models import FileStatus, FileType, MediaFile, OwnerType  # noqa: E402
from media_service.playlists.models import Playlist, PlaylistItem, PlaylistType  # noqa: E402
from media_service.versions.models import (  # noqa: E402
    PhotoVersion,
    PhotoVersionCounter,
    VersionType,
)
from rawhttp import RawConnection  # noqa: E402

VERSION = 2  # bump when the generated rows change: the cached cluster is rebuilt
DATABASE = "bench_frames"
ORG = "org_frames"
SECRET = "bench-frames-secret-0123456789-abcdefghijklmnop"  # noqa: S105 - throwaway
FEED = "/api/v1/media/frames/{frame_id}/feed"
TARGET_P99_MS = 25.0
PHOTO_COUNTS = (25, 50, 100, 200, 125)  # per member, cycling: 100 on average
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")
SCREENS = ((1920, 1080, Orientation.LANDSCAPE), (1280, 800, Orientation.PORTRAIT))
CACHED_PER_FRAME = 20
SEEDED = "bench"  # cache_quality of the seeded entries
BATCH = 5_000


# -- the rows --------------------------------------------------------------------------------------


def _photo_rows(user: str, count: int, now: datetime, rng: np.random.Generator) -> Any:
    files: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    counters: list[dict[str, Any]] = []
    for n in range(count):
        file_id = new_id("file")
        sha = rng.bytes(32).hex()
        path = f"files/{ORG}/{file_id}/original.jpg"
        uploaded = now - timedelta(days=float(rng.uniform(0, 700)))
        files.append({
            "file_id": file_id, "organization_id": ORG, "owner_id": user,
            "owner_type": OwnerType.USER, "uploaded_by": user, "file_name": f"p{n}.jpg",
            "file_type": FileType.IMAGE, "content_type": "image/jpeg", "file_size": 2_400_000,
            "sha256": sha, "storage_path": path, "width": 4032, "height": 3024,
            "status": FileStatus.ACTIVE, "processed": True, "processed_at": uploaded,
            "uploaded_at": uploaded, "updated_at": uploaded,
        })  # fmt: skip
        versions.append({
            "version_id": new_id("ver"), "photo_id": file_id, "user_id": user,
            "organization_id": ORG, "version_name": "Original",
            "version_type": VersionType.ORIGINAL, "processing_mode": None, "file_id": file_id,
            "storage_path": path, "file_size": 2_400_000, "content_type": "image/jpeg",
            "sha256": sha, "width": 4032, "height": 3024, "processing_params": {},
            "metadata": {}, "is_current": True, "version_number": 1, "created_at": uploaded,
            "updated_at": uploaded,
        })  # fmt: skip
        counters.append({"photo_id": file_id, "last_number": 1})
    return files, versions, counters


def _playlist(user: str, name: str, photos: list[str], now: datetime) -> Any:
    playlist_id = new_id("pl")
    row = {
        "playlist_id": playlist_id, "user_id": user, "organization_id": ORG,
        "owner_roles": ["member"], "shared": False, "name": name, "description": None,
        "playlist_type": PlaylistType.MANUAL, "smart_criteria": None, "curation": None,
        "shuffle": False, "loop": True, "transition_duration": 5, "created_at": now,
        "updated_at": now,
    }  # fmt: skip
    items = [
        {"playlist_id": playlist_id, "file_id": photo, "position": (n + 1) * 10,
         "reason": None, "added_at": now - timedelta(days=n % 30)}
        for n, photo in enumerate(photos)
    ]  # fmt: skip
    return row, items


def _schedule(frame: dict[str, Any], playlist_id: str, now: datetime, **fields: Any) -> Any:
    return {
        "schedule_id": new_id("sch"), "user_id": frame["user_id"], "organization_id": ORG,
        "frame_id": frame["frame_id"], "playlist_id": playlist_id, "name": None,
        "start_time": None, "end_time": None, "days_of_week": [], "occasions": [],
        "priority": 0, "rotation_interval": 30, "transition": "fade", "shuffle": False,
        "recent_first": False, "is_active": True, "created_at": now, "updated_at": now,
        **fields,
    }  # fmt: skip


def _frames_of(user: str, n_user: int, count: int, now: datetime) -> list[dict[str, Any]]:
    frames = []
    for k in range(count):
        width, height, orientation = SCREENS[k % len(SCREENS)]
        frames.append({
            "frame_id": new_id("frame"), "user_id": user, "organization_id": ORG,
            "name": f"frame {k}", "time_zone": ZONES[(n_user + k) % len(ZONES)],
            "screen_width": width, "screen_height": height, "orientation": orientation,
            "last_seen_at": None, "created_at": now - timedelta(days=30),
            "updated_at": now - timedelta(days=30),
        })  # fmt: skip
    return frames


def _schedules_of(
    frame: dict[str, Any], n: int, everything: str, favourites: str, now: datetime
) -> list[dict[str, Any]]:
    rows = [_schedule(frame, everything, now, schedule_type=ScheduleType.CONTINUOUS,
                      shuffle=n % 2 == 1, recent_first=n % 4 == 1)]  # fmt: skip
    if n % 2 == 0:
        rows.append(_schedule(frame, favourites, now, schedule_type=ScheduleType.TIME_BASED,
                              start_time="18:00", end_time="22:00", priority=1,
                              days_of_week=[0, 1, 2, 3, 4] if n % 4 == 0 else []))  # fmt: skip
    if n % 10 == 3:
        birthday = {"kind": "YEARLY", "month": 1 + n % 12, "day": 1 + n % 28, "label": "b"}
        rows.append(_schedule(frame, favourites, now, schedule_type=ScheduleType.EVENT_BASED,
                              occasions=[birthday], priority=2, shuffle=True))  # fmt: skip
    return rows


def _cached(frame: dict[str, Any], photos: list[tuple[str, str]], now: datetime) -> Any:
    rows = []
    for photo_id, version_id in photos[:CACHED_PER_FRAME]:
        cache_id = new_id("cache")
        rows.append({
            "cache_id": cache_id, "user_id": frame["user_id"], "organization_id": ORG,
            "frame_id": frame["frame_id"], "photo_id": photo_id, "version_id": version_id,
            "cache_status": CacheStatus.CACHED,
            "cached_url": f"/api/v1/media/cache/{cache_id}/content",
            "local_path": f"files/{ORG}/{photo_id}/frames/{frame['frame_id']}/{version_id}.jpg",
            "cache_size": 400_000, "cache_format": "jpeg", "cache_quality": SEEDED,
            "hit_count": 0, "miss_count": 0, "last_accessed_at": None, "error_message": None,
            "retry_count": 0, "next_attempt_at": None, "created_at": now, "updated_at": now,
            "expires_at": now + timedelta(days=300),
        })  # fmt: skip
    return rows


def generate_rows(args: argparse.Namespace) -> dict[type[Any], list[dict[str, Any]]]:
    """Every row of the bench database, by table."""
    rng = np.random.default_rng(args.seed)
    now = datetime.now(UTC)
    tables: dict[type[Any], list[dict[str, Any]]] = {
        table: []
        for table in (MediaFile, PhotoVersion, PhotoVersionCounter, Playlist, PlaylistItem,
                      Frame, RotationSchedule, PhotoCache)
    }  # fmt: skip
    frames_each = args.frames // args.users
    for n_user in range(args.users):
        user = f"member_{n_user:04d}"
        count = PHOTO_COUNTS[n_user % len(PHOTO_COUNTS)] * args.photos // (100 * args.users)
        files, versions, counters = _photo_rows(user, count, now, rng)
        tables[MediaFile] += files
        tables[PhotoVersion] += versions
        tables[PhotoVersionCounter] += counters
        ids = [row["file_id"] for row in files]
        every, every_items = _playlist(user, "Everything", ids, now)
        fav, fav_items = _playlist(user, "Favourites", ids[::4], now)
        tables[Playlist] += [every, fav]
        tables[PlaylistItem] += every_items + fav_items
        photos = [(row["photo_id"], row["version_id"]) for row in versions]
        for k, frame in enumerate(_frames_of(user, n_user, frames_each, now)):
            n = n_user * frames_each + k
            tables[Frame].append(frame)
            tables[RotationSchedule] += _schedules_of(
                frame, n, every["playlist_id"], fav["playlist_id"], now
            )
            if n % 4 == 2:
                tables[PhotoCache] += _cached(frame, photos, now)
    return tables


async def generate(cluster: mb.Cluster, args: argparse.Namespace) -> dict[str, float]:
    """Schema by the migrations, rows by Core inserts, then VACUUM ANALYZE."""
    admin = await asyncpg.connect(cluster.dsn())
    await admin.execute(
        f"CREATE DATABASE {DATABASE} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
    )
    await admin.close()
    engine = create_engine(cluster.url(DATABASE))
    steps: dict[str, float] = {}
    try:
        started = time.perf_counter()
        await upgrade_to_head(engine)
        steps["migrate"] = time.perf_counter() - started
        started = time.perf_counter()
        tables = generate_rows(args)
        async with engine.begin() as connection:
            for model, rows in tables.items():
                for start in range(0, len(rows), BATCH):
                    table = cast(Table, model.__table__)
                    await connection.execute(insert(table), rows[start : start + BATCH])
        steps["insert"] = time.perf_counter() - started
    finally:
        await engine.dispose()
    started = time.perf_counter()
    connection = await asyncpg.connect(cluster.dsn(DATABASE))
    try:
        await connection.execute("VACUUM (ANALYZE)")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()
    steps["VACUUM ANALYZE"] = time.perf_counter() - started
    return steps


def ensure_database(cluster: mb.Cluster, args: argparse.Namespace) -> dict[str, float]:
    """Start the cached cluster, building it first when missing, stale or asked to."""
    wanted = {"version": VERSION, "users": args.users, "photos": args.photos,
              "frames": args.frames, "seed": args.seed,
              "head": asyncio.run(mb.migration_head())}  # fmt: skip
    marker = cluster.root / "bench-frames.json"
    if not args.regenerate and marker.exists() and json.loads(marker.read_text()) == wanted:
        cluster.start()
        return {}
    print(f"generating {args.frames:,} frames, {args.photos:,} photos into {cluster.root}",
          file=sys.stderr)  # fmt: skip
    cluster.init()
    cluster.start()
    steps = asyncio.run(generate(cluster, args))
    marker.write_text(json.dumps(wanted))
    return steps


async def counts(cluster: mb.Cluster) -> dict[str, int]:
    connection = await asyncpg.connect(cluster.dsn(DATABASE))
    try:
        found = {}
        for table in ("frames", "rotation_schedules", "media_files", "photo_versions",
                      "playlists", "playlist_items", "photo_cache"):  # fmt: skip
            found[table] = int(await connection.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608
        return found
    finally:
        await connection.close()


async def frame_ids(cluster: mb.Cluster) -> list[str]:
    connection = await asyncpg.connect(cluster.dsn(DATABASE))
    try:
        rows = await connection.fetch("SELECT frame_id FROM frames ORDER BY frame_id")
        return [row["frame_id"] for row in rows]
    finally:
        await connection.close()


async def cache_rows_other_than_seeded(cluster: mb.Cluster) -> int:
    """Entries a pre-cache run made."""
    connection = await asyncpg.connect(cluster.dsn(DATABASE))
    try:
        query = f"SELECT count(*) FROM photo_cache WHERE cache_quality <> '{SEEDED}'"  # noqa: S608
        return int(await connection.fetchval(query))
    finally:
        await connection.close()


async def reset_seen(cluster: mb.Cluster) -> None:
    """Frames as never seen, so every run starts from the same rows."""
    connection = await asyncpg.connect(cluster.dsn(DATABASE))
    try:
        await connection.execute("UPDATE frames SET last_seen_at = NULL")
        query = f"DELETE FROM photo_cache WHERE cache_quality <> '{SEEDED}'"  # noqa: S608
        await connection.execute(query)
    finally:
        await connection.close()


# -- the server ------------------------------------------------------------------------------------


class Server:
    """``media-service serve`` on the bench cluster, in a temporary data dir, with its frame
    pre-cache rounds off: they would render photos (which have no bytes here) in the middle
    of the measurement."""

    def __init__(self, database_url: str, web_workers: int = 1) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-frames-"))
        self.port = mb.pg_harness._free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MEDIA_")},
            "MEDIA_DATA_DIR": str(self.workdir / "data"),
            "MEDIA_DATABASE_URL": database_url,
            "MEDIA_STORAGE_URL": f"file://{self.workdir}/data/blobs",
            "MEDIA_EVENTS_URL": "memory://",
            "MEDIA_AUTO_MIGRATE": "false",
            "MEDIA_JWT_SECRET": SECRET,
            "MEDIA_LOG_LEVEL": "WARNING",
            "MEDIA_LOG_FORMAT": "json",
            "MEDIA_PREPROCESS_UPLOADS": "false",
            "MEDIA_IMAGING_WORKERS": "1",
            "MEDIA_HOST": "127.0.0.1",
            "MEDIA_PORT": str(self.port),
            "MEDIA_FRAME_PRECACHE_INTERVAL_SECONDS": "0",
            "MEDIA_WEB_WORKERS": str(web_workers),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> psutil.Process:
        log = (self.workdir / "server.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "media_service", "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.started = time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited: {(self.workdir / 'server.log').read_text()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/health/live", timeout=1).status_code == 200:
                    return psutil.Process(self.process.pid)
            time.sleep(0.1)
        raise RuntimeError("the server did not answer /health/live within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            children = psutil.Process(self.process.pid).children(recursive=True)
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            for child in children:  # the imaging workers, if any outlived it
                with contextlib.suppress(psutil.Error):
                    child.kill()
        with contextlib.suppress(OSError):
            for path in sorted(self.workdir.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            self.workdir.rmdir()


# -- the load generator (runs in its own process: ``frames.py --load``) ----------------------------


async def feeds_built(port: int) -> float:
    """How many feeds the server has built rather than served from its kept ones (its
    ``/metrics``; with several server processes, the one that answers)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    text = (await reader.read()).decode()
    writer.close()
    for line in text.splitlines():
        if line.startswith('media_frame_feeds_total{source="built"}'):
            return float(line.rsplit(" ", 1)[1])
    raise RuntimeError("the server's /metrics has no media_frame_feeds_total")


def _busy(times: Any) -> float:
    return float(times.user + times.system)


def _tree_cpu(root: psutil.Process) -> dict[int, float]:
    """CPU seconds of each live process of the tree, by pid."""
    found = {}
    with contextlib.suppress(psutil.Error):
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                found[proc.pid] = _busy(proc.cpu_times())
    return found


def _used(before: dict[int, float], root: psutil.Process) -> float:
    """CPU seconds the tree used since ``before``: a process that appeared meanwhile (a new
    PostgreSQL backend) counts from zero; one that ended meanwhile is not counted."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in _tree_cpu(root).items())


class Phase:
    """One measured case: who asks what, how often, for how long."""

    def __init__(self, config: dict[str, Any], tokens: dict[str, str]) -> None:
        self.name: str = config["name"]
        self.lanes: list[list[str]] = config["lanes"]  # frame ids per connection, in order
        self.mode: str = config["mode"]  # "paced", "closed" or "once"
        self.period: float = config.get("period", 1.0)
        self.duration: float = config.get("duration", 0.0)
        self.use_etag: bool = config.get("etag", False)
        self.measured: bool = config.get("measured", True)
        self.tokens = tokens
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.bytes = 0
        self.late = 0


async def _lane(
    phase: Phase, connection: RawConnection, frames: list[str], offset: float,
    etags: dict[str, str], started: float,
) -> None:  # fmt: skip
    """One connection's requests: its frames once each ("once"), or its one frame again
    and again until the phase ends."""
    due = started + offset
    index = 0
    while True:
        if phase.mode == "once" and index >= len(frames):
            return
        now = time.perf_counter()
        if phase.mode != "once" and now - started >= phase.duration:
            return
        if phase.mode != "closed":
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 0.005:
                phase.late += 1
            due += phase.period
        frame_id = frames[index % len(frames)]
        index += 1
        sent = time.perf_counter()
        headers = {"Authorization": f"Bearer {phase.tokens[frame_id]}"}
        if phase.use_etag and frame_id in etags:
            headers["If-None-Match"] = etags[frame_id]
        reply = await connection.get(FEED.format(frame_id=frame_id), headers)
        phase.latencies.append((time.perf_counter() - sent) * 1000)
        phase.statuses[reply.status] = phase.statuses.get(reply.status, 0) + 1
        phase.bytes += len(reply.body)
        if etag := reply.headers.get("etag"):
            etags[frame_id] = etag


async def run_load(config: dict[str, Any]) -> list[dict[str, Any]]:
    tokens: dict[str, str] = config["tokens"]
    server = psutil.Process(config["server_pid"])
    postgres = psutil.Process(config["postgres_pid"])
    lanes = max(len(phase["lanes"]) for phase in config["phases"])
    connections = [RawConnection(config["port"]) for _ in range(lanes)]
    etags: dict[str, str] = {}
    results = []
    for spec in config["phases"]:
        phase = Phase(spec, tokens)
        cpu = (_tree_cpu(server), _tree_cpu(postgres), _busy(os.times()))
        reconnects = sum(connection.reconnects for connection in connections)
        built = await feeds_built(config["port"])
        started = time.perf_counter()
        await asyncio.gather(*(
            _lane(phase, connections[n], frames, phase.period * n / len(phase.lanes), etags,
                  started)
            for n, frames in enumerate(phase.lanes)
        ))  # fmt: skip
        wall = time.perf_counter() - started
        results.append({
            "name": phase.name, "measured": phase.measured, "wall": wall,
            "latencies": phase.latencies, "statuses": phase.statuses, "bytes": phase.bytes,
            "late": phase.late, "server_cpu": _used(cpu[0], server),
            "postgres_cpu": _used(cpu[1], postgres), "client_cpu": _busy(os.times()) - cpu[2],
            "reconnects": sum(c.reconnects for c in connections) - reconnects,
            "built": await feeds_built(config["port"]) - built,
        })  # fmt: skip
    for connection in connections:
        connection.close()
    return results


def load_main() -> None:
    """``frames.py --load``: the config as JSON on stdin, the results as JSON on stdout."""
    config = json.loads(sys.stdin.read())
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(json.dumps(asyncio.run(run_load(config))))


def run_client(config: dict[str, Any]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--load"],
        input=json.dumps(config), capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{done.stderr[-4000:]}")
    return cast(list[dict[str, Any]], json.loads(done.stdout))


# -- the run ---------------------------------------------------------------------------------------


def _tokens(frames: list[str]) -> dict[str, str]:
    service = TokenService(SECRET, issuer="media-service")
    return {
        frame_id: service.mint(frame_id, ORG, [Role.FRAME], ttl=timedelta(hours=2),
                               frame_id=frame_id)
        for frame_id in frames
    }  # fmt: skip


def _lanes(frames: list[str], count: int) -> list[list[str]]:
    return [frames[n::count] for n in range(count)]


def _postgres_pid(cluster: mb.Cluster) -> int:
    assert cluster.process is not None
    return int(cluster.process.pid)


def measure(cluster: mb.Cluster, args: argparse.Namespace) -> list[dict[str, Any]]:
    frames = asyncio.run(frame_ids(cluster))
    rng = np.random.default_rng([args.seed, 7])
    active = [frames[int(i)] for i in rng.permutation(len(frames))[: args.concurrency]]
    tokens = _tokens(frames)
    lanes = _lanes(frames, args.concurrency)
    hot = [[frame_id] for frame_id in active]
    paced = {"mode": "paced", "period": args.period, "duration": args.seconds}
    closed = {"mode": "closed", "duration": args.closed_seconds}
    halves = [
        [  # a fresh server: every frame's first request, then the same 200 frames again
            {"name": "cold", "lanes": lanes, "mode": "once", "period": args.period},
            {"name": "warm", "lanes": hot, **paced},
            {"name": "warm", "lanes": hot, **closed},
        ],
        [  # a fresh server: the 200 frames once for their ETags, then If-None-Match
            {"name": "prime", "lanes": hot, "mode": "once", "period": args.period,
             "measured": False},
            {"name": "304", "lanes": hot, "etag": True, **paced},
            {"name": "304", "lanes": hot, "etag": True, **closed},
        ],
    ]  # fmt: skip
    results = []
    for phases in halves:
        asyncio.run(reset_seen(cluster))
        server = Server(cluster.url(DATABASE), args.web_workers)
        try:
            process = server.start()
            time.sleep(1.0)  # start-up work (consumers, relay) out of the way
            config = {"port": server.port, "server_pid": process.pid,
                      "postgres_pid": _postgres_pid(cluster), "tokens": tokens,
                      "phases": phases}  # fmt: skip
            found = run_client(config)
        finally:
            server.stop()
        if made := asyncio.run(cache_rows_other_than_seeded(cluster)):
            raise RuntimeError(f"{made} cache entries appeared: the pre-cache loop ran")
        for result, spec in zip(found, phases, strict=True):
            result["mode"] = spec["mode"]
        results += found
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n### Feed at {args.concurrency} concurrent frames (paced: each frame every "
          f"{args.period:g} s; closed: back to back)\n")  # fmt: skip
    print(
        "| case | mode | requests | statuses | req/s | p50 ms | p99 ms | max ms | "
        "body B | feeds built | server CPU % | PostgreSQL CPU % | client CPU % |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        if not result["measured"]:
            continue
        values, wall = result["latencies"], result["wall"]
        requests = len(values)
        statuses = ", ".join(f"{n}×{code}" for code, n in sorted(result["statuses"].items()))
        body = result["bytes"] / requests
        cpu = [100 * result[key] / wall for key in ("server_cpu", "postgres_cpu", "client_cpu")]
        p99 = percentile(values, 99)
        flag = "" if p99 < TARGET_P99_MS or result["mode"] == "closed" else " ✗"
        print(f"| {result['name']} | {result['mode']} | {requests:,} | {statuses} "
              f"| {requests / wall:,.0f} | {percentile(values, 50):.1f} | {p99:.1f}{flag} "
              f"| {max(values):.1f} | {body:,.0f} | {result['built']:,.0f} | {cpu[0]:.0f} "
              f"| {cpu[1]:.0f} "
              f"| {cpu[2]:.0f} |")  # fmt: skip
    late = sum(r["late"] for r in results if r["measured"] and r["mode"] != "closed")
    again = sum(r["reconnects"] for r in results if r["measured"])
    print(
        f"\nCPU % is of one core (200% = both). Feeds built: not served from the server's kept "
        f"feeds (of the process that answered /metrics). Paced requests sent > 5 ms late: {late}; "
        f"connections the server had closed (idle > 5 s), opened again: {again}."
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=200, help="frames polling at once")
    parser.add_argument("--period", type=float, default=1.0, help="paced: s between polls")
    parser.add_argument("--seconds", type=float, default=10.0, help="paced: per case")
    parser.add_argument("--closed-seconds", type=float, default=5.0, help="closed: per case")
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument(
        "--web-workers", type=int, default=1, help="server processes (MEDIA_WEB_WORKERS)"
    )
    return parser.parse_args()


def cluster_dir(args: argparse.Namespace) -> Path:
    default = Path(mb.default_cluster_dir(args.photos, args.seed))
    return default.with_name(f"pg-frames-v{VERSION}-{args.frames}-{args.photos}-{args.seed}")


def main() -> None:
    if sys.argv[1:] == ["--load"]:
        load_main()
        return
    args = parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    cluster = mb.Cluster(cluster_dir(args))
    try:
        steps = ensure_database(cluster, args)
        if steps:
            print("\n### Setup\n\n| step | seconds |\n|---|---:|")
            for name, seconds in steps.items():
                print(f"| {name} | {seconds:.1f} |")
        print("\n### Data\n\n| table | rows |\n|---|---:|")
        for table, count in asyncio.run(counts(cluster)).items():
            print(f"| {table} | {count:,} |")
        report(measure(cluster, args), args)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
