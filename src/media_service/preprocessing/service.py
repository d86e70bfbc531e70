"""Rules of the preprocessing engine.

The service is not bound to one request's transaction: rendering takes seconds, and on
SQLite an open transaction holds the database's write lock. It looks files up in short
transactions of its own, renders with none open, and writes results either in a short
transaction or (for jobs) in the session it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.audit.models import AuditResource
from media_service.audit.service import DetailValue
from media_service.auth.principal import Principal
from media_service.biometrics.consent import require_face_processing
from media_service.db.base import utcnow
from media_service.db.uow import unit_of_work
from media_service.errors import NotFound
from media_service.imaging.errors import ImagingError
from media_service.imaging.faces import Face
from media_service.imaging.limits import DecodeLimits
from media_service.imaging.specs import Fit, OutputFormat, Rendered, RenderSpec
from media_service.media.models import FileType, MediaFile
from media_service.media.remembered import served_key
from media_service.media.service import MediaService, SignedUrl, may_read, signed_path
from media_service.media.storage_keys import file_folder
from media_service.preprocessing import pipeline
from media_service.preprocessing.errors import NotReady, client_error
from media_service.preprocessing.models import MediaAnalysis, StoredRendition
from media_service.preprocessing.params import RenditionParams, cache_name
from media_service.preprocessing.repository import PreprocessingRepository
from media_service.preprocessing.sources import local_copy, put_bytes, read_all
from media_service.state import ServiceState
from media_service.storage import BlobNotFound
from media_service.versions.keys import rendition_folder
from media_service.versions.service import VersionService

log = structlog.get_logger(__name__)
T = TypeVar("T")

THUMBNAIL, PREVIEW = "thumbnail", "preview"
RENDITION_PATH = "/api/v1/media/files/{file_id}/rendition"
_KINDS = {FileType.IMAGE: pipeline.IMAGE, FileType.VIDEO: pipeline.VIDEO}
_ALPHA_TYPES = {"image/png", "image/gif", "image/webp", "image/avif", "image/heic", "image/heif"}


@dataclass(frozen=True, slots=True)
class RenditionBody:
    """Encoded bytes ready to serve."""

    data: bytes
    content_type: str
    etag: str


class PreprocessingService:
    """Renditions, posters, faces and crops of stored files."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.settings = state.settings
        self.blobs = state.blobs
        self.limits = DecodeLimits(max_pixels=state.settings.max_image_pixels)

    # -- which file ----------------------------------------------------------------------------

    async def visible_file(self, principal: Principal, file_id: str) -> MediaFile:
        """The file if ``principal`` may see it (404 otherwise).

        The record may be up to a second old (``state.recent_files``): renditions of one
        photo are asked for many times a second by frames, and its record rarely changes.
        """
        file = await self._remembered(file_id)
        if file is None or not may_read(principal, file):
            raise NotFound(f"no file {file_id[:60]!r}")
        return file

    async def _remembered(self, file_id: str) -> MediaFile | None:
        """The file's record, read at most once a second (``state.recent_files``)."""
        file: MediaFile | None = await self.state.recent_files.get_or_load(
            file_id, lambda: self._find(file_id)
        )
        return file

    async def _find(self, file_id: str) -> MediaFile | None:
        async with unit_of_work(self.state.read_sessions) as session:
            return await self._media(session).find(file_id)

    async def served(self, file: MediaFile, version: int | None) -> MediaFile:
        """What renditions of ``file`` are made from: its current version, or the version
        ``version`` names (remembered for a second, like the file record)."""
        served: MediaFile | None = await self.state.recent_files.get_or_load(
            served_key(file.file_id, version), lambda: self._served_now(file, version)
        )
        assert served is not None  # _served_now returns a file or raises
        return served

    async def _served_now(self, file: MediaFile, version: int | None) -> MediaFile:
        async with unit_of_work(self.state.read_sessions) as session:
            return await VersionService(session, self.state).served_file(file, version)

    async def signed_file(
        self, file_id: str, method: str, signed_path: str, query: dict[str, str]
    ) -> MediaFile:
        """The file a signed URL points to; the signature is the authorisation (checked on
        every request). Its record is remembered as :meth:`visible_file`'s is: frames
        fetch every photo they show through signed URLs."""
        signature = (query.get("exp"), query.get("kid"), query.get("sig"))
        self.state.signer.verify(method, signed_path, *signature)
        file = await self._remembered(file_id)
        if file is None:
            raise NotFound(f"no file {file_id[:60]!r}")
        return file

    async def sign_url(
        self,
        principal: Principal,
        file_id: str,
        path_and_query: str,
        expires_in: int | None,
        detail: Mapping[str, DetailValue] | None = None,
    ) -> SignedUrl:
        """A URL for a rendition that works without a token until it expires (a share,
        audited with ``detail``: hence a writing transaction)."""
        async with unit_of_work(self.state.sessions) as session:
            return await self._media(session).sign_url(
                principal,
                file_id,
                path_and_query,
                expires_in,
                resource=AuditResource.RENDITION,
                detail=detail,
            )

    def service_rendition_url(
        self, file_id: str, params: RenditionParams, lifetime: int, version: int | None = None
    ) -> str:
        """An absolute signed rendition URL for another service (no caller to check: the
        job asking is the authority). Needs ``MEDIA_PUBLIC_URL``. Of the photo's current
        version when it is fetched, or of ``version`` (which the signature then covers)."""
        if not self.settings.public_url:
            raise ValueError("MEDIA_PUBLIC_URL is needed for URLs handed to other services")
        path = f"{RENDITION_PATH.format(file_id=file_id)}?{rendition_query(params, version)}"
        signed = signed_path(self.state.signer, path, lifetime)
        return self.settings.public_url.rstrip("/") + signed.path_and_query

    # -- the job after an upload --------------------------------------------------------------

    def stored_specs(self) -> dict[str, RenderSpec]:
        """The renditions made for every file, by name."""
        settings = self.settings
        thumbnail = settings.thumbnail_size
        preview = settings.preview_size
        return {
            THUMBNAIL: RenderSpec(
                thumbnail, thumbnail, Fit.CONTAIN, OutputFormat.WEBP, settings.thumbnail_quality
            ),
            PREVIEW: RenderSpec(
                preview,
                preview,
                Fit.CONTAIN,
                OutputFormat.JPEG,
                settings.preview_quality,
                settings.preview_max_bytes,
            ),
        }

    async def file_for_job(self, file_id: str) -> MediaFile | None:
        """The file a job is about, or ``None`` if it was deleted meanwhile."""
        async with unit_of_work(self.state.read_sessions) as session:
            return await self._media(session).find(file_id)

    async def preprocess(self, file: MediaFile) -> pipeline.Preprocessed:
        """Decode the original once and store its renditions (and poster).

        Raises :class:`ImagingError` (not a client error: a job decides what it means).
        """
        specs = self.stored_specs()
        kind = _KINDS.get(file.file_type, pipeline.DOCUMENT)
        async with local_copy(self.blobs, file.storage_path, self._tmp_dir()) as path:
            outcome = await self.state.imaging.run(
                pipeline.preprocess,
                path,
                kind,
                list(specs.values()),
                self.limits,
                timeout=self.settings.render_timeout_seconds,
            )
        self._count("preprocess")
        for name, rendered in zip(specs, outcome.renditions, strict=True):
            await put_bytes(
                self.blobs, stored_key(file.file_id, name, rendered.format), rendered.data
            )
        if outcome.poster is not None:
            await put_bytes(self.blobs, poster_key(file.file_id), outcome.poster)
        return outcome

    async def record(
        self,
        session: AsyncSession,
        file: MediaFile,
        outcome: pipeline.Preprocessed,
        *,
        mark_processed: bool = True,
    ) -> bool:
        """Write what :meth:`preprocess` made (and mark the file processed), in ``session``.

        Returns False (and writes nothing) if the file was deleted meanwhile.
        """
        media = self._media(session)
        # Held until the end: the session's identity map keeps only what is referenced,
        # and a dropped row was read again by each of the two calls below.
        current = await media.find(file.file_id)
        if current is None:
            return False
        await media.set_dimensions(file.file_id, outcome.width, outcome.height)
        if mark_processed:
            await media.mark_processed(file.file_id)
        repository = PreprocessingRepository(session)
        for name, rendered in zip(self.stored_specs(), outcome.renditions, strict=True):
            await repository.save_rendition(_rendition_row(file, name, rendered))
        await repository.save_analysis(file.file_id, _analysis_values(file, outcome))
        return True

    async def record_failure(self, file: MediaFile, error: ImagingError) -> None:
        """Keep why the file could not be processed (shown with its analysis)."""
        async with unit_of_work(self.state.sessions) as session:
            if await self._media(session).find(file.file_id) is None:
                return
            await PreprocessingRepository(session).save_analysis(
                file.file_id,
                {"status": "failed", "error_code": error.code, "error": str(error)[:2000]},
            )

    # -- what was stored -----------------------------------------------------------------------

    async def describe(self, file: MediaFile) -> tuple[MediaAnalysis | None, list[StoredRendition]]:
        """The file's analysis and stored renditions (either may be missing)."""
        async with unit_of_work(self.state.read_sessions) as session:
            repository = PreprocessingRepository(session)
            analysis = await repository.analysis(file.file_id)
            return analysis, list(await repository.renditions(file.file_id))

    async def stored_preview(self, file: MediaFile) -> tuple[str, int, int] | None:
        """Where the file's preview is stored and the original's upright size (for
        measuring pixels without decoding the original again), if both are known."""
        async with unit_of_work(self.state.read_sessions) as session:
            repository = PreprocessingRepository(session)
            row = await repository.rendition(file.file_id, PREVIEW)
            analysis = await repository.analysis(file.file_id)
        if row is None or analysis is None or not (analysis.width and analysis.height):
            return None
        return row.storage_key, analysis.width, analysis.height

    async def stored_rendition(self, file: MediaFile, name: str) -> RenditionBody:
        """A named rendition's bytes; 409 while the file is not processed yet."""
        # Only the stored specs' names exist: refuse any other before it reaches a query
        # (a client's name with NUL was a 500 on PostgreSQL, which refuses NUL in text).
        if name not in self.stored_specs():
            raise NotFound(f"no rendition named {name[:40]!r}")
        folder = rendition_folder(file.file_id, file.storage_path)
        if folder != file_folder(file.file_id):
            return await self._version_rendition(file, folder, name)
        async with unit_of_work(self.state.read_sessions) as session:
            row = await PreprocessingRepository(session).rendition(file.file_id, name)
        if row is None:
            raise NotReady(f"the {name} of {file.file_id} is not made yet")
        data = await self._read_cached(row.storage_key)
        if data is None:
            raise NotReady(f"the {name} of {file.file_id} is being rewritten")
        return RenditionBody(data, row.content_type, f'"{file.sha256[:32]}-{name}-{row.quality}"')

    # -- on the fly ----------------------------------------------------------------------------

    async def rendition(
        self, file: MediaFile, params: RenditionParams, accept: str | None
    ) -> RenditionBody:
        """Render ``params`` (or read the stored result of an earlier identical request)."""
        spec = params.resolve(accept, has_alpha=file.content_type in _ALPHA_TYPES)
        name = cache_name(spec)
        key = f"{rendition_folder(file.file_id, file.storage_path)}renditions/custom/{name}"
        data = await self._read_cached(key)
        if data is None:
            source = await self._source_key(file)
            data = await self.state.flights.run(
                key, lambda: self._render_once(source, spec, key, "rendition")
            )
        return RenditionBody(data, spec.format.content_type, f'"{file.sha256[:32]}-{name}"')

    async def _version_rendition(self, file: MediaFile, folder: str, name: str) -> RenditionBody:
        """A version's thumbnail or preview: rendered on first ask, then kept in the
        version's folder (it goes with the version)."""
        spec = self.stored_specs()[name]  # a known name: stored_rendition checked it
        key = f"{folder}renditions/{name}{spec.format.extension}"
        data = await self._read_cached(key)
        if data is None:
            data = await self.state.flights.run(
                key, lambda: self._render_once(file.storage_path, spec, key, "rendition")
            )
        return RenditionBody(data, spec.format.content_type, f'"{file.sha256[:32]}-{name}"')

    # -- faces ---------------------------------------------------------------------------------

    async def faces(self, file: MediaFile) -> list[Face]:
        """The faces of an image, detected now if they were not yet (then kept).

        Raises :class:`FaceProcessingNotAllowed` when the file's owner withdrew consent.
        """
        async with unit_of_work(self.state.read_sessions) as session:
            await require_face_processing(session, file)
            if file.file_type is not FileType.IMAGE:
                return []
            analysis = await PreprocessingRepository(session).analysis(file.file_id)
        if analysis is not None and analysis.faces_detected_at is not None:
            return [Face.from_dict(item) for item in analysis.faces or []]
        faces: list[Face] = await self.state.flights.run(
            f"faces:{file.file_id}", lambda: self.detect_faces(file)
        )
        async with unit_of_work(self.state.sessions) as session:
            # Asked again: consent may have been withdrawn while the detector ran.
            await require_face_processing(session, file)
            await self.save_faces(session, file.file_id, faces)
        return faces

    async def detect_faces(self, file: MediaFile) -> list[Face]:
        """Run the face detector on the original (no database access)."""
        async with local_copy(self.blobs, file.storage_path, self._tmp_dir()) as path:
            faces = await self._run(pipeline.find_faces, path, self.limits)
        self._count("faces")
        return faces

    async def save_faces(self, session: AsyncSession, file_id: str, faces: list[Face]) -> None:
        """Keep detected faces with the file's analysis (creating the row if needed: the
        rest of the analysis is then ``pending`` until the preprocess job writes it)."""
        if await self._media(session).find(file_id) is None:
            return  # deleted meanwhile
        found = {"faces": [face.to_dict() for face in faces], "faces_detected_at": utcnow()}
        await PreprocessingRepository(session).save_analysis(
            file_id, found, created_with={"status": "pending"}
        )

    async def face_crop(
        self, file: MediaFile, index: int, size: int, fmt: OutputFormat
    ) -> RenditionBody:
        """The aligned square crop of face ``index`` (0-based, largest first)."""
        faces = await self.faces(file)
        if not 0 <= index < len(faces):
            raise NotFound(f"{file.file_id} has {len(faces)} face(s); there is no face {index}")
        face = faces[index]
        key = f"{faces_folder(file.file_id)}{index}-{size}{fmt.extension}"
        data = await self._read_cached(key)
        if data is None:
            data = await self.state.flights.run(
                key, lambda: self._crop_once(file.storage_path, face, size, fmt, key)
            )
        return RenditionBody(data, fmt.content_type, f'"{file.sha256[:32]}-face{index}-{size}"')

    async def forget_faces(self, session: AsyncSession, file_ids: Sequence[str]) -> int:
        """Clear the detected faces of ``file_ids`` in ``session``; how many files had
        some. (Their crops: :meth:`delete_face_crops`.)"""
        return await PreprocessingRepository(session).clear_faces(file_ids)

    async def delete_face_crops(self, file_id: str) -> int:
        """Delete the stored face crops of a file (and this process's copies of them);
        how many there were."""
        folder = faces_folder(file_id)
        deleted = 0
        async for info in self.blobs.list(folder):
            await self.blobs.delete(info.key)
            deleted += 1
        self.state.hot_objects.discard_prefix(folder)
        return deleted

    # -- helpers -------------------------------------------------------------------------------

    async def _render_once(self, source: str, spec: RenderSpec, key: str, kind: str) -> bytes:
        # Finished by a flight that ended while this request read the store: such a flight
        # left its result in memory (below), so no second read of the store is needed.
        cached = self.state.hot_objects.get(key)
        if cached is not None:
            return cached
        try:
            async with local_copy(self.blobs, source, self._tmp_dir()) as path:
                rendered: Rendered = await self._run(pipeline.render_one, path, spec, self.limits)
        except (BlobNotFound, FileNotFoundError):
            # Deleted after this process looked it up (records are remembered for a second).
            raise NotFound("the file or version was deleted meanwhile") from None
        self._count(kind)
        await put_bytes(self.blobs, key, rendered.data)
        self.state.hot_objects.put(key, rendered.data)  # the next request reads memory
        return rendered.data

    async def _crop_once(
        self, source: str, face: Face, size: int, fmt: OutputFormat, key: str
    ) -> bytes:
        cached = await self._read_cached(key)
        if cached is not None:
            return cached
        async with local_copy(self.blobs, source, self._tmp_dir()) as path:
            rendered: Rendered = await self._run(
                pipeline.face_crop, path, face, size, fmt, self.limits
            )
        self._count("face_crop")
        await put_bytes(self.blobs, key, rendered.data)
        return rendered.data

    async def _source_key(self, file: MediaFile) -> str:
        """What renditions are made from: the image itself, or a video's or PDF's poster."""
        if file.file_type is FileType.IMAGE:
            return file.storage_path
        async with unit_of_work(self.state.read_sessions) as session:
            analysis = await PreprocessingRepository(session).analysis(file.file_id)
        if analysis is None or analysis.poster_key is None:
            if analysis is not None and analysis.status == "failed":
                raise NotFound(f"{file.file_id} could not be processed: {analysis.error}")
            raise NotReady(f"the poster of {file.file_id} is not made yet")
        return analysis.poster_key

    async def _read_cached(self, key: str) -> bytes | None:
        """A stored object's bytes (from memory when recently served), or None."""
        data = self.state.hot_objects.get(key)
        if data is not None:
            return data
        try:
            data = await read_all(self.blobs, key)
        except BlobNotFound:
            return None
        self.state.hot_objects.put(key, data)
        return data

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self.state.imaging.run(
                fn, *args, timeout=self.settings.render_timeout_seconds
            )
        except ImagingError as exc:
            raise client_error(exc) from exc

    def _count(self, kind: str) -> None:
        self.state.render_counts[kind] += 1

    def _tmp_dir(self) -> Path:
        return self.settings.data_dir / "tmp"

    def _media(self, session: AsyncSession) -> MediaService:
        return MediaService(session, self.state)


def rendition_query(params: RenditionParams, version: int | None) -> str:
    """The query a signed rendition URL covers: the canonical parameters, then the
    version when one is named."""
    query = params.signed_query()
    return query if version is None else f"{query}&version={version}"


def stored_key(file_id: str, name: str, fmt: OutputFormat) -> str:
    """Where a named rendition is stored (under the file's folder, so it goes with it)."""
    return f"{file_folder(file_id)}renditions/{name}{fmt.extension}"


def faces_folder(file_id: str) -> str:
    """Where a file's face crops are stored (under its folder, so they go with it)."""
    return f"{file_folder(file_id)}faces/"


def poster_key(file_id: str) -> str:
    """Where a video's frame or a PDF's first page is stored."""
    return f"{file_folder(file_id)}poster"


def _rendition_row(file: MediaFile, name: str, rendered: Rendered) -> StoredRendition:
    return StoredRendition(
        file_id=file.file_id,
        name=name,
        storage_key=stored_key(file.file_id, name, rendered.format),
        content_type=rendered.content_type,
        width=rendered.width,
        height=rendered.height,
        byte_size=len(rendered.data),
        quality=rendered.quality,
        created_at=utcnow(),
    )


def _analysis_values(file: MediaFile, outcome: pipeline.Preprocessed) -> dict[str, Any]:
    """The preprocess job's columns of the analysis row (the faces are not among them)."""
    return {
        "status": "done",
        "error_code": None,
        "error": None,
        "source_format": outcome.source_format,
        "width": outcome.width,
        "height": outcome.height,
        "frames": outcome.frames,
        "orientation": outcome.orientation,
        "duration_seconds": outcome.duration_seconds,
        "video_codec": outcome.video_codec,
        "page_count": outcome.page_count,
        "poster_key": poster_key(file.file_id) if outcome.poster is not None else None,
    }
