"""``media.analyse``: what the service learns from a photo by itself, then from the AI
service if one is configured; then the photo is processed.

The slow parts (decoding in the imaging pool, the AI service's answer) run before the
job's session is touched: on SQLite the first statement takes the write lock until the
commit.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import structlog

from media_service.biometrics.consent import face_processing_allowed
from media_service.db.uow import unit_of_work
from media_service.events.bus import RejectMessage
from media_service.imaging.errors import ImagingError
from media_service.imaging.limits import DecodeLimits
from media_service.jobs import JobContext, JobHandler, JobObsolete, job
from media_service.media.models import MediaFile
from media_service.media.service import MediaService
from media_service.metadata.ai import ask_analyzer
from media_service.metadata.pipeline import PhotoAnalysis, PixelSource, analyse_photo
from media_service.metadata.service import MetadataService
from media_service.preprocessing.errors import source_at_fault
from media_service.preprocessing.jobs import ANALYSE_PHOTO, POLICY, FileJob
from media_service.preprocessing.service import PreprocessingService
from media_service.preprocessing.sources import local_copy
from media_service.state import ServiceState

log = structlog.get_logger(__name__)

ENQUEUED = (ANALYSE_PHOTO,)


def metadata_jobs(state: ServiceState) -> list[JobHandler[Any]]:
    """The job handlers of this domain, bound to the running service."""

    @job(ANALYSE_PHOTO, FileJob, policy=POLICY)
    async def analyse(ctx: JobContext, payload: FileJob) -> None:
        file = await _file(state, payload.file_id)
        if file is None:
            raise JobObsolete(f"{payload.file_id} was deleted")
        analysis = await _measure(state, file, await _may_find_faces(state, file))
        answer = await ask_analyzer(state, file, analysis)
        if analysis.faces is not None and not await face_processing_allowed(ctx.session, file):
            analysis = replace(analysis, faces=None)  # consent withdrawn while measuring
        service = MetadataService(ctx.session, state)
        row = await service.record_analysis(file, analysis)
        if answer is not None:
            await service.apply_ai_results(row, answer.source, answer.lists)
        if analysis.faces is not None:
            await PreprocessingService(state).save_faces(ctx.session, file.file_id, analysis.faces)
        await MediaService(ctx.session, state).mark_processed(file.file_id)
        log.info("photo_analysed", file_id=file.file_id, faces=row.face_count)

    return [analyse]


async def _file(state: ServiceState, file_id: str) -> MediaFile | None:
    async with unit_of_work(state.sessions) as session:
        return await MediaService(session, state).find(file_id)


async def _may_find_faces(state: ServiceState, file: MediaFile) -> bool:
    """Whether to run face detection: configured, and allowed by the owner's consent (no
    detection at all otherwise: ``faces`` stays None, "not run")."""
    if not state.settings.detect_faces:
        return False
    async with unit_of_work(state.read_sessions) as session:
        return await face_processing_allowed(session, file)


async def _measure(state: ServiceState, file: MediaFile, find_faces: bool) -> PhotoAnalysis:
    settings = state.settings
    limits = DecodeLimits(max_pixels=settings.max_image_pixels)
    preview = await PreprocessingService(state).stored_preview(file)
    tmp = settings.data_dir / "tmp"
    try:
        async with contextlib.AsyncExitStack() as stack:
            original = await stack.enter_async_context(
                local_copy(state.blobs, file.storage_path, tmp)
            )
            source = PixelSource(original)
            if preview is not None:
                key, width, height = preview
                path = await stack.enter_async_context(local_copy(state.blobs, key, tmp))
                source = PixelSource(path, width, height)
            return await state.imaging.run(
                analyse_photo,
                original,
                source,
                limits,
                find_faces,
                settings.ocr,
                timeout=settings.render_timeout_seconds,
            )
    except ImagingError as exc:
        if not source_at_fault(exc):
            raise  # a crashed or stuck worker: retried
        raise RejectMessage(f"{file.file_id} cannot be analysed: {exc.code}: {exc}") from exc
