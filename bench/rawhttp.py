"""A keep-alive HTTP/1.1 GET client for the load generators of the benchmarks.

httpx cost 1.2–1.4 ms of CPU a request, more than a warm answer costs the servers under
test (0.6–1.1 ms measured), so with client and server on the same two cores it measured
the client; this one costs ≈ 0.1 ms (the benches' "client CPU ms/req" column). It does
what the benchmarks need and nothing more: one GET at a time per connection,
``Content-Length`` bodies (both our server and Thumbor send them), a reconnect when the
server closed an idle connection (uvicorn's keep-alive is 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """What a GET answered: its status, its headers (names lower-cased) and its body."""

    status: int
    headers: dict[str, str]
    body: bytes


class RawConnection:
    """One keep-alive connection to ``127.0.0.1:port``; ``headers`` go with every request."""

    def __init__(self, port: int, headers: Mapping[str, str] | None = None) -> None:
        self.port = port
        self.reconnects = 0
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        """GET ``path`` (with ``headers`` besides the connection's own)."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n{self._fixed}{extra}\r\n".encode()
        first = await self._send(request)
        status = int(first.split(b" ", 2)[1])
        found: dict[str, str] = {}
        assert self._reader is not None
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            found[name.strip().lower()] = value.strip()
        length = int(found.get("content-length", "0"))
        body = await self._reader.readexactly(length) if length else b""
        return Reply(status, found, body)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def _send(self, request: bytes) -> bytes:
        """Send ``request``; its status line. Once again on a new connection when the
        server had closed this one."""
        for _ in range(2):
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self._reader is not None
            self._writer.write(request)
            with contextlib.suppress(ConnectionError):
                first = await self._reader.readline()
                if first:
                    return first
            self.close()
            self.reconnects += 1
        raise ConnectionError(f"127.0.0.1:{self.port} closed the connection twice")
