"""``media-service erase USER --org ORG [--wait]``: the erasure of a person, from a shell."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from media_service.auth.principal import Principal, Role
from media_service.db.uow import unit_of_work
from media_service.errors import MediaError
from media_service.logs import configure_logging
from media_service.state import ServiceState

if TYPE_CHECKING:  # the erasure imports most domains: only when the command runs
    from media_service.privacy.models import Erasure

OPERATOR = "cli"  # recorded as who asked for the erasure


def erase(
    user_id: Annotated[str, typer.Argument(help="The person's user id (their tokens' sub)")],
    organization: Annotated[str, typer.Option("--org", help="Their organization id")],
    wait: Annotated[
        bool,
        typer.Option(help="Carry it out here and now, with progress, and print the report"),
    ] = False,
) -> None:
    """Erase everything stored about a person: files, versions, renditions, face crops,
    metadata, playlists, frames, schedules, cached photos and event history.

    Without --wait it is queued for the running service or worker to carry out. It is a
    durable job either way; asking again while it runs resumes it.
    """
    from media_service.cli import _fail, _run_with_state, _settings, console

    settings = _settings()
    configure_logging(settings)

    async def work(state: ServiceState) -> Erasure | None:
        try:
            erasure = await _request(state, organization, user_id)
        except MediaError as exc:
            _fail(exc.detail)
        if not wait:
            return erasure
        return await _carry_out(state, erasure.erasure_id)

    erasure = _run_with_state(settings, work, migrate=settings.migrate_on_start)
    if erasure is None:  # pragma: no cover - the row was created a moment ago
        _fail("the erasure disappeared")
    if not wait:
        console.print(
            f"queued erasure {erasure.erasure_id} ({erasure.status.value}); a running service "
            "or `media-service worker` carries it out"
        )
        return
    _print_report(erasure)


async def _request(state: ServiceState, organization_id: str, user_id: str) -> Erasure:
    from media_service.privacy.service import ErasureService

    operator = Principal(OPERATOR, organization_id, frozenset({Role.ADMIN}))
    async with unit_of_work(state.sessions) as session:
        return await ErasureService(session, state).request(operator, user_id)


async def _carry_out(state: ServiceState, erasure_id: str) -> Erasure | None:
    from media_service.cli import console
    from media_service.privacy.erasure import ErasureOptions, ErasureRun

    columns = (SpinnerColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"erasing ({erasure_id})")
        totals: dict[str, int] = {}

        def advance(step: str, counts: Mapping[str, int]) -> None:
            for name, value in counts.items():
                totals[name] = totals.get(name, 0) + value
            done = ", ".join(f"{value} {name}" for name, value in totals.items() if value)
            progress.update(task, description=f"{step}: {done or 'nothing yet'}")

        # Consumers do not run in this process: purge the erased folders directly.
        run = ErasureRun(state, ErasureOptions(purge_wait=0), progress=advance)
        return await run.run(erasure_id)


def _print_report(erasure: Erasure) -> None:
    from media_service.cli import console
    from media_service.privacy.schemas import COUNTED

    counts = erasure.counts or {}
    table = Table("removed", "count", title=f"erasure {erasure.erasure_id}: {erasure.status.value}")
    for name in (*COUNTED, *sorted(set(counts) - set(COUNTED))):
        table.add_row(name.replace("_", " "), str(counts.get(name, 0)))
    console.print(table)
    console.print(f"subject {escape(erasure.subject_digest)}")
