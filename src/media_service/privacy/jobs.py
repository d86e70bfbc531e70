"""The ``media.erase-person`` job: an erasure carried out by whichever worker takes it.

The payload is the erasure's id (and organization, for admins' view of dead letters),
never the person's: job messages and their dead letters outlive the erasure.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from media_service.events import DeliveryPolicy
from media_service.jobs import JobContext, JobHandler, enqueue, job
from media_service.privacy.erasure import ErasureRun
from media_service.privacy.models import Erasure
from media_service.privacy.schemas import ErasePersonJob
from media_service.state import ServiceState

ERASE_PERSON = "media.erase-person"
ENQUEUED = (ERASE_PERSON,)
# An erasure of a person with many files takes minutes; batches commit as they go, so a
# run cut short (timeout, crash) resumes where it stopped when the job comes back.
POLICY = DeliveryPolicy(max_deliver=10, backoff=(5.0, 30.0, 120.0, 600.0), handler_timeout=900.0)


async def request_erasure(session: AsyncSession, erasure: Erasure, attempt: int = 0) -> None:
    """Enqueue the job that carries out ``erasure`` (leaves with the caller's commit);
    ``attempt`` tells a later job for the same erasure from the first (whose id the bus
    and the workers remember as done or dead)."""
    payload = ErasePersonJob(erasure_id=erasure.erasure_id, organization_id=erasure.organization_id)
    job_id = f"erase-{erasure.erasure_id}" + (f"-{attempt}" if attempt else "")
    await enqueue(session, ERASE_PERSON, payload, job_id=job_id)


def privacy_jobs(state: ServiceState) -> list[JobHandler[Any]]:
    """The job handlers of the privacy domain, bound to the running service."""

    @job(ERASE_PERSON, ErasePersonJob, policy=POLICY)
    async def erase_person(ctx: JobContext, payload: ErasePersonJob) -> None:
        # Works in short transactions of its own; ctx.session only records the job done.
        await ErasureRun(state).run(payload.erasure_id)

    return [erase_person]
