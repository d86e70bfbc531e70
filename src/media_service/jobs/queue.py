"""Enqueueing jobs: an outbox row in the caller's transaction, nothing before the commit.

The message a worker receives is a :class:`JobMessage` (JSON): the job id, its type, when
it was enqueued and the payload. The job id is the de-duplication id at every step: the
outbox key, the bus message id (``Nats-Msg-Id``) and the worker's "done" record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.db.base import utcnow
from media_service.events.envelope import EVENT_ID_PATTERN
from media_service.events.models import OutboxMessage
from media_service.events.outbox import record_message
from media_service.ids import new_id
from media_service.jobs.registry import job_subject, validate_job_name


class InvalidJob(ValueError):
    """A message that is not a valid job: retrying it can never succeed."""


class JobMessage(BaseModel):
    """What travels on ``jobs.<job_type>``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: str = Field(pattern=EVENT_ID_PATTERN)
    job_type: str
    enqueued_at: AwareDatetime
    payload: dict[str, Any]

    @classmethod
    def parse(cls, data: bytes, job_type: str) -> JobMessage:
        try:
            message = cls.model_validate(orjson.loads(data))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            raise InvalidJob(f"not a job message: {exc}") from None
        if message.job_type != job_type:
            raise InvalidJob(f"a {message.job_type!r} job on the queue of {job_type!r}")
        return message


def new_job_id() -> str:
    return new_id("job")


async def enqueue(
    session: AsyncSession,
    job_name: str,
    payload: BaseModel | Mapping[str, Any],
    *,
    job_id: str | None = None,
    unqueued: bool = False,
) -> str:
    """Add job ``job_name`` to the outbox in the caller's transaction (never commits) and
    return its id. A job id already in the outbox is not added again; a job id already done
    is skipped by the worker, so a caller may pass a deterministic id (``renditions:file_…``)
    to make enqueueing idempotent. ``unqueued`` says the caller knows the id is not
    queued (derived from a row this transaction inserted, or just looked up), which skips
    that check."""
    validate_job_name(job_name)
    job_id = job_id or new_job_id()
    document = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else dict(payload)
    message = JobMessage(job_id=job_id, job_type=job_name, enqueued_at=utcnow(), payload=document)
    if not unqueued and await is_queued(session, job_id):
        return job_id
    record_message(session, "job", job_subject(job_name), message.model_dump(mode="json"), job_id)
    return job_id


async def is_queued(session: AsyncSession, job_id: str) -> bool:
    """Whether job ``job_id`` is in the outbox (pending in ``session`` or committed;
    the relay leaves published rows there until housekeeping purges them)."""
    pending = any(isinstance(row, OutboxMessage) and row.id == job_id for row in session.new)
    return pending or await session.get(OutboxMessage, job_id) is not None
