"""Background jobs of the versions domain: ``media.version-enhance`` (see ``ai.py``)."""

from __future__ import annotations

from typing import Any

from media_service.jobs import JobContext, JobHandler, job
from media_service.state import ServiceState
from media_service.versions.ai import ENHANCE, POLICY, AiVersions, EnhanceJob

ENQUEUED = (ENHANCE,)


def version_jobs(state: ServiceState) -> list[JobHandler[Any]]:
    """The job handlers of this domain, bound to the running service."""

    @job(ENHANCE, EnhanceJob, policy=POLICY)
    async def enhance(ctx: JobContext, payload: EnhanceJob) -> None:
        await AiVersions(state).run(ctx.session, payload)

    return [enhance]
