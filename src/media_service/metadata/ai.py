"""Asking the external AI service (if one is configured) about a photo.

The service fetches the photo itself through a short-lived signed rendition URL (1024 px
JPEG, no metadata), so it needs ``MEDIA_PUBLIC_URL``. Its failures never fail the
analysis: the photo keeps what the service measured itself, and the AI service may still
``PUT`` its results later.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import structlog

from media_service.imaging.specs import Fit
from media_service.media.models import MediaFile
from media_service.metadata.analyzer import (
    AnalysisRequest,
    Analyzer,
    AnalyzerRejected,
    AnalyzerUnavailable,
    analyzer_from_settings,
)
from media_service.metadata.pipeline import PhotoAnalysis
from media_service.preprocessing.params import RenditionParams
from media_service.preprocessing.service import PreprocessingService
from media_service.state import ServiceState

log = structlog.get_logger(__name__)

# What the AI service downloads: a 1024 px JPEG rendition, no metadata.
IMAGE = RenditionParams(1024, 1024, Fit.CONTAIN, "jpeg", None)
URL_LIFETIME = 600  # seconds the AI service has to fetch the photo


@dataclass(frozen=True)
class AiAnswer:
    """The AI service's lists, named as the metadata columns, and their source."""

    source: str
    lists: dict[str, list[str]]


AI_ANALYSIS = "ai_analysis"  # the duration of one call to the AI service


async def ask_analyzer(
    state: ServiceState, file: MediaFile, analysis: PhotoAnalysis
) -> AiAnswer | None:
    """The AI service's labels, objects and scenes, or None (none configured, or it failed)."""
    settings = state.settings
    if not settings.ai_service_url:
        return None
    if not settings.public_url:
        log.warning("ai_service_skipped", reason="MEDIA_PUBLIC_URL is not set")
        return None
    token = settings.ai_service_token.get_secret_value() if settings.ai_service_token else None
    analyzer = shared_analyzer(settings.ai_service_url, token, settings.ai_service_timeout_seconds)
    request = AnalysisRequest(
        file_id=file.file_id,
        organization_id=file.organization_id,
        user_id=file.owner_id,
        image_url=PreprocessingService(state).service_rendition_url(
            file.file_id, IMAGE, URL_LIFETIME
        ),
        width=analysis.pixels.width,
        height=analysis.pixels.height,
    )
    try:
        with state.observations.timed(AI_ANALYSIS):
            result = await analyzer.analyse(request)
    except (AnalyzerUnavailable, AnalyzerRejected) as exc:
        log.warning("ai_service_failed", file_id=file.file_id, error=str(exc))
        return None
    if result is None:
        return None
    return AiAnswer(
        source=result.model,
        lists={
            "ai_labels": [label.name for label in result.labels],
            "ai_objects": [label.name for label in result.objects],
            "ai_scenes": [label.name for label in result.scenes],
        },
    )


@functools.cache
def shared_analyzer(url: str, token: str | None, timeout: float) -> Analyzer:
    """One client (and one circuit breaker) per process and configuration."""
    return analyzer_from_settings(url, token, timeout)
