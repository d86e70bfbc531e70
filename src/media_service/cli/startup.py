"""What ``serve`` does before the server starts: fail fast, and greet a first start."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from media_service.auth.principal import Role
from media_service.auth.secrets import load_or_create_secret
from media_service.auth.tokens import TokenService
from media_service.config import Settings
from media_service.db.engine import create_engine
from media_service.storage import BlobStore, StorageUnavailable, open_blob_store

FIRST_ADMIN = "admin"
FIRST_ORG = "default"
GREETED_FILE = "first-start-done"
CHECK_TIMEOUT = 10.0


def check_backends_or_exit(settings: Settings, console: Console) -> None:
    """Stop with one clear line when a backend is unknown or unreachable.

    Only the backends are opened here, not the whole service state, which needs the secret.
    """
    problem = asyncio.run(first_backend_problem(settings))
    if problem:
        console.print(f"[red]cannot start:[/red] {escape(problem)}")
        raise typer.Exit(1)


async def first_backend_problem(settings: Settings) -> str | None:
    """A one-line description of what keeps the service from starting, or None."""
    try:
        blobs = open_blob_store(settings.storage_url)
    except (ValueError, OSError) as exc:
        return f"configuration error: {_one_line(exc)}"
    try:
        return await _storage_problem(blobs) or await _database_problem(settings)
    finally:
        await blobs.close()


async def _storage_problem(blobs: BlobStore) -> str | None:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await blobs.check()
    except StorageUnavailable as exc:
        return f"storage unavailable: {_one_line(exc)}"
    except TimeoutError:
        return f"storage unavailable: {blobs.url} did not answer within {CHECK_TIMEOUT:g} s"
    return None


async def _database_problem(settings: Settings) -> str | None:
    where = _redacted(settings.database_url)
    try:
        engine = create_engine(settings.database_url)
    except (ValueError, OSError) as exc:  # a bad URL, or a SQLite folder we cannot create
        return f"database {where} cannot be used: {_one_line(exc)}"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT), engine.connect():
            pass
    except TimeoutError:
        return f"database {where} unreachable: no answer within {CHECK_TIMEOUT:g} s"
    except Exception as exc:  # any driver error: the database is not reachable
        return f"database {where} unreachable: {type(exc).__name__}: {_one_line(exc)}"
    finally:
        await engine.dispose()
    return None


def _redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("://", 1)[0] + "://…"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def greet_first_start(settings: Settings) -> None:
    """Print a ready admin token on the first start of the server for this data directory.

    Whichever command created the generated secret (``migrate`` run before the first
    ``serve``, say), the first ``serve`` shows the token; a marker file records that it was
    shown. Nothing is shown when the operator configured ``MEDIA_JWT_SECRET``.
    """
    secret = load_or_create_secret(settings)
    if settings.jwt_secret is not None:
        return
    try:
        fd = os.open(settings.data_dir / GREETED_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    print_first_admin_token(settings, secret)


def print_first_admin_token(settings: Settings, secret: str) -> None:
    """The way in for a new install."""
    tokens = TokenService(secret, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    token = tokens.mint(FIRST_ADMIN, FIRST_ORG, [Role.ADMIN], ttl=timedelta(days=365))
    banner = (
        "\n  First start: generated a secret in {dir}/secret.key.\n"
        "  Admin token for organization '{org}' (shown once; mint more with "
        "`media-service token create`):\n\n  {token}\n"
    )
    print(banner.format(dir=settings.data_dir, org=FIRST_ORG, token=token), flush=True)
