"""Upload throughput and server memory, side by side with the raw limit of this machine.

Run with ``make bench`` (or ``.venv/bin/python bench/upload.py --help``). In one run, in
rounds that rotate the order of the cases, it measures:

- ``raw``: one thread writes the file's bytes (from memory) to a file on the disk that
  holds the server's storage directory, computing SHA-256 of each block before writing
  it, then fsyncs: the work the service must do, with nothing else in the way;
- ``raw-overlap``: the same, with each block hashed in a second thread while it is being
  written;
- ``raw-writeback``: as ``raw-overlap``, and every 64 MiB the kernel is asked to start
  writing back what was written (as ``storage/local.py`` does), so the final fsync has
  little left to do;
- ``api-raw``: a real ``media-service serve`` (embedded SQLite + local files, data dir on
  the same disk) receiving the file as a raw ``application/octet-stream`` body;
- ``api-multipart``: the same server receiving it as ``multipart/form-data``;
- ``http-drain``: a bare ASGI app under the same uvicorn that reads the raw body and
  throws it away: the cost of HTTP alone, the ceiling for any upload endpoint.

The client streams each body from a small pool of pseudo-random bytes (never the whole
file in memory). The server's RSS is sampled every 20 ms during each upload, and each
uploaded file is deleted after its measurement. ``--baseline-src`` and ``--compare-http``
add a second server (another source tree, or another uvicorn HTTP parser) to the same
rotation, so a change can be judged in one run. Medians are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

MB = 1_000_000
MiB = 1024 * 1024
POOL_BYTES = 16 * MiB  # pseudo-random bytes that the payload cycles through
SAMPLE_SECONDS = 0.02
UPLOADS = "/api/v1/media/files"
FIELDS = {"owner_type": "Other", "owner_id": "bench", "file_name": "bench.mp4"}
LOCAL_CASES = ("raw", "raw-overlap", "raw-writeback")
WRITEBACK_EVERY = 64 * MiB
API_CASES = ("api-raw", "api-multipart")
DRAIN_CASE = "http-drain"
TOKEN_ARGS = ("--sub", "bench", "--org", "bench", "--role", "admin", "--days", "1")
REFERENCE = "raw"  # the "vs raw" column is relative to this case
# The http-drain server: reads each request's body, discards it, answers its length.
DRAIN_APP = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http=sys.argv[2], log_level="warning")
"""
# A minimal ISO BMFF ``ftyp`` box (major brand isom, compatible isom + mp41): an MP4 video.
FTYP = (24).to_bytes(4, "big") + b"ftypisom" + bytes(4) + b"isommp41"
VENV_BIN = Path(sys.executable).parent


# -- the payload --------------------------------------------------------------------------


class Payload:
    """``size`` bytes: the ftyp box, then pseudo-random bytes, yielded in ``chunk``-sized
    views into one pool, so that producing them costs (almost) nothing."""

    def __init__(self, size: int, chunk: int) -> None:
        pool = bytearray(random.Random(1234).randbytes(POOL_BYTES))
        pool[: len(FTYP)] = FTYP
        self._pool = memoryview(bytes(pool))
        self.size = size
        self.chunk = chunk

    def chunks(self) -> Iterator[memoryview]:
        sent = 0
        while sent < self.size:
            offset = sent % POOL_BYTES
            piece = self._pool[offset : offset + min(self.chunk, self.size - sent)]
            sent += len(piece)
            yield piece

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for piece in self.chunks():
            digest.update(piece)
        return digest.hexdigest()


# -- measurements -------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    client_cpu: float  # CPU seconds used by this process during the measurement
    other_cpu: float  # share of the machine's CPU used by processes not measured here
    server_cpu: float = 0.0  # CPU seconds used by the server process
    rss_baseline: int = 0
    rss_peak: int = 0

    @property
    def rss_growth(self) -> int:
        return self.rss_peak - self.rss_baseline


class CpuWatch:
    """CPU used during a block by this process, by ``server``, and by everything else."""

    def __init__(self, server: psutil.Process | None = None) -> None:
        self._server = server
        self.client = self.server = self.other = 0.0

    def __enter__(self) -> CpuWatch:
        self._start = time.perf_counter()
        self._system = psutil.cpu_times()
        self._client = _busy(os.times())
        self._server0 = _busy(self._server.cpu_times()) if self._server else 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._start
        system = psutil.cpu_times()
        busy = sum(system) - sum(self._system) - _idle(system) + _idle(self._system)
        self.client = _busy(os.times()) - self._client
        if self._server is not None:
            self.server = _busy(self._server.cpu_times()) - self._server0
        capacity = wall * (os.cpu_count() or 1)
        self.other = max(0.0, busy - self.client - self.server) / capacity


def _busy(times: psutil._common.pcputimes | os.times_result) -> float:
    return float(times.user + times.system)


def _idle(times: psutil._common.scputimes) -> float:
    return float(times.idle + getattr(times, "iowait", 0.0))


def measure_raw(payload: Payload, directory: Path, case: str) -> tuple[Sample, str]:
    """Hash and write the payload to a new file in ``directory``, fsync, and time it."""
    path = directory / f"bench-raw-{os.getpid()}"
    hasher = hashlib.sha256()
    with CpuWatch() as cpu:
        start = time.perf_counter()
        with open(path, "xb", buffering=0) as handle:
            write = _writer(handle.fileno(), writeback=case == "raw-writeback")
            if case != "raw":
                _hash_beside_writes(payload, hasher, write)
            else:
                for block in payload.chunks():
                    hasher.update(block)
                    write(block)
            os.fsync(handle.fileno())
        seconds = time.perf_counter() - start
    path.unlink()
    return Sample(seconds, client_cpu=cpu.client, other_cpu=cpu.other), hasher.hexdigest()


def _writer(fd: int, *, writeback: bool) -> Callable[[memoryview], None]:
    written = flushing_from = 0

    def write(block: memoryview) -> None:
        nonlocal written, flushing_from
        while block:
            done = os.write(fd, block)
            block = block[done:]
            written += done
        if writeback and written - flushing_from >= WRITEBACK_EVERY:
            os.posix_fadvise(fd, flushing_from, written - flushing_from, os.POSIX_FADV_DONTNEED)
            flushing_from = written

    return write


def _hash_beside_writes(
    payload: Payload, hasher: hashlib._Hash, write: Callable[[memoryview], object]
) -> None:
    with ThreadPoolExecutor(1) as pool:
        pending: Future[None] | None = None
        for block in payload.chunks():
            if pending is not None:
                pending.result()
            pending = pool.submit(hasher.update, block)
            write(block)
        if pending is not None:
            pending.result()


class RssSampler:
    """Samples a process's RSS every :data:`SAMPLE_SECONDS` in a thread."""

    def __init__(self, process: psutil.Process) -> None:
        self._process = process
        self._stop = threading.Event()
        self.baseline = process.memory_info().rss
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, self._process.memory_info().rss)


# -- the server ---------------------------------------------------------------------------


class Server:
    """``media-service serve`` on a free loopback port, with SQLite and local files in a
    temporary data dir under ``parent``."""

    def __init__(self, label: str, parent: str | None, http: str, src: str | None) -> None:
        self.label = label
        self.data_dir = Path(tempfile.mkdtemp(prefix="media-bench-", dir=parent))
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.http = http
        self.env = {
            **os.environ,
            "MEDIA_DATA_DIR": str(self.data_dir),
            "MEDIA_DATABASE_URL": f"sqlite+aiosqlite:///{self.data_dir}/media.db",
            "MEDIA_STORAGE_URL": f"file://{self.data_dir}/blobs",
            "MEDIA_LOG_LEVEL": "WARNING",
            "MEDIA_HOST": "127.0.0.1",
            "MEDIA_PORT": str(self.port),
        }
        if src:  # another source tree of the package shadows the installed one
            self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, os.getenv("PYTHONPATH")]))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def tmp_dir(self) -> Path:
        """Where the service writes its temporaries: the disk the raw cases use."""
        path = self.data_dir / "blobs" / ".tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def token(self) -> str:
        """An admin token minted by the CLI (which also creates the data dir's secret)."""
        out = subprocess.run(
            [str(VENV_BIN / "media-service"), "token", "create", *TOKEN_ARGS],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def start(self) -> psutil.Process:
        self.process = subprocess.Popen(self._command(), env=self.env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/health/live", timeout=1).status_code == 200:
                    return psutil.Process(self.process.pid)
            time.sleep(0.1)
        raise RuntimeError("the server did not answer /health/live within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _command(self) -> list[str]:
        if self.http == "auto":  # exactly what an operator runs
            return [str(VENV_BIN / "media-service"), "serve"]
        # The same command with uvicorn's HTTP implementation forced, for comparison.
        code = (
            "import sys, uvicorn\n"
            "run = uvicorn.run\n"
            f"uvicorn.run = lambda *a, **k: run(*a, **{{**k, 'http': {self.http!r}}})\n"
            "from media_service.cli import main\n"
            "sys.argv = ['media-service', 'serve']\n"
            "main()\n"
        )
        return [sys.executable, "-c", code]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiClient:
    """Uploads a payload to one server, checks what it stored, and deletes it."""

    def __init__(self, server: Server) -> None:
        self.blobs = server.data_dir / "blobs"
        token = server.token()
        self.process = server.start()
        self.http = httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(300),
        )

    def upload(
        self, payload: Payload, *, multipart: bool, expected_sha256: str, verify: bool = False
    ) -> Sample:
        """Upload and time; ``verify`` also re-reads the stored file from disk."""
        if multipart:
            content_type, length, body = _multipart(payload)
            params: dict[str, str] = {}
        else:
            content_type, length, body = "application/octet-stream", payload.size, payload.chunks()
            params = FIELDS
        headers = {"Content-Type": content_type, "Content-Length": str(length)}
        response, sample = timed_post(
            self.http, self.process, UPLOADS, params=params, headers=headers, body=body
        )
        if response.status_code != 201:
            raise RuntimeError(f"upload answered {response.status_code}: {response.text[:500]}")
        stored = response.json()
        if stored["sha256"] != expected_sha256 or stored["file_size"] != payload.size:
            raise RuntimeError(f"the server stored something else: {stored}")
        if verify and _file_sha256(self.blobs / stored["storage_path"]) != expected_sha256:
            raise RuntimeError(f"the stored file's bytes differ: {stored}")
        deleted = self.http.delete(f"{UPLOADS}/{stored['file_id']}")
        if deleted.status_code != 204:
            raise RuntimeError(f"delete answered {deleted.status_code}: {deleted.text[:500]}")
        return sample

    def close(self) -> None:
        self.http.close()


class DrainClient:
    """Sends the raw body to a bare uvicorn app that only reads it (:data:`DRAIN_APP`)."""

    def __init__(self, http: str) -> None:
        port = _free_port()
        command = [sys.executable, "-c", DRAIN_APP, str(port), http]
        self.server = subprocess.Popen(command)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/").status_code == 200:
                    break
            if time.monotonic() > deadline or self.server.poll() is not None:
                raise RuntimeError("the http-drain server did not start")
            time.sleep(0.1)
        self.process = psutil.Process(self.server.pid)

    def upload(self, payload: Payload) -> Sample:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(payload.size)}
        response, sample = timed_post(
            self.http, self.process, "/", params={}, headers=headers, body=payload.chunks()
        )
        if response.text != str(payload.size):
            raise RuntimeError(f"the http-drain server read {response.text} bytes")
        return sample

    def close(self) -> None:
        self.http.close()
        self.server.terminate()
        self.server.wait(15)


def timed_post(
    http: httpx.Client,
    process: psutil.Process,
    url: str,
    *,
    params: dict[str, str],
    headers: dict[str, str],
    body: Iterator[bytes | memoryview],
) -> tuple[httpx.Response, Sample]:
    """POST ``body``, timing it and watching the server's CPU and RSS."""
    with CpuWatch(process) as cpu, RssSampler(process) as rss:
        start = time.perf_counter()
        response = http.post(url, params=params, headers=headers, content=body)
        seconds = time.perf_counter() - start
    return response, Sample(
        seconds,
        client_cpu=cpu.client,
        other_cpu=cpu.other,
        server_cpu=cpu.server,
        rss_baseline=rss.baseline,
        rss_peak=rss.peak,
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(MiB):
            digest.update(block)
    return digest.hexdigest()


def _multipart(payload: Payload) -> tuple[str, int, Iterator[bytes | memoryview]]:
    boundary = f"bench-{random.Random(99).getrandbits(96):024x}"
    fields = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in FIELDS.items()
    )
    head = (
        f"{fields}--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="bench.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes | memoryview]:
        yield head
        yield from payload.chunks()
        yield tail

    return f"multipart/form-data; boundary={boundary}", len(head) + payload.size + len(tail), body()


# -- the run ------------------------------------------------------------------------------


@dataclass
class Results:
    size: int
    cases: list[str] = field(default_factory=list)
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, case: str, sample: Sample) -> None:
        self.samples.setdefault(case, []).append(sample)

    def median(self, case: str, value: Callable[[Sample], float]) -> float:
        return statistics.median(value(s) for s in self.samples[case])

    def mbps(self, case: str) -> float:
        return self.median(case, lambda s: self.size / s.seconds / MB)


def run(args: argparse.Namespace) -> Results:
    payload = Payload(args.size_mb * MB, args.chunk_kib * 1024)
    expected = payload.sha256()
    servers = [Server("", args.dir, args.http, None)]
    if args.baseline_src:
        servers.append(Server("before", args.dir, args.http, args.baseline_src))
    if args.compare_http:
        servers.append(Server(args.compare_http, args.dir, args.compare_http, None))
    clients: dict[str, ApiClient | DrainClient] = {}
    steps: dict[str, Callable[[], Sample]] = {}
    try:
        if DRAIN_CASE in args.cases:
            drain = clients[DRAIN_CASE] = DrainClient(args.http)
            drain.upload(Payload(min(payload.size, 8 * MiB), payload.chunk))
            steps[DRAIN_CASE] = lambda: drain.upload(payload)
        for server in servers:
            client = clients[server.label] = ApiClient(server)
            _warm_up(client, payload)
            for case in args.cases:
                if case in API_CASES:
                    name = f"{case} [{server.label}]" if server.label else case
                    steps[name] = _api_step(client, payload, case, expected)
        for case in args.cases:
            if case in LOCAL_CASES:
                steps[case] = _raw_step(payload, servers[0].tmp_dir, case, expected)
        order = sorted(steps, key=lambda name: name not in LOCAL_CASES)
        results = Results(payload.size, order)
        for round_no in range(1, args.rounds + 1):
            # Each round starts one case later, so that no case always follows the same
            # one (what the previous case left in memory and on disk affects the next).
            shift = (round_no - 1) % len(order)
            for name in order[shift:] + order[:shift]:
                sample = steps[name]()
                results.add(name, sample)
                _progress(round_no, name, sample, payload.size)
    finally:
        for client in clients.values():
            client.close()
        for server in servers:
            server.stop()
    return results


def _api_step(
    client: ApiClient, payload: Payload, case: str, expected: str
) -> Callable[[], Sample]:
    multipart = case == "api-multipart"
    calls = 0

    def step() -> Sample:
        nonlocal calls
        calls += 1  # the first upload of each kind is also checked on disk
        return client.upload(
            payload, multipart=multipart, expected_sha256=expected, verify=calls == 1
        )

    return step


def _raw_step(payload: Payload, directory: Path, case: str, expected: str) -> Callable[[], Sample]:
    def step() -> Sample:
        sample, digest = measure_raw(payload, directory, case)
        if digest != expected:
            raise RuntimeError("the raw case hashed something else")
        return sample

    return step


def _warm_up(client: ApiClient, payload: Payload) -> None:
    """One small upload so that imports, the connection and SQLite are warm."""
    small = Payload(min(payload.size, 8 * MiB), payload.chunk)
    client.upload(small, multipart=False, expected_sha256=small.sha256())


def _progress(round_no: int, case: str, sample: Sample, size: int) -> None:
    line = f"  round {round_no}  {case:<24} {size / MB / sample.seconds:6.0f} MB/s"
    if sample.rss_peak:
        line += f"  RSS +{sample.rss_growth / MiB:5.1f} MiB"
    line += f"  other load {sample.other_cpu:4.0%}"
    print(line, file=sys.stderr, flush=True)


def report(results: Results, args: argparse.Namespace) -> None:
    raws = [case for case in results.cases if case in LOCAL_CASES]
    reference = results.mbps(REFERENCE) if REFERENCE in raws else None
    best = max((results.mbps(case) for case in raws), default=None)
    print()
    print(
        f"Upload of {results.size / MB:.0f} MB: {args.rounds} rounds, medians"
        f" (client writes of {args.chunk_kib} KiB, server RSS sampled every 20 ms)"
    )
    print()
    columns = [
        "case",
        "MB/s (min-max)",
        "vs raw",
        "vs best raw",
        "server CPU s",
        "client CPU s",
        "server RSS before MiB",
        "RSS growth MiB (max)",
        "other load",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for case in results.cases:
        print("| " + " | ".join(_row(results, case, reference, best)) + " |")
    print()
    print(
        "raw: one thread hashes then writes each block, fsync at the end. best raw: the"
        " fastest raw case. http-drain: the raw body read and discarded by a bare app under"
        " the same uvicorn. CPU s: CPU time of the server process / of this process (the"
        " client, or the raw case itself). other load: CPU used by everything else (other"
        " programs, kernel writeback threads), as a share of all cores."
    )
    _verdicts(results, reference, best)


def _row(results: Results, case: str, reference: float | None, best: float | None) -> list[str]:
    speeds = [results.size / s.seconds / MB for s in results.samples[case]]
    mbps = results.mbps(case)
    api = case not in LOCAL_CASES
    growth = [s.rss_growth / MiB for s in results.samples[case]]
    return [
        case,
        f"{mbps:.0f} ({min(speeds):.0f}-{max(speeds):.0f})",
        f"{mbps / reference:.0%}" if reference else "-",
        f"{mbps / best:.0%}" if best else "-",
        f"{results.median(case, lambda s: s.server_cpu):.2f}" if api else "-",
        f"{results.median(case, lambda s: s.client_cpu):.2f}",
        f"{results.median(case, lambda s: s.rss_baseline / MiB):.0f}" if api else "-",
        f"{statistics.median(growth):.1f} ({max(growth):.1f})" if api else "-",
        f"{results.median(case, lambda s: s.other_cpu):.0%}",
    ]


def _verdicts(results: Results, reference: float | None, best: float | None) -> None:
    """The targets of the issue: >= 70% of the raw limit, RSS growth under 64 MB."""
    print()
    for case in results.cases:
        if not case.startswith("api-"):
            continue
        growth = max(s.rss_growth for s in results.samples[case])
        checks = [f"RSS growth {'<' if growth < 64 * MB else '>='} 64 MB"]
        for name, limit in (("raw", reference), ("best raw", best)):
            if limit:
                share = results.mbps(case) / limit
                checks.append(f"{share:.0%} of {name} ({'>=' if share >= 0.7 else '<'} 70%)")
        print(f"{case}: " + ", ".join(checks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1000, help="file size in MB (10^6 B)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk-kib", type=int, default=1024, help="client write size")
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=(*LOCAL_CASES, DRAIN_CASE, *API_CASES),
        default=[*LOCAL_CASES, DRAIN_CASE, *API_CASES],
    )
    parser.add_argument(
        "--http",
        choices=("auto", "h11", "httptools"),
        default="auto",
        help="uvicorn HTTP parser; auto runs `media-service serve` unchanged",
    )
    parser.add_argument(
        "--compare-http",
        choices=("h11", "httptools"),
        help="also measure a server forced to this HTTP parser, in the same rounds",
    )
    parser.add_argument(
        "--baseline-src",
        help="also measure a server running the package from this directory (a copy of an"
        " earlier src/), in the same rounds",
    )
    parser.add_argument("--dir", help="parent of the temporary data dirs (default: $TMPDIR)")
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} CPUs; data under {args.dir or tempfile.gettempdir()};"
        f" {args.rounds} rounds",
        file=sys.stderr,
    )
    report(run(args), args)


if __name__ == "__main__":
    main()
