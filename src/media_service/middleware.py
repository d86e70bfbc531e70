"""Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streamed bodies)."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("media_service.access")

RequestListener = Callable[[str, str, int, float], None]
UNMATCHED = "unmatched"  # the route label of a request no route took (404s of any path)

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class RequestContextMiddleware:
    """Gives every request an id (kept from ``X-Request-ID`` when sane), binds it to the
    log context, adds security headers to every response, and logs one line per request.

    The logged path has no query string: signed URLs carry their signature there.
    ``on_request(method, route, status, seconds)`` is told of every request, with the
    matched route's template (``/api/v1/media/files/{file_id}``), never the raw path, so
    metrics labelled by it stay bounded.
    """

    def __init__(self, app: ASGIApp, on_request: RequestListener | None = None) -> None:
        self.app = app
        self.on_request = on_request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [h for h in _SECURITY_HEADERS if h[0] not in present]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            log.info(
                "request",
                method=scope["method"],
                path=logged_path(scope["path"], route),
                status=status,
                duration_ms=round(seconds * 1000, 2),
            )
            if self.on_request is not None:
                self.on_request(scope["method"], route, status, seconds)
            structlog.contextvars.unbind_contextvars("request_id")


_PERSON_SEGMENT = re.compile(r"(/users/)[^/]+")


def logged_path(path: str, route: str) -> str:
    """The path a request line shows: the route's template where the path names a person
    (``/users/{user_id}/…``: an erased person's id must not stay in the logs), else the path
    itself (file and frame ids are what an operator looks for)."""
    if "{user_id}" in route:
        return route
    # Unmatched (a 404, a wrong method): the same rule for whatever follows /users/.
    return _PERSON_SEGMENT.sub(r"\1{user_id}", path) if "/users/" in path else path


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id" and 0 < len(value) <= 64 and value.isascii() and value.isalnum():
            return str(value.decode())
    return secrets.token_hex(8)
