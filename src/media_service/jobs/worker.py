"""The worker: runs each job type's handler as a durable consumer of the bus.

Every worker process subscribes the same durable consumer per job type, so the bus hands
each job to one of them at a time (NATS: the pull consumer shares its messages among its
clients; in-process bus: a worker leases the rows it claims). A worker that dies mid-job
never acknowledges it, so after ``ack_wait`` the job is delivered to another. A failing job
is retried with the policy's back-off and, after ``max_deliver`` attempts, stored as a
dead letter with its last error (``media-service jobs failed``). A job that completed is
recorded in the same transaction as its effect, so a redelivered copy changes nothing.
"""

from __future__ import annotations

from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media_service.db.uow import unit_of_work
from media_service.events.bus import Delivery, DeliveryPolicy, EventBus, Handler, RejectMessage
from media_service.events.consumers import HandledEvents, dead_letter_recorder
from media_service.jobs.queue import InvalidJob, JobMessage
from media_service.jobs.registry import JobContext, JobHandler, JobObsolete, JobRegistry

log = structlog.get_logger(__name__)


class _AlreadyDone(Exception):
    pass


class Worker:
    """Consumes the jobs of ``registry`` from ``bus`` until the bus is closed."""

    def __init__(
        self,
        bus: EventBus,
        sessions: async_sessionmaker[AsyncSession],
        registry: JobRegistry,
        *,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        self._bus = bus
        self._sessions = sessions
        self._registry = registry
        self._policy = policy

    async def start(self) -> None:
        """Subscribe one durable consumer per job type, once per lane (the bus must be
        started)."""
        self._registry.validate()
        on_dead_letter = dead_letter_recorder(self._sessions)
        for handler in self._registry:
            for _ in range(handler.lanes):
                await self._bus.subscribe(
                    handler.consumer,
                    [handler.subject],
                    bind(handler, self._sessions),
                    on_dead_letter=on_dead_letter,
                    policy=handler.policy or self._policy,
                )


def bind(handler: JobHandler[Any], sessions: async_sessionmaker[AsyncSession]) -> Handler:
    """The bus handler of one job type: validate, skip if done, else run and record."""

    async def on_delivery(delivery: Delivery) -> None:
        try:
            message = JobMessage.parse(delivery.payload, handler.name)
            payload = handler.payload_type.model_validate(message.payload)
        except (InvalidJob, ValidationError) as exc:
            raise RejectMessage(str(exc)) from None
        # Every line logged while the job runs (by any module) carries its id and type.
        with structlog.contextvars.bound_contextvars(job_id=message.job_id, job=handler.name):
            await _run(handler, sessions, message.job_id, payload, delivery.attempt)

    return on_delivery


async def _run(
    handler: JobHandler[Any],
    sessions: async_sessionmaker[AsyncSession],
    job_id: str,
    payload: Any,
    attempt: int,
) -> None:
    if await _already_done(sessions, handler.consumer, job_id):
        log.info("job_already_done")
        return
    try:
        async with unit_of_work(sessions) as session:
            await handler.run(JobContext(job_id, handler.name, attempt, session), payload)
            if not await HandledEvents(session).record(handler.consumer, job_id):
                raise _AlreadyDone
    except _AlreadyDone:  # another copy finished first; this one was rolled back
        log.info("job_already_done")
        return
    except JobObsolete:  # rolled back, and not recorded
        log.info("job_obsolete")
        return
    log.info("job_done", attempt=attempt)


async def _already_done(
    sessions: async_sessionmaker[AsyncSession], consumer: str, job_id: str
) -> bool:
    async with sessions() as session:
        return await HandledEvents(session).contains(consumer, job_id)
