"""AI_ENHANCED versions: requested over the API, made by the ``media.version-enhance`` job.

The request checks access and enqueues the job in one transaction, and answers 202 with
the id the version will have. The job asks the AI service (``enhancer.py``) for an
enhanced image of the source version, streams the answer into storage, proves that it
decodes, and records it under that id (then ``media.version.created`` is published).
A job delivered twice stores the same key twice and records one row: the job's "done"
record commits with the row.
"""

from __future__ import annotations

from typing import Any

import structlog
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Principal
from media_service.db.uow import on_rollback, unit_of_work
from media_service.errors import MediaError, NotFound
from media_service.events.bus import DeliveryPolicy, RejectMessage
from media_service.ids import new_id
from media_service.imaging.errors import ImagingError
from media_service.jobs import JobObsolete, enqueue
from media_service.media.service import MediaService, signed_path
from media_service.metadata.analyzer import AnalyzerRejected
from media_service.preprocessing.errors import source_at_fault
from media_service.state import ServiceState
from media_service.versions.creation import StoredBytes, VersionMaker
from media_service.versions.enhancer import Enhancer, EnhanceRequest, shared_enhancer
from media_service.versions.keys import version_key
from media_service.versions.models import PhotoVersion, VersionType
from media_service.versions.repository import VersionRepository
from media_service.versions.schemas import FILES_PATH, AiVersionCreate, VersionRequested
from media_service.versions.service import NewVersion, VersionService

log = structlog.get_logger(__name__)

ENHANCE = "media.version-enhance"
AI_NAME = "AI enhanced"
URL_LIFETIME = 900  # seconds the AI service has to fetch the source
# The AI service may take a while; each attempt is bounded, retries back off.
POLICY = DeliveryPolicy(handler_timeout=300.0, max_in_flight=4)


class AiNotConfigured(MediaError):
    status = 503
    code = "ai_service_not_configured"
    title = "No AI service is configured"


class EnhanceJob(BaseModel):
    """One AI-enhanced version to make (``organization_id`` lets admins see its dead
    letter)."""

    photo_id: str = Field(max_length=50)
    organization_id: str = Field(max_length=64)
    version_id: str = Field(max_length=50)  # the id the new version gets
    source_version_id: str = Field(max_length=50)
    user_id: str = Field(max_length=128)
    version_name: str | None = Field(default=None, max_length=255)
    processing_mode: str = Field(max_length=64)
    processing_params: dict[str, Any] = Field(default_factory=dict)
    set_current: bool = False


class AiVersions:
    """AI-enhanced versions: the request, and the job that makes them."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.settings = state.settings
        self.maker = VersionMaker(state)

    async def request(
        self, principal: Principal, photo_id: str, body: AiVersionCreate
    ) -> VersionRequested:
        """Queue an enhancement of the source version (the current one unless named)."""
        async with unit_of_work(self.state.sessions) as session:
            source = await VersionService(session, self.state).prepare(
                principal, photo_id, body.source_version_id
            )
            self._require_configured()  # after the access check: 404 before 503
            payload = EnhanceJob(
                photo_id=source.photo.file_id,
                organization_id=source.photo.organization_id,
                version_id=new_id("ver"),
                source_version_id=source.version.version_id,
                user_id=principal.subject,
                version_name=body.version_name,
                processing_mode=body.processing_mode,
                processing_params=body.processing_params,
                set_current=body.set_current,
            )
            job_id = f"enhance-{payload.version_id}"
            await enqueue(session, ENHANCE, payload, job_id=job_id)
        log.info("ai_version_requested", photo_id=payload.photo_id, version_id=payload.version_id)
        return VersionRequested(
            version_id=payload.version_id,
            photo_id=payload.photo_id,
            version_type=VersionType.AI_ENHANCED,
            job_id=job_id,
        )

    async def run(self, session: AsyncSession, payload: EnhanceJob) -> None:
        """The job: ask, store, check, record (``session`` is the job's unit of work)."""
        source = await self._source(payload)
        if source is None:
            raise JobObsolete(f"the photo of {payload.version_id} was deleted")
        stored = await self._enhanced(payload, source)
        if stored is None:
            return
        key = stored.key
        blobs = self.state.blobs
        on_rollback(session, lambda: blobs.delete(key))
        try:
            await VersionService(session, self.state).add(payload.photo_id, _new(payload, stored))
        except NotFound:
            await blobs.delete(key)  # the photo went meanwhile: nothing to record
        except MediaError as exc:  # e.g. too many versions: retrying cannot help
            raise RejectMessage(f"{payload.version_id} cannot be recorded: {exc.detail}") from exc

    # -- helpers ------------------------------------------------------------------------------

    def _require_configured(self) -> None:
        if not self.settings.ai_service_url:
            raise AiNotConfigured(
                "AI-enhanced versions need an AI service: set MEDIA_AI_SERVICE_URL"
            )
        if not self.settings.public_url:
            raise AiNotConfigured(
                "the AI service fetches the photo from this service: set MEDIA_PUBLIC_URL"
            )

    async def _source(self, payload: EnhanceJob) -> PhotoVersion | None:
        async with unit_of_work(self.state.read_sessions) as session:
            media = MediaService(session, self.state)
            if await media.find(payload.photo_id) is None:
                return None
            repository = VersionRepository(session)
            return await repository.get(payload.photo_id, payload.source_version_id)

    async def _enhanced(self, payload: EnhanceJob, source: PhotoVersion) -> StoredBytes | None:
        """The AI service's image, stored and checked; None when it declined."""
        request = self._request(payload, source)
        key = version_key(payload.photo_id, payload.version_id)
        try:
            async with self._enhancer().enhance(request) as body:
                if body is None:
                    log.info("ai_version_declined", version_id=payload.version_id)
                    return None
                return await self.maker.store_stream(key, body)
        except AnalyzerRejected as exc:
            raise RejectMessage(f"the AI service refused {payload.version_id}: {exc}") from exc
        except ImagingError as exc:
            if not source_at_fault(exc):
                raise  # a crashed or stuck worker: retried
            raise RejectMessage(f"the AI service's image cannot be used: {exc}") from exc
        except MediaError as exc:  # not an image, too large, empty
            raise RejectMessage(f"the AI service's answer is not usable: {exc.detail}") from exc

    def _request(self, payload: EnhanceJob, source: PhotoVersion) -> EnhanceRequest:
        path = f"{FILES_PATH}/{payload.photo_id}/content?version={source.version_number}"
        signed = signed_path(self.state.signer, path, URL_LIFETIME)
        assert self.settings.public_url  # checked when the job was requested
        return EnhanceRequest(
            photo_id=payload.photo_id,
            version_id=source.version_id,
            organization_id=payload.organization_id,
            user_id=payload.user_id,
            image_url=self.settings.public_url.rstrip("/") + signed.path_and_query,
            width=source.width,
            height=source.height,
            mode=payload.processing_mode,
            params=payload.processing_params,
        )

    def _enhancer(self) -> Enhancer:
        settings = self.settings
        if not settings.ai_service_url:
            raise RejectMessage("MEDIA_AI_SERVICE_URL was unset after the job was queued")
        token = settings.ai_service_token.get_secret_value() if settings.ai_service_token else None
        return shared_enhancer(settings.ai_service_url, token, settings.ai_service_timeout_seconds)


def _new(payload: EnhanceJob, stored: StoredBytes) -> NewVersion:
    return NewVersion(
        version_id=payload.version_id,
        version_type=VersionType.AI_ENHANCED,
        user_id=payload.user_id,
        version_name=payload.version_name or AI_NAME,
        storage_path=stored.key,
        file_size=stored.size,
        content_type=stored.content_type,
        sha256=stored.sha256,
        width=stored.width,
        height=stored.height,
        processing_mode=payload.processing_mode,
        processing_params=payload.processing_params,
        metadata={"source_version_id": payload.source_version_id},
        set_current=payload.set_current,
    )
