"""One place that turns every error into an RFC 9457 ``application/problem+json`` body."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from media_service.errors import MediaError
from media_service.storage import BlobNotFound, InvalidKey, StorageUnavailable

log = structlog.get_logger(__name__)
PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem response; ``code`` is stable and meant for programs, ``title`` for people."""
    body = {
        "type": f"urn:media-service:problem:{code}",
        "status": status,
        "code": code,
        "title": title,
        "detail": detail or title,
        **extra,
    }
    return JSONResponse(
        jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


async def _media_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MediaError)
    return problem(exc.status, exc.code, exc.title, exc.detail, exc.headers, **exc.extra)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]
    return problem(422, "validation_error", "The request is invalid", errors=errors)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return problem(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))


async def _client_disconnect(_: Request, exc: Exception) -> JSONResponse:
    log.info("client_disconnected")
    return problem(400, "client_disconnected", "The client went away before the body ended")


async def _storage_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.error("storage_unavailable", error=str(exc))
    return problem(
        503,
        "storage_unavailable",
        "Storage is temporarily unavailable",
        headers={"Retry-After": "5"},
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if not database_unavailable(exc):
        return await _unexpected(request, exc)
    log.error("database_unavailable", error=str(exc).splitlines()[0][:300])
    return problem(
        503,
        "database_unavailable",
        "The database is temporarily unavailable",
        headers={"Retry-After": "2"},
    )


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached or used now (a lost or
    refused connection, a full pool, a lock held too long), not that a statement was
    wrong."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return True
    # asyncpg's errors reach us as a plain DBAPIError carrying the server's SQLSTATE: a
    # connection exception (08...), a server shutting down or starting up (57P01-57P03),
    # too many connections (53300).
    state = str(getattr(exc.orig, "sqlstate", None) or "")
    return state.startswith("08") or state in _UNAVAILABLE_STATES


_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


async def _invalid_key(_: Request, exc: Exception) -> JSONResponse:
    return problem(404, "not_found", "Not found")


async def _blob_not_found(_: Request, exc: Exception) -> JSONResponse:
    # The record was found but its bytes were not: a delete that went through between the
    # two (the row goes first, the bytes after). To the client the file is simply gone.
    log.warning("blob_not_found", error=str(exc))
    return problem(404, "not_found", "Not found", "the file was deleted meanwhile")


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", exc_info=exc)
    return problem(500, "internal_error", "Internal server error")


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers; call once from the app factory."""
    app.add_exception_handler(MediaError, _media_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(StorageUnavailable, _storage_unavailable)
    app.add_exception_handler(InvalidKey, _invalid_key)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _database_error)
    app.add_exception_handler(BlobNotFound, _blob_not_found)
    app.add_exception_handler(Exception, _unexpected)
