"""Background jobs of the preprocessing engine.

``media.preprocess`` (one per upload): renditions, poster, ``media_analysis``. Videos and
documents are then processed; a photo is handed on to ``media.analyse`` (the metadata
domain: EXIF, quality, colours, faces, labels), which marks it processed when it is done
(or, with ``MEDIA_ANALYSE_PHOTOS=false``, it is processed here). A file that cannot be
decoded fails its job at once (a dead letter naming the reason, and
``media_analysis.status = failed``); a crashed or timed-out worker is retried.
"""

from __future__ import annotations

from typing import Any

import structlog

from media_service.events.bus import DeliveryPolicy, RejectMessage
from media_service.imaging.errors import ImagingError
from media_service.jobs import JobContext, JobHandler, JobObsolete, enqueue, job
from media_service.media.models import FileType, MediaFile
from media_service.preprocessing.errors import source_at_fault
from media_service.preprocessing.queueing import PREPROCESS, FileJob, enqueue_preprocessing
from media_service.preprocessing.service import PreprocessingService
from media_service.state import ServiceState

log = structlog.get_logger(__name__)

__all__ = ["ANALYSE_PHOTO", "POLICY", "PREPROCESS", "FileJob", "enqueue_preprocessing"]

ANALYSE_PHOTO = "media.analyse"  # handled by the metadata domain (metadata/jobs.py)

# Decoding can take a while on a busy machine; the worker's timeout is per attempt.
POLICY = DeliveryPolicy(handler_timeout=300.0, max_in_flight=4)
# media.preprocess: one job per lane, and one lane more than the imaging pool has
# workers. As a job finishes, the next one is already waiting in the pool, so its workers
# do not sit idle while a lane settles and claims (nor while the rest of a batch ends).
PREPROCESS_POLICY = DeliveryPolicy(handler_timeout=300.0, max_in_flight=1)


def preprocessing_jobs(state: ServiceState) -> list[JobHandler[Any]]:
    """The job handlers of this domain, bound to the running service."""

    @job(PREPROCESS, FileJob, policy=PREPROCESS_POLICY, lanes=state.imaging.workers + 1)
    async def preprocess(ctx: JobContext, payload: FileJob) -> None:
        service = PreprocessingService(state)
        file = await service.file_for_job(payload.file_id)
        if file is None:
            raise JobObsolete(f"{payload.file_id} was deleted")
        try:
            outcome = await service.preprocess(file)  # slow: before touching ctx.session
        except ImagingError as exc:
            if not source_at_fault(exc):
                raise  # a crashed or stuck worker: retried with back-off
            await service.record_failure(file, exc)
            log.warning("preprocess_failed", file_id=file.file_id, code=exc.code)
            reason = f"{file.file_id} cannot be processed: {exc.code}: {exc}"
            raise RejectMessage(reason) from exc
        hand_on = _analysed_later(state, file)
        if not await service.record(ctx.session, file, outcome, mark_processed=not hand_on):
            raise JobObsolete(f"{file.file_id} was deleted while it was processed")
        if hand_on:
            await enqueue(ctx.session, ANALYSE_PHOTO, payload, job_id=f"analyse-{file.file_id}")
        log.info("file_preprocessed", file_id=file.file_id, kind=outcome.kind)

    return [preprocess]


def _analysed_later(state: ServiceState, file: MediaFile) -> bool:
    return state.settings.analyse_photos and file.file_type is FileType.IMAGE
