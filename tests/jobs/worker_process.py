"""A worker process for the crash test: ``python worker_process.py DB_URL EVENTS_URL LOG``.

It runs one job type, :data:`SLOW_JOB`, whose handler writes ``start JOB_ID ATTEMPT PID``
to LOG and then sleeps far longer than the test waits: the test kills the process there.
``ready PID`` is written once the worker has subscribed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from pydantic import BaseModel

from media_service.db.engine import create_engine, create_session_factory
from media_service.events import DeliveryPolicy, EventBus
from media_service.events.memory import MemoryEventBus
from media_service.events.nats import NatsEventBus
from media_service.jobs import JobContext, JobRegistry, Worker, job

SLOW_JOB = "test.slow"
# Shared with the test's own worker: both must subscribe the consumer alike.
POLICY = DeliveryPolicy(
    max_deliver=3, backoff=(0.2, 0.4), handler_timeout=2.0, ack_margin=0.5, max_in_flight=4
)


class SlowPayload(BaseModel):
    n: int


def log_line(path: Path, line: str) -> None:
    with path.open("a") as log:
        log.write(line + "\n")
        log.flush()
        os.fsync(log.fileno())


async def main(database_url: str, events_url: str, log_path: Path) -> None:
    @job(SLOW_JOB, SlowPayload)
    async def stall(ctx: JobContext, payload: SlowPayload) -> None:
        log_line(log_path, f"start {ctx.job_id} {ctx.attempt} {os.getpid()}")
        await asyncio.sleep(3600)

    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    bus: EventBus = (
        NatsEventBus(events_url, pull_expires=1.0, reconnect_wait=0.2)
        if events_url.startswith("nats")
        else MemoryEventBus(sessions, poll_interval=0.1)
    )
    await bus.start()
    await Worker(bus, sessions, JobRegistry([stall]), policy=POLICY).start()
    log_line(log_path, f"ready {os.getpid()}")
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
