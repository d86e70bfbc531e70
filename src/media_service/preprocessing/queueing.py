"""Queueing ``media.preprocess``: the job's name, its payload and how to enqueue it.

Kept apart from the job's handler (``preprocessing.jobs``), which needs the whole engine,
so that the upload path can queue the job in its own transaction without importing it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.jobs.queue import enqueue, is_queued

PREPROCESS = "media.preprocess"


class FileJob(BaseModel):
    """Which file a job is about (the organization lets its admins see a dead letter)."""

    file_id: str = Field(max_length=50)
    organization_id: str = Field(max_length=64)


def preprocess_job_id(file_id: str) -> str:
    """The job id of a file's preprocessing: one job per file, whoever queues it."""
    return f"preprocess-{file_id}"


async def enqueue_preprocessing(
    session: AsyncSession, file_id: str, organization_id: str, *, unqueued: bool = False
) -> None:
    """Queue the preprocessing of a file in ``session``'s transaction, once per file (the
    job id is derived from it: queueing it again adds nothing). ``unqueued``: the caller
    knows the job is not queued (the file's row was inserted in this transaction, or it
    just looked), which saves reading the outbox again."""
    payload = FileJob(file_id=file_id, organization_id=organization_id)
    job_id = preprocess_job_id(file_id)
    await enqueue(session, PREPROCESS, payload, job_id=job_id, unqueued=unqueued)


async def preprocessing_queued(session: AsyncSession, file_id: str) -> bool:
    """Whether the file's preprocessing is in the outbox already."""
    return await is_queued(session, preprocess_job_id(file_id))
