"""Export of a person's data: their originals and everything else held about them, as one
ZIP streamed to the caller.

The archive holds ``files/<file_id>/<file name>`` for every file the person owns (any
owner type but ClassSession: a class's photos belong to the class), the versions of their
photos under ``files/<file_id>/versions/``, and ``data.json``: the records of those files
with their full metadata (EXIF and location included: it is the person's own data) and
versions, the playlists they own with their items, their frames with rotation schedules
and cache entries, and their consent to face processing.

Everything but the bytes is read inside the request's transaction, through the domains'
services; the bytes are then streamed from the blob store entry by entry
(:class:`~media_service.privacy.export_zip.ZipStream`), so memory stays flat whatever
the size of the originals and no transaction stays open while they flow. ``data.json``
comes last, so that it can name an original whose bytes had gone missing meanwhile.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.audit.models import AuditAction, AuditResource
from media_service.audit.service import Actor, AuditTrail
from media_service.auth.principal import Principal, Role
from media_service.biometrics.service import BiometricsService
from media_service.db.base import utcnow
from media_service.errors import NotFound
from media_service.frames.cache import CacheService
from media_service.frames.cache_schemas import CacheOut
from media_service.frames.schemas import FrameOut, ScheduleOut
from media_service.frames.service import FrameService
from media_service.media.filenames import sanitize_file_name
from media_service.media.models import PERSONAL_OWNER_TYPES, FileType, MediaFile
from media_service.media.schemas import MediaFileOut
from media_service.media.service import MediaService
from media_service.metadata.schemas import MetadataOut
from media_service.metadata.service import MetadataService
from media_service.playlists.service import PlaylistService
from media_service.privacy.export_zip import ZipStream
from media_service.privacy.service import valid_user_id
from media_service.state import ServiceState
from media_service.storage import BlobNotFound, BlobStore
from media_service.versions.models import PhotoVersion, VersionType
from media_service.versions.schemas import VersionOut
from media_service.versions.service import VersionService
from media_service.versions.serving import version_view

log = structlog.get_logger(__name__)

DATA_FILE = "data.json"
FORMAT = "media-service-export/1"
_PEOPLE = (Role.ADMIN, Role.TEACHER, Role.STUDENT, Role.MEMBER)


@dataclass(frozen=True, slots=True)
class ArchiveMember:
    """One stored object that goes into the archive, and where."""

    path: str
    storage_path: str
    size: int
    modified_at: datetime


@dataclass
class PersonExport:
    """What the archive of one person holds, read and ready to stream."""

    user_id: str
    download_name: str
    created_at: datetime
    data: dict[str, Any]
    members: list[ArchiveMember] = field(default_factory=list)


def may_export(principal: Principal, user_id: str) -> bool:
    """Admins export anyone of their organization; a person exports themself."""
    return principal.has(Role.ADMIN) or (principal.subject == user_id and principal.has(*_PEOPLE))


class ExportService:
    """Gathers a person's data from every domain (inside the caller's unit of work)."""

    def __init__(self, session: AsyncSession, state: ServiceState) -> None:
        self.media = MediaService(session, state)
        self.metadata = MetadataService(session, state)
        self.versions = VersionService(session, state)
        self.playlists = PlaylistService(session, state)
        self.frames = FrameService(session, state)
        self.cache = CacheService(session, state)
        self.biometrics = BiometricsService(session, state)
        self.audit = AuditTrail(session)

    async def prepare(self, principal: Principal, user_id: str) -> PersonExport:
        """Everything ``user_id`` has in the caller's organization; 422 for a malformed
        id, 404 when the caller may not export this person."""
        valid_user_id(user_id)
        if not may_export(principal, user_id):
            raise NotFound(f"no user {user_id[:60]!r}")
        organization = principal.organization_id
        now = utcnow()
        personal = frozenset(PERSONAL_OWNER_TYPES)
        files = await self.media.files_of_person(organization, user_id, personal)
        for file in files:  # a student's media leave in the archive: that is a read
            self.audit.record(
                Actor.of(principal), AuditAction.READ, file, AuditResource.CONTENT,
                detail={"via": "export"},
            )  # fmt: skip
        records, members = await self._files(files)
        data = {
            "format": FORMAT,
            "user_id": user_id,
            "organization_id": organization,
            "exported_at": now.isoformat(),
            "exported_by": principal.subject,
            "files": records,
            "playlists": await self._playlists(organization, user_id),
            "frames": await self._frames(principal, organization, user_id),
            "consent": (await self.biometrics.consent(principal, user_id)).model_dump(
                mode="json", exclude={"cleared"}
            ),
        }
        log.info("person_export_prepared", files=len(files))
        name = f"media-export-{sanitize_file_name(user_id, max_length=64)}-{now:%Y%m%d}.zip"
        return PersonExport(user_id, name, now, data, members)

    async def _files(
        self, files: Sequence[MediaFile]
    ) -> tuple[list[dict[str, Any]], list[ArchiveMember]]:
        photo_ids = [file.file_id for file in files if file.file_type is FileType.IMAGE]
        metadata = {row.file_id: row for row in await self.metadata.of_files(photo_ids)}
        versions: dict[str, list[PhotoVersion]] = defaultdict(list)
        for version in await self.versions.of_photos(photo_ids):
            versions[version.photo_id].append(version)
        records: list[dict[str, Any]] = []
        members: list[ArchiveMember] = []
        for file in files:
            record, file_members = _file_record(
                file, metadata.get(file.file_id), versions[file.file_id]
            )
            records.append(record)
            members += file_members
        return records, members

    async def _playlists(self, organization: str, user_id: str) -> list[dict[str, Any]]:
        owned = await self.playlists.owned_by_person(organization, user_id)
        return [
            {
                **playlist.model_dump(mode="json"),
                "items": [item.model_dump(mode="json") for item in items],
            }
            for playlist, items in owned
        ]

    async def _frames(
        self, principal: Principal, organization: str, user_id: str
    ) -> list[dict[str, Any]]:
        found = []
        for frame in await self.frames.owned_by_person(organization, user_id):
            schedules = await self.frames.schedules_of(frame)
            entries = await self.cache.frame_entries(principal, frame.frame_id)
            found.append(
                {
                    **FrameOut.model_validate(frame).model_dump(mode="json"),
                    "schedules": [_dump(ScheduleOut, row) for row in schedules],
                    "cache": [_dump(CacheOut, row) for row in entries],
                }
            )
        return found


def _file_record(
    file: MediaFile, metadata: MetadataOut | None, versions: list[PhotoVersion]
) -> tuple[dict[str, Any], list[ArchiveMember]]:
    """The file's entry of ``data.json`` and the stored objects it brings along."""
    folder = f"files/{file.file_id}"
    original = ArchiveMember(
        f"{folder}/{sanitize_file_name(file.file_name)}",
        file.storage_path,
        file.file_size,
        file.uploaded_at,
    )
    members = [original]
    version_records = []
    for version in versions:
        record = VersionOut.of(version).model_dump(mode="json")
        if version.version_type is VersionType.ORIGINAL:
            record["archive_path"] = original.path  # the same bytes
        else:
            path = f"{folder}/versions/{version_view(file, version).file_name}"
            members.append(
                ArchiveMember(path, version.storage_path, version.file_size, version.created_at)
            )
            record["archive_path"] = path
        version_records.append(record)
    record = {
        **MediaFileOut.model_validate(file).model_dump(mode="json"),
        "archive_path": original.path,
        "metadata": metadata.model_dump(mode="json") if metadata else None,
        "versions": version_records,
    }
    return record, members


def _dump(schema: type[ScheduleOut] | type[CacheOut], row: object) -> dict[str, Any]:
    return schema.model_validate(row).model_dump(mode="json")


# -- the archive -------------------------------------------------------------------------------


async def archive_stream(export: PersonExport, blobs: BlobStore) -> AsyncIterator[bytes]:
    """The ZIP of ``export``: its stored objects read from ``blobs`` chunk by chunk, then
    ``data.json``. An object gone since the records were read is left out and named in
    ``data.json`` (``missing``)."""
    archive = ZipStream()
    missing: list[str] = []
    for member in export.members:
        chunks = blobs.get(member.storage_path)
        try:
            first = await anext(chunks, b"")
        except BlobNotFound:
            log.warning("export_object_missing", path=member.path)
            missing.append(member.path)
            continue
        async for data in archive.entry(
            member.path, member.modified_at, _prepended(first, chunks), member.size
        ):
            if data:
                yield data
    document = {**export.data, "missing": missing}
    yield archive.small_entry(
        DATA_FILE, export.created_at, orjson.dumps(document, option=orjson.OPT_INDENT_2)
    )
    yield archive.finish()
    log.info("person_exported", objects=len(export.members))


async def _prepended(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk
