"""A scripted stand-in for the external AI service: a real HTTP server on a loopback port.

Tests queue the replies (status, body, headers, delay, chunked or not) and read back the
requests it received. It runs uvicorn in a thread with its own event loop, so a reply that
sleeps past the client's timeout does not block the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

GOOD_BODY: dict[str, Any] = {
    "model": "vision-1",
    "labels": [{"name": "beach", "confidence": 0.9}],
    "objects": [],
    "scenes": [],
}


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``body`` is sent as JSON unless it is ``bytes``."""

    status: int = 200
    body: Any = field(default_factory=lambda: GOOD_BODY)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    chunked: bool = False  # stream the body without a Content-Length

    def content(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()


@dataclass(frozen=True)
class Received:
    """What the server saw of one request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedService:
    """The ASGI app: answers each request with the next queued :class:`Reply`.

    When the queue is empty it answers with ``default``. Deques and list appends are
    atomic in CPython, so the test thread and the server thread need no lock.
    """

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Received] = []
        self.default = Reply()

    def script(self, *replies: Reply) -> None:
        """Forget earlier requests and replies; answer the next requests with ``replies``."""
        self.replies.clear()
        self.requests.clear()
        self.replies.extend(replies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        request = Request(scope, receive)
        body = await request.body()
        headers = {key.lower(): value for key, value in request.headers.items()}
        self.requests.append(Received(request.method, request.url.path, headers, body))
        reply = self.replies.popleft() if self.replies else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        await _response(reply)(scope, receive, send)


def _response(reply: Reply) -> Response:
    content = reply.content()
    if not reply.chunked:
        return Response(content, reply.status, reply.headers, media_type="application/json")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(content), 64 * 1024):
            yield content[start : start + 64 * 1024]

    return StreamingResponse(chunks(), reply.status, reply.headers, "application/json")


@contextmanager
def running(app: ScriptedService) -> Iterator[str]:
    """Serve ``app`` on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound here, so no other process can take the port
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_started(server, thread)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    for _ in range(500):
        if server.started:
            return
        if not thread.is_alive():
            raise RuntimeError("the scripted analyzer server exited during start-up")
        threading.Event().wait(0.01)
    raise RuntimeError("the scripted analyzer server did not start within 5 s")
