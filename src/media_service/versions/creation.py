"""Making new versions: built-in modes rendered now, and edited files uploaded.

Slow work (decoding and encoding in the imaging pool, streaming an upload) runs with no
database transaction open, since on SQLite any transaction holds the write lock. Three
steps, as in the rendition endpoints: a short transaction checks access and finds the
source version; the bytes are stored under a new version's key; a second short
transaction records the row. If anything fails after the bytes were stored, they are
deleted, so no row ever points to missing bytes and no bytes outlive a failed request.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog
from pydantic import ValidationError

from media_service.audit.service import Actor
from media_service.auth.principal import Principal
from media_service.db.uow import unit_of_work
from media_service.errors import Conflict, Unprocessable, UnsupportedMediaType
from media_service.ids import new_id
from media_service.imaging.errors import ImagingError
from media_service.imaging.limits import DecodeLimits
from media_service.media.filenames import sanitize_file_name
from media_service.media.ingest import Ingest
from media_service.media.models import FileType
from media_service.media.sniff import Format
from media_service.media.upload_source import UploadSource
from media_service.preprocessing.errors import client_error
from media_service.preprocessing.sources import local_copy, put_bytes
from media_service.state import ServiceState
from media_service.storage import BlobNotFound
from media_service.versions import pipeline
from media_service.versions.keys import version_key
from media_service.versions.models import PhotoVersion, VersionType
from media_service.versions.modes import Edit, InvalidEdit, Mode
from media_service.versions.schemas import EditedFields, StyledVersionCreate
from media_service.versions.service import NewVersion, Source, VersionService

log = structlog.get_logger(__name__)
T = TypeVar("T")
EDITED_NAME = "Edited"


class SourceGone(Conflict):
    code = "source_version_gone"
    title = "The source version was deleted meanwhile"


@dataclass(frozen=True)
class StoredBytes:
    """Bytes stored under a version's key, and what they are."""

    key: str
    size: int
    sha256: str
    content_type: str
    width: int
    height: int


class VersionMaker:
    """Creates STYLED and EDITED versions for the API (and stores the AI job's result)."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.settings = state.settings
        self.blobs = state.blobs
        self.limits = DecodeLimits(max_pixels=state.settings.max_image_pixels)

    async def prepare(
        self, principal: Principal, photo_id: str, source_version_id: str | None
    ) -> Source:
        """Check access and find the source version, in a short transaction of its own."""
        async with unit_of_work(self.state.sessions) as session:
            return await VersionService(session, self.state).prepare(
                principal, photo_id, source_version_id
            )

    async def styled(
        self, principal: Principal, photo_id: str, request: StyledVersionCreate, edit: Edit
    ) -> PhotoVersion:
        """Render ``edit`` from the source version and record the result."""
        source = await self.prepare(principal, photo_id, request.source_version_id)
        version_id = new_id("ver")
        made = await self._render(source.version.storage_path, edit)
        stored = await self._store_made(version_key(source.photo.file_id, version_id), made)
        new = NewVersion(
            version_id=version_id,
            version_type=VersionType.STYLED,
            user_id=principal.subject,
            version_name=request.version_name or _mode_name(edit),
            processing_mode=edit.mode.value,
            processing_params=edit.params(),
            metadata=_derived_from(source),
            set_current=request.set_current,
            **_facts(stored),
        )
        return await self.record(source.photo.file_id, new, Actor.of(principal))

    async def edited(
        self, principal: Principal, photo_id: str, upload: UploadSource
    ) -> PhotoVersion:
        """Store an edited image uploaded as ``multipart/form-data`` as a new version."""
        source = await self.prepare(principal, photo_id, None)
        version_id = new_id("ver")
        key = version_key(source.photo.file_id, version_id)
        stored, fields = await self._stored_upload(key, upload)
        name = sanitize_file_name(upload.file_name, max_length=self.settings.max_file_name_length)
        new = NewVersion(
            version_id=version_id,
            version_type=VersionType.EDITED,
            user_id=principal.subject,
            version_name=fields.version_name or EDITED_NAME,
            metadata={**_derived_from(source), "uploaded_file_name": name},
            set_current=fields.set_current,
            **_facts(stored),
        )
        return await self.record(source.photo.file_id, new, Actor.of(principal))

    async def record(
        self, photo_id: str, new: NewVersion, actor: Actor | None = None
    ) -> PhotoVersion:
        """Record a version whose bytes are stored, in a short transaction (audited as a
        change by ``actor``); delete the bytes if that fails."""
        try:
            async with unit_of_work(self.state.sessions) as session:
                return await VersionService(session, self.state).add(photo_id, new, actor)
        except BaseException:
            await asyncio.shield(self.blobs.delete(new.storage_path))
            raise

    async def store_stream(self, key: str, chunks: AsyncIterator[bytes]) -> StoredBytes:
        """Stream an image into ``key`` (image formats only, the upload size limit) and
        prove it decodes. Raises the media errors (415, 413, 400) and the imaging errors;
        nothing stays stored when it raises."""
        ingest = Ingest(chunks, self._limit_for)
        try:
            await self.blobs.put(key, ingest.blocks())
            checked = await self.check(key)
        except BaseException:
            await asyncio.shield(self.blobs.delete(key))
            raise
        result = ingest.result
        assert result.format is not None
        return StoredBytes(key, result.size, result.sha256, result.format.content_type, *checked)

    async def check(self, key: str) -> tuple[int, int]:
        """Decode the stored image at ``key`` completely; its upright size. Raises the
        imaging errors."""
        async with local_copy(self.blobs, key, self._tmp_dir()) as path:
            checked = await self._pool(pipeline.check_image, path, self.limits)
        return checked.width, checked.height

    # -- helpers ------------------------------------------------------------------------------

    async def _stored_upload(
        self, key: str, upload: UploadSource
    ) -> tuple[StoredBytes, EditedFields]:
        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in upload.chunks():
                yield chunk
            await upload.finish()

        try:
            stored = await self.store_stream(key, chunks())
        except ImagingError as exc:
            raise client_error(exc) from exc
        try:
            return stored, EditedFields.model_validate(upload.fields)
        except ValidationError as exc:
            await self.blobs.delete(key)
            raise Unprocessable(
                "invalid form fields",
                errors=[{"loc": ["body", *e["loc"]], "msg": e["msg"]} for e in exc.errors()],
            ) from None

    async def _render(self, source_key: str, edit: Edit) -> pipeline.Made:
        try:
            async with local_copy(self.blobs, source_key, self._tmp_dir()) as path:
                made = await self._pool(pipeline.render_edit, path, edit, self.limits)
        except (BlobNotFound, FileNotFoundError):
            raise SourceGone("the source version was deleted while it was being rendered") from None
        except ImagingError as exc:
            raise client_error(exc) from exc
        except InvalidEdit as exc:
            raise Unprocessable(
                f"invalid {edit.mode.value} parameters: {exc.message}",
                errors=[{"loc": ["body", "processing_params", exc.field], "msg": exc.message}],
            ) from None
        self.state.render_counts["version"] += 1
        return made

    async def _store_made(self, key: str, made: pipeline.Made) -> StoredBytes:
        digest = await asyncio.to_thread(lambda: hashlib.sha256(made.data).hexdigest())
        await put_bytes(self.blobs, key, made.data)
        return StoredBytes(
            key, len(made.data), digest, made.format.content_type, made.width, made.height
        )

    def _limit_for(self, fmt: Format) -> int:
        if fmt.file_type is not FileType.IMAGE:
            raise UnsupportedMediaType(f"a version must be an image, not {fmt.content_type}")
        return self.settings.max_image_bytes

    async def _pool(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.state.imaging.run(fn, *args, timeout=self.settings.render_timeout_seconds)

    def _tmp_dir(self) -> Path:
        return self.settings.data_dir / "tmp"


def _facts(stored: StoredBytes) -> dict[str, Any]:
    return {
        "storage_path": stored.key,
        "file_size": stored.size,
        "sha256": stored.sha256,
        "content_type": stored.content_type,
        "width": stored.width,
        "height": stored.height,
    }


def _derived_from(source: Source) -> dict[str, Any]:
    """The version a new one was made from (kept as data: it may be deleted later)."""
    return {
        "source_version_id": source.version.version_id,
        "source_version_number": source.version.version_number,
    }


def _mode_name(edit: Edit) -> str:
    name = edit.mode.value.replace("_", " ").capitalize()
    if edit.mode is Mode.ROTATE:
        return f"{name} {edit.angle}°"
    return name
