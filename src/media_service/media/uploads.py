"""Storing a new file: stream, check, de-duplicate, record.

Blob writes happen before the row exists: the bytes are streamed (sniffed, size-limited,
hashed) into storage under a generated key, then the row, the idempotency key, the
``file.uploaded`` event and the ``media.preprocess`` job are added in the caller's
transaction. A compensation deletes the blob if that transaction rolls back, and ``gc``
removes whatever a crash left behind.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Principal
from media_service.config import Settings
from media_service.db.uow import after_commit, on_rollback
from media_service.errors import (
    AlreadyStored,
    ChecksumMismatch,
    Forbidden,
    MediaError,
    Unprocessable,
)
from media_service.events import FileUploaded, record_event
from media_service.ids import new_id
from media_service.media import policy
from media_service.media.filenames import sanitize_file_name
from media_service.media.ingest import Ingest, IngestResult, normalise_sha256
from media_service.media.models import FileType, IdempotencyKey, MediaFile, OwnerType
from media_service.media.probe import probe_dimensions
from media_service.media.repository import MediaFileRepository
from media_service.media.schemas import UploadFields
from media_service.media.sniff import Format
from media_service.media.storage_keys import storage_key
from media_service.media.upload_source import UploadSource
from media_service.preprocessing.queueing import enqueue_preprocessing
from media_service.storage import BlobStore

log = structlog.get_logger(__name__)


class IdempotencyKeyReused(Unprocessable):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used with a different request"


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    """The stored file and how it came about."""

    file: MediaFile
    created: bool  # False: the same bytes were already stored for this owner
    replayed: bool = False  # True: answered from an earlier request with the same key
    status_code: int = 201


class UploadService:
    """Uploads as the API and the importer see them."""

    def __init__(self, session: AsyncSession, blobs: BlobStore, settings: Settings) -> None:
        self.session = session
        self.repository = MediaFileRepository(session)
        self.blobs = blobs
        self.settings = settings

    async def upload(
        self,
        principal: Principal,
        source: UploadSource,
        *,
        idempotency_key: str | None = None,
        expected_sha256: str | None = None,
    ) -> UploadOutcome:
        """Stream ``source`` into storage and record it; see README "Uploading"."""
        file_id = new_id("file")
        key = storage_key(file_id)
        ingest = Ingest(self._checked_early(principal, source), self._limit_for)
        try:
            await self.blobs.put(key, ingest.blocks())
            await source.finish()
            owner_type, owner_id = self._resolve_owner(principal, source.fields)
            form_checksum = source.fields.get("sha256")
            if expected_sha256 is None and form_checksum:
                expected_sha256 = normalise_sha256(form_checksum)
            _verify_checksum(ingest.result, expected_sha256)
            dimensions = await asyncio.to_thread(
                probe_dimensions,
                _format(ingest.result),
                ingest.result.head,
                complete=ingest.result.complete_in_head,
                max_pixels=self.settings.max_image_pixels,
            )
        except BaseException:
            await asyncio.shield(self.blobs.delete(key))
            raise
        on_rollback(self.session, lambda: self.blobs.delete(key))
        file = MediaFile(
            file_id=file_id,
            organization_id=principal.organization_id,
            owner_id=owner_id,
            owner_type=owner_type,
            uploaded_by=principal.subject,
            file_name=self._file_name(source),
            file_type=_format(ingest.result).file_type,
            content_type=_format(ingest.result).content_type,
            file_size=ingest.result.size,
            sha256=ingest.result.sha256,
            storage_path=key,
            width=dimensions.width if dimensions else None,
            height=dimensions.height if dimensions else None,
        )
        return await self._record(principal, file, idempotency_key)

    def _checked_early(self, principal: Principal, source: UploadSource) -> AsyncIterator[bytes]:
        """The source's chunks, after refusing the upload up front when the owner fields
        are already known (query string, or form fields before the file) and not allowed:
        no point storing a gigabyte that will be refused."""

        async def chunks() -> AsyncIterator[bytes]:
            first = True
            async for chunk in source.chunks():
                if first and {"owner_type", "owner_id"} & source.fields.keys():
                    self._resolve_owner(principal, source.fields)
                first = False
                yield chunk

        return chunks()

    def _limit_for(self, fmt: Format) -> int:
        return {
            FileType.IMAGE: self.settings.max_image_bytes,
            FileType.VIDEO: self.settings.max_video_bytes,
            FileType.DOCUMENT: self.settings.max_document_bytes,
        }[fmt.file_type]

    def _resolve_owner(self, principal: Principal, raw: dict[str, str]) -> tuple[OwnerType, str]:
        try:
            fields = UploadFields.model_validate(raw)
        except ValidationError as exc:
            raise Unprocessable(
                "invalid upload fields",
                errors=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()],
            ) from None
        default = policy.default_owner(principal)
        owner_type = fields.owner_type or (default[0] if default else None)
        if owner_type is None:
            raise Unprocessable("owner_type is required for this caller")
        owner_id = fields.owner_id or (default[1] if default and default[0] == owner_type else None)
        if owner_id is None:
            raise Unprocessable("owner_id is required for this owner_type")
        if not policy.can_upload_for(principal, owner_type, owner_id):
            raise Forbidden(f"you may not upload files for this {owner_type.value}")
        return owner_type, owner_id

    def _file_name(self, source: UploadSource) -> str:
        raw = source.fields.get("file_name") or source.file_name
        return sanitize_file_name(raw, max_length=self.settings.max_file_name_length)

    async def _record(
        self, principal: Principal, file: MediaFile, idempotency_key: str | None
    ) -> UploadOutcome:
        fingerprint = _fingerprint(file)
        if idempotency_key:
            earlier = await self._replay(principal, idempotency_key, fingerprint, file.storage_path)
            if earlier is not None:
                return earlier
        outcome = await self._insert_or_reuse(principal, file)
        if idempotency_key:
            row = IdempotencyKey(
                organization_id=principal.organization_id,
                principal_id=principal.subject,
                key=idempotency_key,
                request_fingerprint=fingerprint,
                file_id=outcome.file.file_id,
                status_code=outcome.status_code,
            )
            if not await self.repository.add_idempotency_key(row):
                # A concurrent request with the same key won; answer as it did.
                earlier = await self._replay(
                    principal, idempotency_key, fingerprint, file.storage_path
                )
                if earlier is not None:
                    return earlier
        return outcome

    async def _insert_or_reuse(self, principal: Principal, file: MediaFile) -> UploadOutcome:
        if await self.repository.add(file):
            record_event(self.session, _uploaded_event(file))
            if self.settings.preprocess_uploads:
                # Queued with the event rather than by its consumer: both leave in the
                # same relay pass (the consumer then finds the job queued).
                await enqueue_preprocessing(
                    self.session, file.file_id, file.organization_id, unqueued=True
                )
            log.info(
                "file_stored", file_id=file.file_id, size=file.file_size, type=file.content_type
            )
            return UploadOutcome(file, created=True)
        existing = await self.repository.find_duplicate(
            file.organization_id, file.owner_type, file.owner_id, file.sha256
        )
        if existing is None:  # pragma: no cover - the only unique key is the duplicate one
            raise MediaError("could not store the file")
        self._discard_after_commit(file.storage_path)
        if not policy.read_visibility(principal).allows(existing):
            # Someone else stored these bytes for this owner; don't hand over their record.
            raise AlreadyStored()
        return UploadOutcome(existing, created=False, status_code=200)

    async def _replay(
        self, principal: Principal, key: str, fingerprint: str, new_blob: str
    ) -> UploadOutcome | None:
        row = await self.repository.get_idempotency_key(
            principal.organization_id, principal.subject, key
        )
        if row is None:
            return None
        if row.request_fingerprint != fingerprint:
            raise IdempotencyKeyReused()
        file = await self.repository.get_visible(row.file_id, policy.read_visibility(principal))
        if file is None:
            raise Unprocessable(
                "the file created with this Idempotency-Key has since been deleted or moved"
            )
        self._discard_after_commit(new_blob)
        return UploadOutcome(file, created=False, replayed=True, status_code=row.status_code)

    def _discard_after_commit(self, key: str) -> None:
        """The new blob turned out to be a copy of a stored one: drop it."""
        after_commit(self.session, lambda: self.blobs.delete(key))


def _uploaded_event(file: MediaFile) -> FileUploaded:
    return FileUploaded(
        file_id=file.file_id,
        user_id=file.uploaded_by,
        organization_id=file.organization_id,
        owner_id=file.owner_id,
        owner_type=file.owner_type.value,
        file_type=file.file_type.value,
        content_type=file.content_type,
        file_size=file.file_size,
        sha256=file.sha256,
    )


def _format(result: IngestResult) -> Format:
    assert result.format is not None  # set by the first block, or the upload failed
    return result.format


def _verify_checksum(result: IngestResult, expected: str | None) -> None:
    if expected is not None and expected.lower() != result.sha256:
        raise ChecksumMismatch(f"received bytes have SHA-256 {result.sha256}")


def _fingerprint(file: MediaFile) -> str:
    """What makes two requests "the same" for an Idempotency-Key."""
    parts = [file.owner_type, file.owner_id, file.file_name, file.sha256]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
