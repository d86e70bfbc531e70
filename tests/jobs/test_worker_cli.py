"""``media-service worker``: consumers and the relay without HTTP, stopped by SIGTERM."""

from __future__ import annotations

import signal
import subprocess

from sqlalchemy import select

from jobs.conftest import SCRIPT, JobsEnv, wait_until
from media_service.db.uow import unit_of_work
from media_service.events import FileDeleted, record_event
from media_service.events.models import HandledEvent, OutboxMessage
from media_service.media.consumers import PURGE_CONSUMER


async def test_worker_command_relays_and_consumes_until_sigterm(
    jobs_env: JobsEnv, processes: list[subprocess.Popen[bytes]]
) -> None:
    event = FileDeleted(file_id="ext-file-1", user_id="u1", organization_id="org_w")
    async with unit_of_work(jobs_env.sessions) as session:
        record_event(session, event)  # committed before any worker ran

    log = (jobs_env.tmp / "worker.err").open("wb")
    process = subprocess.Popen(
        [str(SCRIPT), "worker"],
        cwd=jobs_env.tmp,
        env=jobs_env.cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    processes.append(process)

    async def handled() -> bool:
        async with jobs_env.sessions() as session:
            found = await session.scalar(
                select(HandledEvent.event_id).where(
                    HandledEvent.consumer == PURGE_CONSUMER,
                    HandledEvent.event_id == event.event_id,
                )
            )
            row = await session.get(OutboxMessage, event.event_id)
        return found is not None and row is not None and row.published_at is not None

    await wait_until(handled, timeout=30, message="the worker did not relay and consume")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    log.close()
    output = (jobs_env.tmp / "worker.err").read_text()
    assert "worker_started" in output
    assert "worker_stopping" in output
