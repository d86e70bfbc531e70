"""``media-service worker`` and ``media-service jobs failed|retry``."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import structlog
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from media_service.errors import MediaError
from media_service.events import BusError
from media_service.jobs import DeadLetterService, JobConfigurationError
from media_service.logs import configure_logging
from media_service.state import ServiceState

jobs_app = typer.Typer(help="Background jobs and dead letters.", no_args_is_help=True)
log = structlog.get_logger(__name__)


def worker() -> None:
    """Run the workers (jobs and event consumers) and the outbox relay, without HTTP,
    until SIGTERM or Ctrl-C. Run as many as you like against PostgreSQL + NATS."""
    from media_service.cli import _run_with_state, _settings, console
    from media_service.cli.startup import check_backends_or_exit

    settings = _settings()
    configure_logging(settings)
    check_backends_or_exit(settings, console)
    _run_with_state(settings, _run_until_stopped, migrate=settings.migrate_on_start)


async def _run_until_stopped(state: ServiceState) -> None:
    from media_service.cli import _fail
    from media_service.runtime import start_background

    try:
        await start_background(state)
    except (JobConfigurationError, BusError) as exc:
        _fail(f"cannot start the worker: {exc}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("worker_started", events_url=state.bus.url)
    await stop.wait()
    log.info("worker_stopping")


@jobs_app.command("failed")
def failed(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many")] = 100,
    all_: Annotated[bool, typer.Option("--all", help="Include those already retried")] = False,
) -> None:
    """List dead letters (jobs and events given up on), newest first."""
    from media_service.cli import _run_with_state, _settings
    from media_service.db.uow import unit_of_work

    settings = _settings()

    async def load(state: ServiceState) -> list[tuple[str, ...]]:
        async with unit_of_work(state.sessions) as session:
            records, _ = await DeadLetterService(session).page(
                organization_id=None, limit=limit, include_retried=all_
            )
        return [
            (
                r.id,
                r.subject,
                str(r.attempts),
                " ".join(r.error.split())[:300],
                r.created_at.isoformat(timespec="seconds"),
                r.retried_at.isoformat(timespec="seconds") if r.retried_at else "",
            )
            for r in records
        ]

    rows = _run_with_state(settings, load, migrate=settings.migrate_on_start)
    table = Table("id", "subject", "attempts", "last error", "created")
    if all_:
        table.add_column("retried")
    for row in rows:
        table.add_row(*(escape(cell) for cell in (row if all_ else row[:5])))
    Console().print(table)
    Console(stderr=True).print(f"{len(rows)} dead letter(s)")


@jobs_app.command("retry")
def retry(dead_letter_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Re-queue dead letter ID on its subject (a running worker picks it up)."""
    from media_service.cli import _fail, _run_with_state, _settings
    from media_service.db.uow import unit_of_work

    settings = _settings()

    async def requeue(state: ServiceState) -> str:
        async with unit_of_work(state.sessions) as session:
            record = await DeadLetterService(session).retry(dead_letter_id, organization_id=None)
            return record.subject

    try:
        subject = _run_with_state(settings, requeue, migrate=settings.migrate_on_start)
    except MediaError as exc:
        _fail(exc.detail)
    typer.echo(f"re-queued {dead_letter_id} on {subject}")
