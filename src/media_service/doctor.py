"""Checks of every configured backend, shared by ``media-service doctor`` and
``/health/ready``.

A check that passes can still carry a warning (``warning=True``): the backend works but is
set up in a way that can lose data, such as a NATS server that acknowledges JetStream
writes before they are on disk. Warnings never make the service unready.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import text

from media_service.db.migrate import pending_migrations
from media_service.events import BusError, BusHealth
from media_service.state import ServiceState
from media_service.storage import StorageUnavailable

CHECK_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    warning: bool = False


async def run_checks(state: ServiceState) -> list[CheckResult]:
    """Database reachable, schema at head, storage writable, bus reachable and set up
    (plus whether it syncs acknowledged events to disk)."""
    *results, bus = await asyncio.gather(
        _database(state), _migrations(state), _storage(state), _bus(state)
    )
    ocr = await asyncio.to_thread(_ocr, state)
    return [*results, *bus, *([ocr] if ocr else [])]


def _ocr(state: ServiceState) -> CheckResult | None:
    """Whether photos' text can be read (optional: everything else works without it)."""
    if not (state.settings.ocr and state.settings.analyse_photos):
        return None
    from media_service.imaging.ocr import tesseract_available  # loads libvips: only here

    version = tesseract_available()
    if version:
        return CheckResult("ocr", True, f"tesseract {version}")
    return CheckResult(
        "ocr",
        True,
        "warning: tesseract is not installed, so photos get no text_detection (install the "
        "`tesseract-ocr` package, or set MEDIA_OCR=false to silence this)",
        warning=True,
    )


async def _database(state: ServiceState) -> CheckResult:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT), state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not reachable"; say which
        return CheckResult("database", False, f"{_redacted(state.settings.database_url)}: {exc}")
    return CheckResult("database", True, _redacted(state.settings.database_url))


async def _migrations(state: ServiceState) -> CheckResult:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            pending = await pending_migrations(state.engine)
    except Exception as exc:  # a database that is down is reported by _database too
        return CheckResult("migrations", False, f"cannot read the schema version: {exc}")
    if pending:
        oldest_first = ", ".join(reversed(pending))
        return CheckResult(
            "migrations",
            False,
            f"{len(pending)} pending ({oldest_first}): run `media-service migrate`",
        )
    return CheckResult("migrations", True, "at head")


async def _storage(state: ServiceState) -> CheckResult:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await state.blobs.check()
    except (StorageUnavailable, TimeoutError) as exc:
        return CheckResult("storage", False, str(exc) or "timed out")
    return CheckResult("storage", True, state.blobs.url)


async def _bus(state: ServiceState) -> list[CheckResult]:
    """The bus answers and its streams exist; consumer lag in the detail. ``start()`` is a
    no-op in a running service; in ``doctor`` it connects (and, like ``serve``, creates a
    missing stream)."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await state.bus.start()
            health = await state.bus.check()
    except (BusError, TimeoutError, OSError) as exc:
        return [CheckResult("bus", False, str(exc) or f"{state.bus.url}: timed out")]
    results = [CheckResult("bus", True, f"{health.url}: {health.detail}; {_lag(health)}")]
    durability = _durability(health)
    if durability is not None:
        results.append(durability)
    return results


def _lag(health: BusHealth) -> str:
    if not health.consumer_lag:
        return "no durable consumers yet"
    lag = ", ".join(f"{name}={count}" for name, count in sorted(health.consumer_lag.items()))
    return f"consumer lag (messages not yet acknowledged): {lag}"


def _durability(health: BusHealth) -> CheckResult | None:
    """Whether an acknowledged event survives a power failure; ``None`` for a bus without a
    server of its own (the in-process bus is as durable as the database)."""
    name = "bus sync"
    if health.sync_always is True:
        return CheckResult(name, True, "every JetStream write is synced to disk (sync_always)")
    if health.sync_always is False:
        return CheckResult(
            name,
            True,
            "warning: NATS acknowledges before fsync (sync_interval is not 'always'): "
            "acknowledged events can be lost on power failure; set "
            "`jetstream { sync_interval: always }` in the NATS server config",
            warning=True,
        )
    if not health.warnings:
        return None
    return CheckResult(
        name,
        True,
        "warning: cannot tell whether NATS syncs every write to disk: add its monitoring "
        "URL to MEDIA_EVENTS_URL (nats://HOST:4222?monitor=http://HOST:8222, the server's "
        "`http` port)",
        warning=True,
    )


def _redacted(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
