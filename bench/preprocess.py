"""Preprocessing speed, side by side with raw libvips and with Thumbor, both cores busy.

Run with ``.venv/bin/python bench/preprocess.py`` (``--help`` for the options). In one run,
in rounds that rotate the order of the cases, it measures:

Renditions after an upload (images/s), on generated 12 MP and 24 MP photos (a smooth
gradient, shapes and noise, saved as JPEG q90 by Pillow):

- ``raw``: ``pyvips.Image.thumbnail`` in a pool of two worker processes (one libvips
  thread each, no operation cache: as the service's workers) makes a 256 px WebP q75 and a
  1440 px JPEG q82 from each photo, each with its own ``thumbnail`` call from the file;
- ``raw-1-decode``: the same outputs from one decode (1440 px, then the 256 px from it),
  which is what the service's ``render_many`` does;
- ``service``: a real ``media-service serve`` (SQLite + local files in a temporary data
  dir, two imaging workers, ``MEDIA_ANALYSE_PHOTOS=false``: renditions only): N uploads
  with a few in flight, timed from the first upload to the moment the last file's
  thumbnail and preview are stored, and to the moment the last file reads ``processed``
  (both read from its SQLite file every 50 ms, so that polling costs the server nothing);
- ``service+analysis``: the same with the photo analysis job on (EXIF, quality, colours;
  a second job after the renditions, which marks the photo processed), face detection
  off; ``service+analysis+faces``: with face detection too. OCR is off in every row.

On-the-fly resizing over HTTP (requests/s, p50/p99 latency), one photo, 640 px JPEG q80:

- our ``GET /api/v1/media/files/{id}/rendition?width=W&format=jpeg&quality=80`` and
  Thumbor's ``/unsafe/Wx0/photo.jpg`` (file loader, ``QUALITY = 80``), Thumbor with one
  process (its default) and with ``--processes 2``, ours with one ``serve`` process and
  with ``serve --workers 2`` (two imaging workers in all, as in the one-process server);
- ``cold``: every request a new width (600..1599), so every one is a real render; Thumbor
  runs without result storage for these;
- ``warm``: one URL repeated; ours serves its stored result, Thumbor its file result
  storage (``RESULT_STORAGE_STORES_UNSAFE = True``).

Thumbor is installed by this script into its own virtual environment (default
``~/.cache/media-bench/thumbor-venv``, with pip from PyPI) when missing. CPU seconds of
each server's whole process tree (our imaging workers, Thumbor's forks) and of this
process (the load generator) are reported next to the rates. Medians are printed as
Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import math
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawhttp import RawConnection
from upload import Server  # bench/ is on sys.path when run as a script; made sure here

UPLOADS = "/api/v1/media/files"
THUMBNAIL, PREVIEW = (256, "webp", 75), (1440, "jpeg", 82)
SIZES = {"12mp": (4000, 3000), "24mp": (6000, 4000)}
HTTP_WIDTH, HTTP_QUALITY = 640, 80  # Thumbor's default JPEG quality is 80
COLD_WIDTHS = range(600, 1600)
POLL_SECONDS = 0.05  # how often the service's database is read for progress
CACHE = Path.home() / ".cache" / "media-bench"
THUMBOR_VERSION = "7.8.0"
PHOTO_VERSION = 1  # bump when make_photo changes


# -- photos -------------------------------------------------------------------------------


def make_photo(path: Path, width: int, height: int, seed: int) -> None:
    """A photo-like JPEG q90: smooth gradients, soft shapes, sensor-like noise.

    Flat synthetic images decode and compress unrealistically fast; noise and edges give
    the entropy coder and the resampler the work a real photo gives them.
    """
    rng = np.random.default_rng(seed)
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    channels = []
    for phase in rng.uniform(0, math.tau, 3):
        wave = np.sin(xs * 3.1 + phase) * np.cos(ys * 2.3 - phase)
        channels.append(110 + 60 * wave + 50 * ys - 30 * xs)
    base = Image.fromarray(np.clip(np.dstack(channels), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(base)
    for _ in range(60):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(width // 60, width // 8))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        box = (x - r, y - r, x + r, y + r)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    pixels = np.asarray(base, dtype=np.int16)
    pixels = pixels + rng.normal(0, 7, (height, width, 1)).astype(np.int16)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)


def photo_file(size: str) -> Path:
    """The generated photo of ``size``, made once and kept in the cache directory (it is
    deterministic; making a 24 MP one takes several seconds)."""
    path = CACHE / "photos" / f"photo-{size}-v{PHOTO_VERSION}.jpg"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        make_photo(partial, *SIZES[size], seed=list(SIZES).index(size))
        partial.replace(path)
    return path


def unique_copy(data: bytes, index: int) -> bytes:
    """The same JPEG with a comment segment after SOI: new bytes (no de-duplication by
    SHA-256 in the service), identical pixels and decode cost."""
    text = f"bench copy {index} {time.time_ns()}".encode()
    segment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    return data[:2] + segment + data[2:]


# -- CPU accounting -----------------------------------------------------------------------


def _busy(times: psutil._common.pcputimes | os.times_result) -> float:
    return float(times.user + times.system)


def tree_cpu(roots: list[psutil.Process]) -> dict[int, float]:
    """CPU seconds of each live process in the trees under ``roots``, by pid."""
    seen: dict[int, float] = {}
    for root in roots:
        with contextlib.suppress(psutil.Error):
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    seen[proc.pid] = _busy(proc.cpu_times())
    return seen


class CpuWatch:
    """CPU used during a block by some process trees, by this process, and by the rest
    of the machine (as a share of all cores)."""

    def __init__(self, roots: list[psutil.Process]) -> None:
        self._roots = roots
        self.tree = self.main = self.client = self.other = 0.0

    def __enter__(self) -> CpuWatch:
        self._start = time.perf_counter()
        self._system = psutil.cpu_times()
        self._client = _busy(os.times())
        self._tree = tree_cpu(self._roots)
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._start
        after = tree_cpu(self._roots)
        # A process that appeared meanwhile (a respawned worker) counts from zero.
        used = {pid: cpu - self._tree.get(pid, 0.0) for pid, cpu in after.items()}
        self.tree = sum(used.values())
        self.main = sum(used.get(root.pid, 0.0) for root in self._roots)
        self.client = _busy(os.times()) - self._client
        system = psutil.cpu_times()
        busy = sum(system) - sum(self._system) - _idle(system) + _idle(self._system)
        own = self.tree + self.client
        self.other = max(0.0, busy - own) / (wall * (os.cpu_count() or 1))


def _idle(times: psutil._common.scputimes) -> float:
    return float(times.idle + getattr(times, "iowait", 0.0))


# -- raw libvips --------------------------------------------------------------------------


def _raw_worker_init() -> None:
    import pyvips

    # As media_service.imaging._vips.configure_worker: one thread, no operation cache.
    pyvips.concurrency_set(1)
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    pyvips.cache_set_max_files(0)


def _save(image: object, fmt: str, quality: int) -> bytes:
    if fmt == "jpeg":
        return bytes(image.jpegsave_buffer(Q=quality, optimize_coding=True, keep="none"))  # type: ignore[attr-defined]
    return bytes(image.webpsave_buffer(Q=quality, keep="none"))  # type: ignore[attr-defined]


def raw_two_calls(path: str) -> list[tuple[int, int, int]]:
    """Thumbnail and preview, each by its own ``pyvips.Image.thumbnail`` from the file."""
    import pyvips

    out = []
    for size, fmt, quality in (THUMBNAIL, PREVIEW):
        image = pyvips.Image.thumbnail(path, size, height=size, size="down")
        out.append((image.width, image.height, len(_save(image, fmt, quality))))
    return out


def raw_one_decode(path: str) -> list[tuple[int, int, int]]:
    """The preview decoded once (shrink on load), the thumbnail resized from it."""
    import pyvips

    size, fmt, quality = PREVIEW
    preview = pyvips.Image.thumbnail(path, size, height=size, size="down").copy_memory()
    preview_bytes = _save(preview, fmt, quality)
    size, fmt, quality = THUMBNAIL
    thumb = preview.thumbnail_image(size, height=size, size="down")
    thumb_bytes = _save(thumb, fmt, quality)
    return [
        (thumb.width, thumb.height, len(thumb_bytes)),
        (preview.width, preview.height, len(preview_bytes)),
    ]


RAW_CASES: dict[str, Callable[[str], list[tuple[int, int, int]]]] = {
    "raw": raw_two_calls,
    "raw-1-decode": raw_one_decode,
}


def check_raw_outputs(outputs: list[tuple[int, int, int]], photo: tuple[int, int]) -> None:
    for (width, height, size), (box, _, _) in zip(outputs, (THUMBNAIL, PREVIEW), strict=True):
        if (
            max(width, height) != box
            or size < 1000
            or abs(width / height - photo[0] / photo[1]) > 0.01
        ):
            raise RuntimeError(f"raw output {width}x{height}, {size} B for a {box} px box")


# -- samples ------------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    count: int
    server_cpu: float  # the server's whole process tree (or the raw pool's workers)
    client_cpu: float
    other: float
    latencies: list[float] = field(default_factory=list)
    processed_seconds: float | None = None  # service: until every file read "processed"
    main_cpu: float = 0.0  # the server's main process alone (HTTP, database, jobs)

    @property
    def rate(self) -> float:
        return self.count / self.seconds


@dataclass
class Results:
    cases: list[str] = field(default_factory=list)
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, case: str, sample: Sample) -> None:
        if case not in self.samples:
            self.cases.append(case)
        self.samples.setdefault(case, []).append(sample)

    def median(self, case: str, value: Callable[[Sample], float]) -> float:
        return statistics.median(value(s) for s in self.samples[case])

    def latencies(self, case: str) -> list[float]:
        return sorted(itertools.chain.from_iterable(s.latencies for s in self.samples[case]))


def percentile(sorted_values: list[float], share: float) -> float:
    index = min(len(sorted_values) - 1, max(0, math.ceil(share * len(sorted_values)) - 1))
    return sorted_values[index]


# -- our service --------------------------------------------------------------------------


class Service:
    """A running ``media-service serve`` and an async client with an admin token.

    ``analyse`` and ``faces`` switch the photo analysis job (EXIF, quality, colours) and
    its face detection (``MEDIA_ANALYSE_PHOTOS``, ``MEDIA_DETECT_FACES``); OCR is off
    (``MEDIA_OCR=false``; Tesseract is not installed here anyway).
    """

    def __init__(
        self,
        label: str,
        parent: str | None,
        *,
        analyse: bool,
        faces: bool,
        workers: int,
        processes: int = 1,
    ) -> None:
        self.label = label
        self.server = Server(label, parent, "auto", None)
        self.server.env.update(
            MEDIA_ANALYSE_PHOTOS=str(analyse).lower(),
            MEDIA_DETECT_FACES=str(faces).lower(),
            MEDIA_OCR="false",
            MEDIA_IMAGING_WORKERS=str(workers),  # per server process
            MEDIA_WEB_WORKERS=str(processes),
        )
        token = self.server.token()
        self.process = start_server(self.server)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.base_url = self.server.base_url

    def client(self, connections: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=120, limits=limits
        )

    def stop(self) -> None:
        children = self.process.children(recursive=True)
        self.server.stop()
        # The imaging workers and multiprocessing's resource tracker outlive a terminated
        # `serve` (seen here): end the ones this run started.
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        psutil.wait_procs(children, timeout=10)


def start_server(server: Server, timeout: float = 120.0) -> psutil.Process:
    """``server.start()`` with more patience: on a loaded machine ``serve --workers 2``
    (a migration, then two interpreters importing everything) takes longer than 30 s."""
    server.process = subprocess.Popen(server._command(), env=server.env, stdout=subprocess.DEVNULL)
    _wait_http(f"{server.base_url}/health/live", server.process, timeout)
    return psutil.Process(server.process.pid)


async def upload(client: httpx.AsyncClient, data: bytes, name: str) -> str:
    params = {"owner_type": "Other", "owner_id": "bench", "file_name": name}
    headers = {"Content-Type": "image/jpeg"}
    response = await client.post(UPLOADS, params=params, headers=headers, content=data)
    if response.status_code != 201:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
    return str(response.json()["file_id"])


# Progress is read from the service's SQLite file (WAL: a reader blocks no one), not
# through its API: polling over HTTP (one request every 50 ms, ~7 per photo) took ~9% of
# the GIL-holding samples of the server under test, a cost raw libvips never pays.
RENDITIONS_STORED = (
    "SELECT file_id FROM media_renditions WHERE file_id IN ({}) "
    "GROUP BY file_id HAVING count(*) >= 2"
)
PROCESSED = "SELECT file_id FROM media_files WHERE file_id IN ({}) AND processed"
SETTLED = (
    "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL)"
    " + (SELECT count(*) FROM bus_deliveries WHERE settled_at IS NULL)"
)


def read_database(
    service: Service, query: str, params: Sequence[object] = ()
) -> list[tuple[Any, ...]]:
    """The rows of ``query`` in the service's database, read-only."""
    database = service.server.data_dir / "media.db"
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return db.execute(query, params).fetchall()


async def wait_processed(service: Service, file_ids: list[str]) -> None:
    """Until every file reads ``processed``."""
    await _wait_each(service, file_ids, PROCESSED)


async def wait_renditions(service: Service, file_ids: list[str]) -> None:
    """Until the thumbnail and preview of every file are stored."""
    await _wait_each(service, file_ids, RENDITIONS_STORED)


async def _wait_each(service: Service, file_ids: list[str], done_query: str) -> None:
    pending = set(file_ids)
    deadline = time.monotonic() + 300
    while pending:
        query = done_query.format(", ".join("?" * len(pending)))
        pending -= {row[0] for row in read_database(service, query, sorted(pending))}
        if pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service.label}: {len(pending)} files still pending")
            await asyncio.sleep(POLL_SECONDS)


async def wait_settled(service: Service) -> None:
    """Until the service has published and handled every message (the deletes' events).

    The cleanup after a timed batch must not run into the next one: its ``file.deleted``
    events would otherwise be relayed and consumed while the next batch is timed.
    """
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if read_database(service, SETTLED)[0][0] == 0:
            return
        await asyncio.sleep(POLL_SECONDS)
    raise RuntimeError(f"{service.label}: messages still pending after 60 s")


async def check_renditions(client: httpx.AsyncClient, file_id: str, photo: tuple[int, int]) -> None:
    """The stored thumbnail and preview are what the raw cases make."""
    body = (await client.get(f"{UPLOADS}/{file_id}/renditions")).json()
    found = {(r["content_type"], max(r["width"], r["height"])) for r in body["renditions"]}
    wanted = {(f"image/{fmt}", size) for size, fmt, _ in (THUMBNAIL, PREVIEW)}
    if not body["processed"] or found != wanted:
        raise RuntimeError(f"unexpected renditions for a {photo} photo: {body}")


async def service_batch(
    service: Service, copies: list[bytes], in_flight: int, photo: tuple[int, int]
) -> Sample:
    """Upload ``copies`` (``in_flight`` at a time) and wait until all are processed."""
    async with service.client(in_flight + 1) as client:
        gate = asyncio.Semaphore(in_flight)

        async def one(index: int, data: bytes) -> str:
            async with gate:
                return await upload(client, data, f"photo-{index}.jpg")

        with CpuWatch([service.process]) as cpu:
            start = time.perf_counter()
            ids = await asyncio.gather(*(one(i, d) for i, d in enumerate(copies)))
            await wait_renditions(service, ids)
            seconds = time.perf_counter() - start
            await wait_processed(service, ids)
            processed_seconds = time.perf_counter() - start
    # A new client: the uploads' connections sat idle while the batch was processed, and
    # one the server closes (keep-alive timeout, 5 s) just as a request goes out on it is
    # "Server disconnected without sending a response" (seen on a fast run).
    async with service.client(2) as client:
        await check_renditions(client, ids[-1], photo)
        for file_id in ids:  # untimed: keep the data dir the same size round after round
            (await client.delete(f"{UPLOADS}/{file_id}")).raise_for_status()
    await wait_settled(service)
    return Sample(
        seconds,
        len(copies),
        cpu.tree,
        cpu.client,
        cpu.other,
        processed_seconds=processed_seconds,
        main_cpu=cpu.main,
    )


# -- Thumbor ------------------------------------------------------------------------------


def thumbor_bin(venv: Path) -> Path:
    """Thumbor's console script, installing Thumbor into ``venv`` first if needed."""
    binary = venv / "bin" / "thumbor"
    if binary.exists():
        return binary
    print(f"installing thumbor {THUMBOR_VERSION} into {venv}", file=sys.stderr, flush=True)
    subprocess.run([_thumbor_python(), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--disable-pip-version-check", f"thumbor=={THUMBOR_VERSION}"], check=True)
    return binary


def _thumbor_python() -> str:
    # Thumbor 7.8 runs on CPython 3.9-3.12; the system 3.11 (this venv's base) does.
    return str(Path(sys.base_prefix) / "bin" / "python3")


class Thumbor:
    """A Thumbor server with the file loader on ``root``, with or without result storage."""

    def __init__(self, binary: Path, root: Path, work: Path, *, processes: int, store: bool):
        self.label = f"thumbor{'' if processes == 1 else f' -p {processes}'}"
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        conf = work / f"thumbor-{self.port}.conf"
        results = work / f"thumbor-results-{self.port}"
        result_storage = "file_storage" if store else "no_storage"
        conf.write_text(
            "LOADER = 'thumbor.loaders.file_loader'\n"
            f"FILE_LOADER_ROOT_PATH = {str(root)!r}\n"
            "STORAGE = 'thumbor.storages.no_storage'\n"
            f"RESULT_STORAGE = 'thumbor.result_storages.{result_storage}'\n"
            f"RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = {str(results)!r}\n"
            "RESULT_STORAGE_STORES_UNSAFE = True\n"
            "ALLOW_UNSAFE_URL = True\n"
            f"QUALITY = {HTTP_QUALITY}\n"
        )
        command = [str(binary), "-c", str(conf), "-i", "127.0.0.1", "-p", str(self.port)]
        command += ["-l", "error", "--processes", str(processes)]
        self.popen = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        self.process = psutil.Process(self.popen.pid)
        _wait_http(f"{self.base_url}/healthcheck", self.popen)

    def stop(self) -> None:
        for child in self.process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.terminate()
        self.popen.terminate()
        self.popen.wait(15)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, popen: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {popen.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s")


# -- HTTP load ----------------------------------------------------------------------------


class ColdWidths:
    """Request paths that no earlier request of the run used (a new width, or after 1000
    requests a new, non-binding height for ours), so each one is a real render."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def __next__(self) -> tuple[int, int | None]:
        index = next(self._counter)
        width = COLD_WIDTHS[index % len(COLD_WIDTHS)]
        rounds = index // len(COLD_WIDTHS)
        return width, (None if rounds == 0 else 7000 + rounds)


@dataclass
class HttpTarget:
    """One server and how to ask it for a width: ``client`` (httpx) for set-up and checks,
    ``port`` and ``headers`` for the load's own cheaper connections (``rawhttp``)."""

    label: str
    client: httpx.AsyncClient
    roots: list[psutil.Process]
    url: Callable[[int, int | None], str]

    @property
    def port(self) -> int:
        return int(self.client.base_url.port or 80)

    @property
    def headers(self) -> dict[str, str]:
        return {
            name: self.client.headers[name]
            for name in ("authorization",)
            if name in self.client.headers
        }


def ours_url(file_id: str) -> Callable[[int, int | None], str]:
    def url(width: int, height: int | None) -> str:
        box = f"width={width}" + (f"&height={height}" if height else "")
        return f"{UPLOADS}/{file_id}/rendition?{box}&format=jpeg&quality={HTTP_QUALITY}"

    return url


def thumbor_url(width: int, height: int | None) -> str:
    return f"/unsafe/{width}x0/photo.jpg"  # Thumbor stores nothing in the cold cases


async def load(
    target: HttpTarget, paths: Iterator[str], seconds: float, concurrency: int
) -> Sample:
    """``concurrency`` loops send requests back to back for ``seconds``."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    # Not httpx: at ~1.3 ms of CPU a request it cost more than the warm answers it timed.
    connections = [RawConnection(target.port, target.headers) for _ in range(concurrency)]

    async def loop(connection: RawConnection) -> None:
        while time.perf_counter() < deadline:
            path = next(paths)
            start = time.perf_counter()
            reply = await connection.get(path)
            latencies.append(time.perf_counter() - start)
            if reply.status != 200 or not reply.body.startswith(b"\xff\xd8"):
                raise RuntimeError(f"{target.label} {path}: {reply.status}")

    try:
        with CpuWatch(target.roots) as cpu:
            start = time.perf_counter()
            await asyncio.gather(*(loop(connection) for connection in connections))
            wall = time.perf_counter() - start
    finally:
        for connection in connections:
            connection.close()
    return Sample(
        wall, len(latencies), cpu.tree, cpu.client, cpu.other, latencies, main_cpu=cpu.main
    )


async def check_width(target: HttpTarget, width: int, photo: tuple[int, int]) -> None:
    """One response decoded: the size both servers must produce."""
    response = await target.client.get(target.url(width, None))
    response.raise_for_status()
    with Image.open(io.BytesIO(response.content)) as image:
        expected = (width, round(width * photo[1] / photo[0]))
        if image.format != "JPEG" or abs(image.size[1] - expected[1]) > 1:
            raise RuntimeError(f"{target.label}: {image.format} {image.size}, not {expected}")


# -- the run ------------------------------------------------------------------------------


Step = Callable[[], Awaitable[Sample]]


async def rotate(steps: dict[str, Step], rounds: int, results: Results, unit: str) -> None:
    """Run every step once per round; each round starts one step later."""
    order = list(steps)
    for round_no in range(1, rounds + 1):
        shift = (round_no - 1) % len(order)
        for name in order[shift:] + order[:shift]:
            sample = await steps[name]()
            results.add(name, sample)
            print(
                f"  round {round_no}  {name:<32} {sample.rate:7.1f} {unit}"
                f"  other load {sample.other:4.0%}",
                file=sys.stderr,
                flush=True,
            )


def raw_step(
    pool: ProcessPoolExecutor, fn: Callable[[str], list[tuple[int, int, int]]], path: Path, n: int
) -> Step:
    photo = Image.open(path).size

    async def step() -> Sample:
        loop = asyncio.get_running_loop()
        with CpuWatch([psutil.Process()]) as cpu:
            start = time.perf_counter()
            outputs = await asyncio.gather(
                *(loop.run_in_executor(pool, fn, str(path)) for _ in range(n))
            )
            seconds = time.perf_counter() - start
        check_raw_outputs(outputs[0], photo)
        # This process's tree holds the pool's workers; the bench's own share is tiny.
        return Sample(seconds, n, cpu.tree - cpu.client, cpu.client, cpu.other)

    return step


def service_step(service: Service, path: Path, n: int, in_flight: int) -> Step:
    data = path.read_bytes()
    photo = Image.open(path).size
    counter = itertools.count()

    async def step() -> Sample:
        copies = [unique_copy(data, next(counter)) for _ in range(n)]
        return await service_batch(service, copies, in_flight, photo)

    return step


async def run_renditions(args: argparse.Namespace, photos: dict[str, Path]) -> Results:
    results = Results()
    services = [
        Service("service", args.dir, analyse=False, faces=False, workers=2),
        Service("service+analysis", args.dir, analyse=True, faces=False, workers=2),
        Service("service+analysis+faces", args.dir, analyse=True, faces=True, workers=2),
    ]
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(2, mp_context=context, initializer=_raw_worker_init)
    try:
        steps: dict[str, Step] = {}
        for size in args.sizes:
            for name, fn in RAW_CASES.items():
                steps[f"{name} {size}"] = raw_step(pool, fn, photos[size], args.photos)
            for service in services:
                steps[f"{service.label} {size}"] = service_step(
                    service, photos[size], args.photos, args.in_flight
                )
        for step in steps.values():  # warm-up: imports, worker start, SQLite, page cache
            await step()
        await rotate(steps, args.rounds, results, "images/s")
    finally:
        pool.shutdown()
        for service in services:
            service.stop()
    return results


async def run_http(args: argparse.Namespace, photo_path: Path, work: Path) -> Results:
    results = Results()
    photo = Image.open(photo_path).size
    root = work / "thumbor-root"
    root.mkdir()
    shutil.copy(photo_path, root / "photo.jpg")
    binary = thumbor_bin(Path(args.thumbor_venv))
    services: list[Service] = []
    servers: list[Thumbor] = []
    clients: list[httpx.AsyncClient] = []
    try:
        for n in args.our_processes:
            # Two imaging workers in all: one per core, as Thumbor's -p 2 renders on two.
            label = ours_label(n)
            services.append(
                Service(label, args.dir, analyse=False, faces=False, workers=2 // n, processes=n)
            )
        steps: dict[str, Step] = {}
        targets = []
        for service in services:
            async with service.client(4) as setup:
                file_id = await upload(setup, photo_path.read_bytes(), "photo.jpg")
                await wait_processed(service, [file_id])
            roots = [service.process]
            targets.append((service.label, service.base_url, service.headers, roots, file_id))
        thumbor_warm: dict[str, Thumbor] = {}
        for processes in args.thumbor_processes:
            cold = Thumbor(binary, root, work, processes=processes, store=False)
            warm = Thumbor(binary, root, work, processes=processes, store=True)
            servers += [cold, warm]
            thumbor_warm[cold.label] = warm
            targets.append((cold.label, cold.base_url, {}, [cold.process], None))
        for label, base_url, headers, roots, file_id in targets:
            client = _load_client(base_url, headers, args.concurrency)
            clients.append(client)
            url = ours_url(file_id) if file_id else thumbor_url
            target = HttpTarget(label, client, roots, url)
            warm_server = thumbor_warm.get(label)
            await check_width(target, HTTP_WIDTH, photo)
            steps[f"{label} cold"] = _cold_step(target, args)
            if warm_server is not None:
                client = _load_client(warm_server.base_url, {}, args.concurrency)
                clients.append(client)
                target = HttpTarget(label, client, [warm_server.process], thumbor_url)
            steps[f"{label} warm"] = await _warm_step(target, args)
        for step in steps.values():  # warm-up: connections, imports, worker processes
            await _short(step, args)
        await rotate(steps, args.rounds, results, "req/s")
    finally:
        for client in clients:
            await client.aclose()
        for server in servers:
            server.stop()
        for service in services:
            service.stop()
    return results


def ours_label(processes: int) -> str:
    return "ours" if processes == 1 else f"ours -w {processes}"


def _load_client(base_url: str, headers: dict[str, str], connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120, limits=limits)


def _cold_step(target: HttpTarget, args: argparse.Namespace) -> Step:
    widths = ColdWidths()
    paths = (target.url(*next(widths)) for _ in itertools.count())
    return lambda: load(target, paths, args.seconds, args.concurrency)


async def _warm_step(target: HttpTarget, args: argparse.Namespace) -> Step:
    path = target.url(HTTP_WIDTH, None)
    (await target.client.get(path)).raise_for_status()  # rendered and stored once
    return lambda: load(target, itertools.repeat(path), args.seconds, args.concurrency)


async def _short(step: Step, args: argparse.Namespace) -> None:
    seconds, args.seconds = args.seconds, min(args.seconds, 1.0)
    try:
        await step()
    finally:
        args.seconds = seconds


# -- the report ---------------------------------------------------------------------------


def report_renditions(results: Results, args: argparse.Namespace) -> None:
    print(
        f"\nRenditions after upload: {args.photos} photos per case, {args.rounds} rounds,"
        f" medians; 256 px WebP q75 + 1440 px JPEG q82; 2 worker processes everywhere;"
        f" service uploads {args.in_flight} in flight\n"
    )
    columns = ["case", "images/s (min-max)", "vs raw", "vs best raw", "CPU s/image (main)"]
    columns += ["processed: images/s", "other load"]
    _header(columns)
    for case in results.cases:
        size = case.rsplit(" ", 1)[1]
        raw = results.median(f"raw {size}", lambda s: s.rate)
        best = max(results.median(f"{n} {size}", lambda s: s.rate) for n in RAW_CASES)
        rates = [s.rate for s in results.samples[case]]
        rate = results.median(case, lambda s: s.rate)
        done = [s.count / s.processed_seconds for s in results.samples[case] if s.processed_seconds]
        cells = [
            case,
            f"{rate:.1f} ({min(rates):.1f}-{max(rates):.1f})",
            f"{rate / raw:.0%}",
            f"{rate / best:.0%}",
            _cpu(results, case, 1),
            f"{statistics.median(done):.1f}" if done else "-",
            f"{results.median(case, lambda s: s.other):.0%}",
        ]
        print("| " + " | ".join(cells) + " |")
    print(
        "\nraw: two pyvips.Image.thumbnail calls per photo; raw-1-decode: one decode, the"
        " thumbnail resized from the preview. service rows: from the first upload to the moment"
        " the last file's thumbnail and preview are stored (images/s), and to the moment the"
        " last file reads processed. service: MEDIA_ANALYSE_PHOTOS=false (renditions only)."
        " +analysis: the photo analysis job (EXIF, quality, colours; face detection off),"
        " after which a photo is processed. +faces: with face detection. OCR off."
        " CPU s/image: the pool's workers (raw) or the server's process tree (service), in"
        " brackets its main process alone (HTTP, database, jobs; the rest is the imaging"
        " workers)."
    )


def report_http(results: Results, args: argparse.Namespace) -> None:
    print(
        f"\nOn-the-fly {HTTP_WIDTH} px JPEG q{HTTP_QUALITY} over HTTP from the {args.http_photo}"
        f" photo: concurrency {args.concurrency}, {args.seconds:g} s per case,"
        f" {args.rounds} rounds; req/s median of rounds, latency over all requests\n"
    )
    columns = ["case", "req/s (min-max)", "vs ours", "p50 ms", "p99 ms", "requests"]
    columns += ["server CPU ms/req (main)", "client CPU ms/req", "other load"]
    _header(columns)
    for case in results.cases:
        kind = case.rsplit(" ", 1)[1]
        reference = next(c for c in results.cases if c.startswith("ours") and c.endswith(kind))
        ours = results.median(reference, lambda s: s.rate)
        rates = [s.rate for s in results.samples[case]]
        rate = results.median(case, lambda s: s.rate)
        latencies = results.latencies(case)
        count = sum(s.count for s in results.samples[case])
        cells = [
            case,
            f"{rate:.1f} ({min(rates):.1f}-{max(rates):.1f})",
            f"{rate / ours:.0%}",
            f"{percentile(latencies, 0.5) * 1000:.1f}",
            f"{percentile(latencies, 0.99) * 1000:.1f}",
            str(count),
            _cpu(results, case, 1000),
            f"{results.median(case, lambda s: s.client_cpu / s.count) * 1000:.1f}",
            f"{results.median(case, lambda s: s.other):.0%}",
        ]
        print("| " + " | ".join(cells) + " |")
    print(
        "\ncold: a new width (600..1599) per request, Thumbor without result storage;"
        f" warm: /rendition?width={HTTP_WIDTH} (ours: stored result) and"
        f" /unsafe/{HTTP_WIDTH}x0/photo.jpg (Thumbor: file result storage) repeated."
        " server CPU: the whole process tree (our imaging workers, Thumbor's forks), in"
        " brackets its main process alone (for ours -w 2: uvicorn's supervisor, which only"
        " watches its two server processes)."
    )


def _cpu(results: Results, case: str, scale: float) -> str:
    """Server CPU per item, and in brackets the share of its main process."""
    tree = results.median(case, lambda s: s.server_cpu / s.count) * scale
    main = results.median(case, lambda s: s.main_cpu / s.count) * scale
    digits = 3 if scale == 1 else 1
    return f"{tree:.{digits}f}" + (f" ({main:.{digits}f})" if main else "")


def _header(columns: list[str]) -> None:
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def verdicts(renditions: Results | None, http: Results | None) -> None:
    print()
    for case in renditions.cases if renditions else []:
        if case.startswith("service"):
            size = case.rsplit(" ", 1)[1]
            share = renditions.median(case, lambda s: s.rate) / max(
                renditions.median(f"{n} {size}", lambda s: s.rate) for n in RAW_CASES
            )
            verdict = ">=" if share >= 0.8 else "<"
            print(f"{case}: renditions stored at {share:.0%} of the best raw ({verdict} 80%)")
    for case in http.cases if http else []:
        if case.startswith("ours"):
            continue
        kind = case.rsplit(" ", 1)[1]
        theirs = http.median(case, lambda s: s.rate)
        for ours_case in (c for c in http.cases if c.startswith("ours") and c.endswith(kind)):
            ours = http.median(ours_case, lambda s: s.rate)
            verdict = "ahead" if ours > theirs else "BEHIND"
            print(f"{ours_case} vs {case}: {ours / theirs:.2f}x ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photos", type=int, default=10, help="photos per renditions case")
    parser.add_argument("--in-flight", type=int, default=3, help="concurrent uploads")
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES))
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of an HTTP case")
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP requests in flight")
    parser.add_argument("--http-photo", choices=SIZES, default="12mp")
    parser.add_argument(
        "--thumbor-processes", type=int, nargs="+", default=[1, 2], help="Thumbor --processes"
    )
    parser.add_argument(
        "--our-processes",
        type=int,
        nargs="+",
        choices=(1, 2),
        default=[1, 2],
        help="serve --workers (2 imaging workers in all)",
    )
    parser.add_argument("--thumbor-venv", default=str(CACHE / "thumbor-venv"))
    parser.add_argument("--parts", nargs="+", choices=("renditions", "http"), default=None)
    parser.add_argument("--dir", help="parent of the temporary data dirs (default: $TMPDIR)")
    args = parser.parse_args()
    parts = args.parts or ["renditions", "http"]
    work = Path(tempfile.mkdtemp(prefix="preprocess-bench-", dir=args.dir))
    try:
        photos = {size: photo_file(size) for size in sorted(set(args.sizes) | {args.http_photo})}
        print(f"{os.cpu_count()} CPUs; photos in {CACHE / 'photos'}", file=sys.stderr, flush=True)
        renditions = asyncio.run(run_renditions(args, photos)) if "renditions" in parts else None
        http = (
            asyncio.run(run_http(args, photos[args.http_photo], work)) if "http" in parts else None
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if renditions:
        report_renditions(renditions, args)
    if http:
        report_http(http, args)
    verdicts(renditions, http)


if __name__ == "__main__":
    main()
