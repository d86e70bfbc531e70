"""``media-service serve`` as an operator runs it: the real console script in a subprocess,
configured by ``MEDIA_*`` variables, spoken to over real sockets."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import psutil
import pytest
from PIL import Image

from media_service.auth.principal import Role
from media_service.auth.tokens import TokenService
from media_service.config import Settings

SCRIPT = Path(sys.executable).with_name("media-service")
TOKEN_PATTERN = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
FILES = "/api/v1/media/files"
START_TIMEOUT = 60.0  # a limit for a hung start, not a target: imports alone take ~5 s


def jpeg(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def media_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh install under ``root``; no MEDIA_* setting of the
    developer's shell leaks in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MEDIA_") and key not in {"COLUMNS", "LINES"}  # rich: 80 wide
    }
    env.update(
        MEDIA_DATA_DIR=str(root / "data"),
        MEDIA_DATABASE_URL=f"sqlite+aiosqlite:///{root / 'data' / 'media.db'}",
        MEDIA_STORAGE_URL=f"file://{root / 'data' / 'blobs'}",
        MEDIA_LOG_FORMAT="json",
    )
    env.update(extra)
    return env


def run_cli(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"console script not installed: {SCRIPT} (run `make install`)"
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=root,
        env=env or media_env(root),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- the server process ------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    root: Path
    port: int
    out: Path
    err: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def log_events(self, name: str) -> int:
        return sum(1 for line in self.stderr().splitlines() if f'"event": "{name}"' in line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(root: Path, *, port_from_env: bool = False, extra: tuple[str, ...] = ()) -> Server:
    """Start ``serve`` on a free port and wait until /health/live answers. The port is
    given as ``--port``, or with ``port_from_env`` as MEDIA_PORT (as ``make run`` relies on
    the settings' default)."""
    assert SCRIPT.exists(), f"console script not installed: {SCRIPT} (run `make install`)"
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        port = free_port()
        out, err = root / f"serve-{port}.out", root / f"serve-{port}.err"
        options = ["--host", "127.0.0.1", "--port", str(port), *extra]
        env = media_env(root)
        if port_from_env:
            options, env = [], {**env, "MEDIA_HOST": "127.0.0.1", "MEDIA_PORT": str(port)}
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [str(SCRIPT), "serve", *options],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        server = Server(process, root, port, out, err)
        try:
            if _wait_live(server):
                return server
        except BaseException:
            server.stop()
            raise
        if "address already in use" not in server.stderr().lower() or attempt == 2:
            raise AssertionError(
                f"serve exited with {process.returncode}:\n{server.stdout()}\n{server.stderr()}"
            )
    raise AssertionError("unreachable")


def _wait_live(server: Server) -> bool:
    """True once /health/live answers 200; False if the process exited first."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            if httpx.get(f"{server.url}/health/live", timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"serve did not answer within {START_TIMEOUT} s:\n{server.stderr()}")


@dataclass
class Running:
    server: Server
    admin_token: str

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def mint(self, subject: str, org: str, *roles: Role) -> str:
        secret = (self.server.data / "secret.key").read_text().strip()
        tokens = TokenService(secret, issuer="media-service")
        return tokens.mint(subject, org, list(roles), ttl=timedelta(minutes=10))

    def rows(self) -> set[str]:
        with sqlite3.connect(self.server.data / "media.db") as db:
            return {row[0] for row in db.execute("SELECT file_id FROM media_files")}

    def objects(self) -> set[str]:
        """Stored originals. Renditions are left out: the server makes them in the
        background for earlier uploads, at moments these tests do not control."""
        blobs = self.server.data / "blobs"
        return {
            path.relative_to(blobs).as_posix()
            for path in blobs.rglob("original")
            if path.is_file() and not path.relative_to(blobs).as_posix().startswith(".tmp")
        }

    def temporaries(self) -> list[Path]:
        tmp = self.server.data / "blobs" / ".tmp"
        return [path for path in tmp.iterdir() if path.is_file()] if tmp.exists() else []


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One server on the embedded defaults, started on an empty data directory."""
    server = start_server(tmp_path_factory.mktemp("serve"))
    try:
        tokens = TOKEN_PATTERN.findall(server.stdout())
        yield Running(server, tokens[0] if tokens else "no-admin-token-printed")
    finally:
        server.stop()


def upload(running: Running, data: bytes, name: str = "photo.jpg") -> httpx.Response:
    return httpx.post(
        f"{running.server.url}{FILES}",
        headers=running.auth(),
        files={"file": (name, data, "image/jpeg")},
        data={"owner_type": "Other", "owner_id": "lobby"},
        timeout=10,
    )


# -- first start, defaults ---------------------------------------------------------------


def test_first_start_migrates_by_itself_and_prints_a_working_admin_token(
    running: Running,
) -> None:
    tokens = TOKEN_PATTERN.findall(running.server.stdout())
    assert len(tokens) == 1, running.server.stdout()
    assert "Admin token for organization 'default'" in running.server.stdout()
    ready = httpx.get(f"{running.server.url}/health/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["migrations"] == {"ok": True, "detail": "at head"}
    listed = httpx.get(f"{running.server.url}{FILES}", headers=running.auth(), timeout=10)
    assert listed.status_code == 200, listed.text


def test_admin_token_is_printed_once_even_when_migrate_ran_first(tmp_path: Path) -> None:
    migrated = run_cli(tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "data" / "secret.key").exists()  # migrate made the secret...
    first = start_server(tmp_path)
    try:
        tokens = TOKEN_PATTERN.findall(first.stdout())  # ...yet the first serve greets
        assert len(tokens) == 1, first.stdout()
    finally:
        first.stop()
    second = start_server(tmp_path, port_from_env=True)  # no options: the settings decide
    try:
        assert TOKEN_PATTERN.findall(second.stdout()) == [], second.stdout()
        assert "Admin token" not in second.stdout()
        # The secret survived the restart: the first start's token still works.
        listed = httpx.get(
            f"{second.url}{FILES}", headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=10
        )
        assert listed.status_code == 200, listed.text
    finally:
        second.stop()


def test_default_port_is_8222(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [key for key in os.environ if key.startswith("MEDIA_")]:
        monkeypatch.delenv(name)
    assert Settings(_env_file=None).port == 8222
    shown = run_cli(tmp_path, "serve", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "--port" in shown.stdout and "8222" in shown.stdout


# -- the HTTP API over a real socket -------------------------------------------------------


def test_upload_download_range_signed_url_and_isolation(running: Running) -> None:
    data = jpeg((10, 120, 200), (320, 240))
    created = upload(running, data)
    assert created.status_code == 201, created.text
    file_id = created.json()["file_id"]
    content_url = f"{running.server.url}{FILES}/{file_id}/content"

    full = httpx.get(content_url, headers=running.auth(), timeout=10)
    assert full.status_code == 200
    assert hashlib.sha256(full.content).digest() == hashlib.sha256(data).digest()

    ranged = httpx.get(content_url, headers={**running.auth(), "Range": "bytes=10-99"}, timeout=10)
    assert ranged.status_code == 206
    assert ranged.content == data[10:100]
    assert ranged.headers["content-range"] == f"bytes 10-99/{len(data)}"

    signed = httpx.post(
        f"{running.server.url}{FILES}/{file_id}/signed-url",
        headers=running.auth(),
        json={"expires_in": 60},
        timeout=10,
    )
    assert signed.status_code == 200, signed.text
    url = signed.json()["url"]
    assert url.startswith(running.server.url)
    anonymous = httpx.get(url, timeout=10)
    assert anonymous.status_code == 200
    assert anonymous.content == data
    assert httpx.get(content_url, timeout=10).status_code == 401  # the same path, unsigned

    stranger = running.auth(running.mint("mallory", "other-org", Role.ADMIN))
    assert httpx.get(f"{running.server.url}{FILES}/{file_id}", headers=stranger).status_code == 404
    assert httpx.get(content_url, headers=stranger).status_code == 404


def test_token_create_prints_a_token_the_server_accepts(running: Running) -> None:
    env = media_env(running.server.root)
    result = run_cli(
        running.server.root,
        *("token", "create", "--sub", "x", "--org", "default"),
        *("--role", "admin", "--role", "teacher"),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert TOKEN_PATTERN.fullmatch(token), result.stdout
    secret = (running.server.data / "secret.key").read_text().strip()
    claims = jwt.decode(token, secret, algorithms=["HS256"], issuer="media-service")
    assert (claims["sub"], claims["org"], claims["roles"]) == ("x", "default", ["admin", "teacher"])
    assert claims["exp"] - claims["iat"] == 30 * 24 * 3600
    listed = httpx.get(f"{running.server.url}{FILES}", headers=running.auth(token), timeout=10)
    assert listed.status_code == 200, listed.text
    forged = jwt.encode(claims, "not-the-secret-" * 4, algorithm="HS256")
    refused = httpx.get(f"{running.server.url}{FILES}", headers=running.auth(forged), timeout=10)
    assert refused.status_code == 401


# -- clients that go away ------------------------------------------------------------------


def raw_upload_head(running: Running, content_length: int) -> bytes:
    return (
        f"POST {FILES}?owner_type=Other&owner_id=lobby&file_name=raw.jpg HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{running.server.port}\r\n"
        f"Authorization: Bearer {running.admin_token}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


def wait_until(condition: object, what: str, timeout: float = 10.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def assert_nothing_left(running: Running, rows: set[str], objects: set[str]) -> None:
    assert running.rows() == rows
    assert running.objects() == objects
    # Renditions of earlier uploads pass through temporary files too, briefly; one left by
    # the failed upload would stay.
    wait_until(lambda: running.temporaries() == [], "no temporary files left")


def test_client_disconnecting_half_way_leaves_nothing(running: Running) -> None:
    rows, objects = running.rows(), running.objects()
    noticed = running.server.log_events("client_disconnected")
    body = jpeg((1, 2, 3))
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=10) as sock:
        sock.sendall(raw_upload_head(running, 10 * 1024 * 1024))
        sock.sendall(body + b"\0" * (1024 * 1024 - len(body)))
        # The bytes reached storage (a temporary file exists) before the client goes away.
        wait_until(lambda: running.temporaries(), "the upload to reach storage")
    wait_until(
        lambda: running.server.log_events("client_disconnected") > noticed,
        "the server to notice the disconnect",
    )
    assert_nothing_left(running, rows, objects)
    assert upload(running, jpeg((4, 5, 6))).status_code == 201  # still serving


def test_body_shorter_than_content_length_leaves_nothing(running: Running) -> None:
    rows, objects = running.rows(), running.objects()
    noticed = running.server.log_events("client_disconnected")
    body = jpeg((7, 8, 9))
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=10) as sock:
        sock.sendall(raw_upload_head(running, len(body) + 1000) + body)
        sock.shutdown(socket.SHUT_WR)
        answer = _read_until_closed(sock)
    assert b" 201 " not in answer.split(b"\r\n", 1)[0]
    wait_until(
        lambda: running.server.log_events("client_disconnected") > noticed,
        "the server to notice the short body",
    )
    assert_nothing_left(running, rows, objects)
    assert httpx.get(f"{running.server.url}/health/live", timeout=10).status_code == 200
    assert upload(running, jpeg((10, 11, 12))).status_code == 201


def test_body_longer_than_content_length_stores_declared_bytes_or_nothing(
    running: Running,
) -> None:
    rows, objects = running.rows(), running.objects()
    body = jpeg((13, 14, 15))
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=10) as sock:
        sock.sendall(raw_upload_head(running, len(body)) + body + b"TRAILING GARBAGE\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        answer = _read_until_closed(sock)
    status = int(answer.split(b" ", 2)[1])
    if status == 201:  # the declared bytes made one request, the rest a bad second one
        record = json.loads(answer.partition(b"\r\n\r\n")[2].split(b"HTTP/1.1", 1)[0])
        assert (record["sha256"], record["file_size"]) == (sha256(body), len(body))
        assert running.rows() == rows | {record["file_id"]}
    else:  # httptools refuses the whole buffer when the extra bytes arrive with the body
        assert status == 400, answer[:500]
        assert_nothing_left(running, rows, objects)
    # The cancelled upload removes its temporary file on its way out, which may be a
    # moment after the server already answered.
    deadline = time.monotonic() + 5
    while running.temporaries() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.temporaries() == []
    assert upload(running, jpeg((16, 17, 18))).status_code == 201


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "request_head",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",
    ],
    ids=["not-http", "two-content-lengths", "control-character"],
)
def test_an_unparseable_request_gets_a_json_problem(running: Running, request_head: bytes) -> None:
    """uvicorn answers these before the app runs; it said so in plain text."""
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=10) as sock:
        sock.sendall(request_head)
        answer = _read_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert b"content-type: application/problem+json" in head.lower()
    assert json.loads(body) == {
        "type": "urn:media-service:problem:bad_request", "status": 400, "code": "bad_request",
        "title": "Bad request", "detail": "the request is not valid HTTP/1.1",
    }  # fmt: skip
    assert httpx.get(f"{running.server.url}/health/live", timeout=10).status_code == 200


def _read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return received


# -- start-up failures ------------------------------------------------------------------------


def _unwritable_storage(root: Path) -> dict[str, str]:
    # A directory below a regular file can be created by nobody, root included.
    (root / "not-a-directory").write_text("x")
    return {"MEDIA_STORAGE_URL": f"file://{root / 'not-a-directory' / 'blobs'}"}


STARTUP_FAILURES: dict[str, tuple[Callable[[Path], dict[str, str]], list[str]]] = {
    "unknown-database-scheme": (
        lambda _root: {"MEDIA_DATABASE_URL": "mysql://x"},
        ["MEDIA_DATABASE_URL", "sqlite+aiosqlite://", "postgresql+asyncpg://"],
    ),
    "unknown-storage-scheme": (
        lambda _root: {"MEDIA_STORAGE_URL": "ftp://x"},
        ["MEDIA_STORAGE_URL", "unknown scheme 'ftp'"],
    ),
    "unreachable-postgres": (
        lambda _root: {"MEDIA_DATABASE_URL": "postgresql+asyncpg://u:hunter2@127.0.0.1:1/x"},
        ["database", "127.0.0.1:1", "unreachable"],
    ),
    "unwritable-storage": (_unwritable_storage, ["storage", "not writable", "not-a-directory"]),
}


@dataclass
class FailedStart:
    root: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def failed_starts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FailedStart]:
    """Every broken configuration, started at once (each costs an interpreter start)."""
    processes = {}
    for case, (make_env, _) in STARTUP_FAILURES.items():
        root = tmp_path_factory.mktemp(case)
        env = media_env(root, **make_env(root))
        args = [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(free_port())]
        processes[case] = (
            root,
            args,
            subprocess.Popen(
                args, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ),
        )
    results = {}
    try:
        for case, (root, args, process) in processes.items():
            out, err = process.communicate(timeout=60)
            results[case] = FailedStart(
                root, subprocess.CompletedProcess(args, process.returncode, out, err)
            )
    finally:
        for _, _, process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


@pytest.mark.parametrize("case", STARTUP_FAILURES)
def test_startup_failure_is_one_clear_line_and_non_zero_exit(
    case: str, failed_starts: dict[str, FailedStart]
) -> None:
    _, expected = STARTUP_FAILURES[case]
    root, result = failed_starts[case].root, failed_starts[case].result
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, output
    for part in expected:
        assert part in lines[0], lines[0]
    assert "hunter2" not in output
    assert result.stdout == ""  # no admin token for a start that failed
    assert not (root / "data" / "secret.key").exists()


def test_several_server_processes_share_one_fresh_install(tmp_path: Path) -> None:
    """``serve --workers 2``: migrated once before the processes start, one admin token,
    and both processes answer (each with its own background work on the shared database)."""
    server = start_server(tmp_path / "multi", extra=("--workers", "2"))
    try:
        tokens = TOKEN_PATTERN.findall(server.stdout())
        assert len(tokens) == 1, server.stdout()
        running = Running(server, tokens[0])
        serving = [
            child
            for child in psutil.Process(server.process.pid).children(recursive=True)
            if "multiprocessing" in " ".join(child.cmdline())
            and "spawn_main" in " ".join(child.cmdline())
        ]
        assert len(serving) >= 2, [c.cmdline() for c in serving]
        uploaded = upload(running, jpeg())
        assert uploaded.status_code == 201, uploaded.text
        file_id = uploaded.json()["file_id"]
        for _ in range(6):  # new connections: the kernel spreads them over the processes
            with httpx.Client(timeout=10) as client:
                got = client.get(f"{server.url}{FILES}/{file_id}", headers=running.auth())
                assert got.status_code == 200, got.text
        ready = httpx.get(f"{server.url}/health/ready", timeout=10)
        assert ready.json()["checks"]["migrations"] == {"ok": True, "detail": "at head"}
    finally:
        server.stop()
