"""``media-service``: serve, migrate, mint tokens, import, check and clean up."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.exc import DBAPIError

from media_service.auth.principal import Principal, Role
from media_service.auth.secrets import load_or_create_secret
from media_service.cli.erase import erase
from media_service.cli.jobs import jobs_app, worker
from media_service.config import Settings
from media_service.logs import configure_logging
from media_service.media.models import OwnerType
from media_service.state import ServiceState
from media_service.storage import StorageUnavailable

app = typer.Typer(
    help="Media Service: stores media and serves what its consumers need.",
    no_args_is_help=True,
    add_completion=False,
)
token_app = typer.Typer(help="Bearer tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(jobs_app, name="jobs")
app.command()(worker)
app.command()(erase)
console = Console(stderr=True, soft_wrap=True)  # soft wrap: an error stays one line
T = TypeVar("T")


def main() -> None:
    """Entry point of the ``media-service`` command."""
    app()


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        _fail(f"configuration error: {_validation_summary(exc)}", code=2)


def _validation_summary(exc: ValidationError) -> str:
    """Every bad setting, named as its environment variable, on one line."""
    problems = []
    for error in exc.errors():
        name = "MEDIA_" + "_".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        problems.append(message if message.startswith(name) else f"{name}: {message}")
    return "; ".join(problems)


def _fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, no traceback, a non-zero exit."""
    console.print(f"[red]error:[/red] {escape(' '.join(message.split()))}")
    raise typer.Exit(code)


def _run_with_state(
    settings: Settings,
    work: Callable[[ServiceState], Awaitable[T]],
    *,
    migrate: bool = False,
) -> T:
    """Run ``work`` with the backends open; ``migrate`` first brings the schema to the newest
    version, as ``serve`` does (so the embedded default needs no separate step)."""
    from media_service.db.migrate import upgrade_to_head

    async def runner() -> T:
        state = _build_state(settings)
        try:
            if migrate:
                await upgrade_to_head(state.engine)
            return await work(state)
        finally:
            await state.close()

    try:
        return asyncio.run(runner())
    except DBAPIError as exc:  # the database refused or is not reachable
        _fail(f"database error: {type(exc.orig).__name__}: {exc.orig}")
    except (OSError, StorageUnavailable) as exc:  # a backend we cannot reach
        _fail(f"{type(exc).__name__}: {exc}")


def _build_state(settings: Settings) -> ServiceState:
    try:
        return ServiceState.build(settings)
    except (ValueError, OSError) as exc:
        _fail(f"configuration error: {exc}", code=2)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind")] = None,
    port: Annotated[
        int | None, typer.Option(help=f"Port (default {Settings.model_fields['port'].default})")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Server processes (default MEDIA_WEB_WORKERS, 1)")
    ] = None,
) -> None:
    """Run the HTTP API (and, in each process, the background work)."""
    import uvicorn

    from media_service.app import create_app
    from media_service.cli.startup import check_backends_or_exit, greet_first_start
    from media_service.http_protocol import ProblemHttpToolsProtocol

    settings = _settings()
    configure_logging(settings)
    check_backends_or_exit(settings, console)
    try:
        greet_first_start(settings)
    except OSError as exc:
        _fail(f"cannot start: no secret in {settings.data_dir}: {exc}")
    processes = workers or settings.web_workers
    options: dict[str, Any] = {
        "host": host or settings.host,
        "port": port or settings.port,
        "log_config": None,
        # Measured in docs/benchmarks.md: h11 is ~12% slower for uploads. Named (httptools,
        # with JSON problems for unparseable requests) so that a missing package fails here
        # instead of quietly falling back.
        "http": ProblemHttpToolsProtocol,
        "loop": "uvloop",
        "proxy_headers": True,
        "server_header": False,
    }
    if processes == 1:
        uvicorn.run(create_app(settings), **options)
        return
    _prepare_worker_processes(settings, processes)
    uvicorn.run("media_service.app:create_worker_app", factory=True, workers=processes, **options)


def _prepare_worker_processes(settings: Settings, processes: int) -> None:
    """Several processes each build the app from the environment: migrate once here rather
    than in each at the same time, and share the cores among their imaging pools."""
    from media_service.db.migrate import upgrade_to_head

    if settings.migrate_on_start:
        _run_with_state(settings, lambda state: upgrade_to_head(state.engine))
    os.environ["MEDIA_AUTO_MIGRATE"] = "false"
    if settings.imaging_workers is None:
        cores = os.cpu_count() or 1
        os.environ["MEDIA_IMAGING_WORKERS"] = str(max(1, cores // processes))


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest version."""
    from media_service.db.migrate import upgrade_to_head

    settings = _settings()
    _run_with_state(settings, lambda state: upgrade_to_head(state.engine))
    console.print("[green]database is at the newest migration[/green]")


@token_app.command("create")
def token_create(
    subject: Annotated[str, typer.Option("--sub", help="User or service id")],
    organization: Annotated[str, typer.Option("--org", help="Organization id")],
    roles: Annotated[list[Role], typer.Option("--role", help="Repeat for several roles")],
    days: Annotated[int, typer.Option(help="Lifetime in days")] = 30,
    frame_id: Annotated[str | None, typer.Option(help="For frame devices")] = None,
) -> None:
    """Print a signed bearer token."""
    from media_service.auth.tokens import TokenService

    settings = _settings()
    try:
        secret = load_or_create_secret(settings)
    except OSError as exc:
        _fail(f"no secret in {settings.data_dir}: {exc}")
    tokens = TokenService(secret, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    typer.echo(
        tokens.mint(subject, organization, roles, ttl=timedelta(days=days), frame_id=frame_id)
    )


@app.command("import")
def import_files(
    directory: Annotated[Path, typer.Argument(exists=True, file_okay=False, resolve_path=True)],
    organization: Annotated[str, typer.Option("--org")],
    owner_type: Annotated[OwnerType, typer.Option()],
    owner_id: Annotated[str, typer.Option()],
    uploaded_by: Annotated[str, typer.Option(help="Recorded as uploaded_by")] = "import",
) -> None:
    """Upload every file of DIRECTORY; files already stored are skipped, so an interrupted
    import can simply be run again. Hidden files are left out; exits 1 if a file failed."""
    from media_service.media.importer import files_under, import_directory

    settings = _settings()
    configure_logging(settings)
    paths = files_under(directory)
    principal = Principal(uploaded_by, organization, frozenset({Role.ADMIN}))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("importing", total=sum(p.stat().st_size for p in paths))
        report = _run_with_state(
            settings,
            lambda state: import_directory(
                state,
                paths,
                principal,
                (owner_type, owner_id),
                lambda _path, size: progress.advance(task, size),
            ),
            migrate=settings.migrate_on_start,
        )
    console.print(
        f"imported {report.imported}, already stored {report.skipped}, failed {len(report.failed)}"
    )
    for path, reason in report.failed.items():
        console.print(f"  [yellow]{escape(path)}[/yellow]: {escape(reason)}")
    if report.failed:
        raise typer.Exit(1)


@app.command()
def doctor() -> None:
    """Check every configured backend and say what is wrong."""
    from media_service.doctor import run_checks

    settings = _settings()
    results = _run_with_state(settings, run_checks)
    table = Table("check", "ok")
    table.add_column("detail", overflow="fold")  # a long path or error must not be cut off
    for result in results:
        table.add_row(
            result.name,
            _verdict(result.ok, result.warning),
            escape(result.detail),
        )
    Console().print(table)
    if not all(result.ok for result in results):
        raise typer.Exit(1)


def _verdict(ok: bool, warning: bool) -> str:
    if not ok:
        return "[red]NO[/red]"
    return "[yellow]WARN[/yellow]" if warning else "[green]yes[/green]"


@app.command()
def gc(
    grace_seconds: Annotated[
        int | None, typer.Option(help="Keep orphans younger than this")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only report")] = False,
) -> None:
    """Remove stored objects that no record refers to (left by crashes)."""
    from media_service.media.gc import collect_garbage

    settings = _settings()
    configure_logging(settings)
    grace = timedelta(seconds=settings.gc_grace_seconds if grace_seconds is None else grace_seconds)
    report = _run_with_state(
        settings,
        lambda state: collect_garbage(state, grace, dry_run=dry_run),
        migrate=settings.migrate_on_start,
    )
    verb = "would remove" if dry_run else "removed"
    console.print(
        f"scanned {report.scanned} objects; {verb} {len(report.orphans)} orphans, "
        f"{report.temporaries} temporary files, {report.idempotency_keys} expired idempotency keys"
    )
    sys.stdout.flush()
