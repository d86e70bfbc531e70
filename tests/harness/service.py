"""Run the real ``media-service`` command as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx

from media_service.auth.principal import Role
from media_service.auth.tokens import TokenService

SECRET = "service-harness-secret-0123456789-abcdefghijklmnop"
BIN = Path(sys.executable).parent / "media-service"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    """One ``media-service serve`` process; restartable on the same port and data."""

    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, subject: str, org: str, *roles: Role) -> str:
        return TokenService(SECRET, issuer="media-service").mint(
            subject, org, list(roles), ttl=timedelta(hours=1)
        )

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        log = (self.workdir / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"media-service exited early:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"media-service did not become ready:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN), *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / "server.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )


def service_env(workdir: Path, **overrides: str) -> dict[str, str]:
    """Environment for a service whose data lives in ``workdir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIA_")}
    env.update(
        MEDIA_DATA_DIR=str(workdir / "data"),
        MEDIA_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'data' / 'media.db'}",
        MEDIA_STORAGE_URL=f"file://{workdir / 'data' / 'blobs'}",
        MEDIA_JWT_SECRET=SECRET,
        MEDIA_LOG_FORMAT="json",
        MEDIA_LOG_LEVEL="WARNING",
    )
    env.update(overrides)
    return env
