"""Durable background jobs: typed handlers, enqueued through the outbox, run by workers.

How a domain adds a job (say renditions, in ``renditions/jobs.py``)::

    RENDITIONS = "media.renditions"          # dot-separated a-z 0-9 '-' tokens

    class RenditionsPayload(BaseModel):
        file_id: str
        organization_id: str                 # lets admins see its dead letter

    @job(RENDITIONS, RenditionsPayload)
    async def make_renditions(ctx: JobContext, payload: RenditionsPayload) -> None:
        ...                                  # slow work first, then ctx.session writes

then lists ``make_renditions`` in ``runtime.domain_jobs()`` and ``RENDITIONS`` in
``runtime.ENQUEUED_JOBS`` (start-up fails if a listed type has no handler or two). To
enqueue, inside the unit of work of the change that causes the job::

    await enqueue(session, RENDITIONS, RenditionsPayload(...), job_id=f"renditions-{file_id}")

The job leaves only if that transaction commits (an outbox row, published by the relay on
``jobs.media.renditions``). A job id given twice is one job. The handler runs in its own
unit of work, committed together with the record that the job is done, so a redelivered job
changes nothing; it is retried with back-off when it raises and becomes a dead letter after
``max_deliver`` attempts (``media-service jobs failed`` / ``jobs retry ID``, or the admin API
``/api/v1/media/admin/dead-letters``). Raise ``RejectMessage`` for a job that can never
succeed, to dead-letter it at once.
"""

from media_service.jobs.dead_letters import DeadLetterService
from media_service.jobs.queue import InvalidJob, JobMessage, enqueue, new_job_id
from media_service.jobs.registry import (
    JobConfigurationError,
    JobContext,
    JobHandler,
    JobObsolete,
    JobRegistry,
    job,
    job_consumer,
    job_subject,
)
from media_service.jobs.worker import Worker

__all__ = [
    "DeadLetterService",
    "InvalidJob",
    "JobConfigurationError",
    "JobContext",
    "JobHandler",
    "JobMessage",
    "JobObsolete",
    "JobRegistry",
    "Worker",
    "enqueue",
    "job",
    "job_consumer",
    "job_subject",
    "new_job_id",
]
