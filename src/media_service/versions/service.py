"""Rules of the versions domain: who sees and changes a photo's versions, which one is
current, and which bytes a download or a rendition serves.

The service works inside the caller's unit of work and never commits. Changes to one
photo's versions lock the photo's file row first, so that concurrent requests run one
after the other; the partial unique index ``uq_photo_versions_current`` guarantees that
no interleaving can leave two current versions, and every switch happens in one
transaction, so no reader ever sees none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.audit.models import AuditAction, AuditResource
from media_service.audit.service import Actor, AuditTrail
from media_service.auth.principal import Principal
from media_service.db.base import utcnow
from media_service.db.uow import Hook, after_commit
from media_service.errors import Conflict, Forbidden, NotFound
from media_service.events import MediaVersionCreated, record_event
from media_service.ids import is_valid_id, new_id
from media_service.media.consumers import delete_folder
from media_service.media.models import FileType, MediaFile
from media_service.media.remembered import forget_file_after_commit
from media_service.media.service import MediaService, may_write
from media_service.state import ServiceState
from media_service.versions.keys import version_folder
from media_service.versions.models import PhotoVersion, VersionType
from media_service.versions.repository import VersionRepository
from media_service.versions.serving import version_view

log = structlog.get_logger(__name__)

MAX_VERSIONS = 50  # per photo: each one is a full-size image in storage
ORIGINAL_NAME = "Original"


class OriginalVersion(Conflict):
    code = "original_version"
    title = "The original version goes only with the photo itself"


class TooManyVersions(Conflict):
    code = "too_many_versions"
    title = f"A photo has at most {MAX_VERSIONS} versions"


@dataclass(frozen=True)
class Source:
    """A photo and the version a new one is made from."""

    photo: MediaFile
    version: PhotoVersion


@dataclass(frozen=True)
class NewVersion:
    """A version whose bytes are stored, waiting for its row."""

    version_id: str
    version_type: VersionType
    user_id: str
    version_name: str
    storage_path: str
    file_size: int
    content_type: str
    sha256: str
    width: int | None
    height: int | None
    processing_mode: str | None = None
    processing_params: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    set_current: bool = False


class VersionService:
    """A photo's versions as the API, the jobs and the consumers see them."""

    def __init__(self, session: AsyncSession, state: ServiceState) -> None:
        self.session = session
        self.state = state
        self.repository = VersionRepository(session)
        self.media = MediaService(session, state)
        self.audit = AuditTrail(session)

    # -- read ---------------------------------------------------------------------------------

    async def list(self, principal: Principal, photo_id: str) -> list[PhotoVersion]:
        """Every version of a photo the caller may see, oldest first."""
        photo = await self.readable_photo(principal, photo_id)
        await self.ensure_original(photo)
        versions = list(await self.repository.list(photo.file_id))
        self._audit(Actor.of(principal), AuditAction.READ, photo, photo.file_id, "list")
        return versions

    async def get(self, principal: Principal, photo_id: str, version_id: str) -> PhotoVersion:
        """One version of a photo the caller may see."""
        photo = await self.readable_photo(principal, photo_id)
        await self.ensure_original(photo)
        version = await self._version(photo, version_id)
        self._audit(Actor.of(principal), AuditAction.READ, photo, version.version_id, "get")
        return version

    async def existing_ids(self, version_ids: Sequence[str]) -> set[str]:
        """Which of ``version_ids`` still exist (for garbage collection, no access check)."""
        return await self.repository.existing_ids(version_ids)

    async def of_photos(self, photo_ids: Sequence[str]) -> Sequence[PhotoVersion]:
        """The version rows of ``photo_ids``, by photo and number, as stored (a photo
        whose original row was not made yet has none): for the export of a person's own
        data (callers check who asks)."""
        return await self.repository.list_many(photo_ids)

    async def readable_photo(self, principal: Principal, photo_id: str) -> MediaFile:
        """The photo if the caller may see it (404 otherwise, also for non-images)."""
        file = await self.media.get(principal, photo_id)
        if file.file_type is not FileType.IMAGE:
            raise NotFound(f"{file.file_id} is a {file.file_type.value.lower()}, not a photo")
        return file

    async def writable_photo(self, principal: Principal, photo_id: str) -> MediaFile:
        """The photo if the caller may change it: 404 if it may not see it, 403 if it
        may see but not change it (the rules of the file itself)."""
        photo = await self.readable_photo(principal, photo_id)
        if not may_write(principal, photo):
            raise Forbidden("you may see this photo but not change its versions")
        return photo

    async def served_file(self, file: MediaFile, number: int | None) -> MediaFile:
        """What a download or a rendition of ``file`` serves: version ``number``, or the
        current version when none is named. A version other than the original comes back
        as a detached copy of ``file`` describing the version's bytes (never added to a
        session). A file without version rows is its own version 1."""
        if file.file_type is not FileType.IMAGE:
            if number not in (None, 1):
                raise NotFound(f"{file.file_id} has no versions")
            return file
        if number is None:
            version = await self.repository.current(file.file_id)
        else:
            version = await self.repository.by_number(file.file_id, number)
        if version is None and number not in (None, 1):
            raise NotFound(f"{file.file_id} has no version {number}")
        if version is None or version.version_type is VersionType.ORIGINAL:
            return file
        return version_view(file, version)

    # -- change -------------------------------------------------------------------------------

    async def prepare(
        self, principal: Principal, photo_id: str, source_version_id: str | None
    ) -> Source:
        """Check that the caller may add a version, and find the version to start from
        (the current one unless named)."""
        photo = await self.writable_photo(principal, photo_id)
        current = await self.ensure_current(photo)
        if await self.repository.count(photo.file_id) >= MAX_VERSIONS:
            raise TooManyVersions()
        if source_version_id is None:
            return Source(photo, current)
        return Source(photo, await self._version(photo, source_version_id))

    async def add(self, photo_id: str, new: NewVersion, actor: Actor | None = None) -> PhotoVersion:
        """Record a version whose bytes are stored, publish ``media.version.created``, and
        make it current if asked (audited as a change by ``actor``, by default the user
        in ``new``). 404 when the photo was deleted meanwhile."""
        photo = await self._locked(photo_id)
        await self.ensure_original(photo)
        if await self.repository.count(photo.file_id) >= MAX_VERSIONS:
            raise TooManyVersions()
        version = PhotoVersion(
            version_id=new.version_id,
            photo_id=photo.file_id,
            user_id=new.user_id,
            organization_id=photo.organization_id,
            version_name=new.version_name,
            version_type=new.version_type,
            processing_mode=new.processing_mode,
            file_id=photo.file_id,
            storage_path=new.storage_path,
            file_size=new.file_size,
            content_type=new.content_type,
            sha256=new.sha256,
            width=new.width,
            height=new.height,
            processing_params=new.processing_params,
            version_metadata=new.metadata,
            is_current=False,
            version_number=await self.repository.next_number(photo.file_id),
        )
        await self.repository.add(version)
        if new.set_current:
            await self._make_current(version)
        self._announce(version)
        self._audit(
            actor or Actor(new.user_id), AuditAction.CHANGE, photo, version.version_id, "create"
        )
        log.info("photo_version_created", version_id=version.version_id, type=version.version_type)
        return version

    async def set_current(
        self, principal: Principal, photo_id: str, version_id: str
    ) -> PhotoVersion:
        """Make a version the photo's current one (atomically: one transaction)."""
        photo = await self.writable_photo(principal, photo_id)
        await self._locked(photo.file_id)
        await self.ensure_original(photo)
        version = await self._version(photo, version_id)
        await self._make_current(version)
        self._audit(
            Actor.of(principal), AuditAction.CHANGE, photo, version.version_id, "set_current"
        )
        return version

    async def delete(self, principal: Principal, photo_id: str, version_id: str) -> None:
        """Delete a version other than the original; the original becomes current again if
        the deleted one was. Its bytes go after the commit."""
        photo = await self.writable_photo(principal, photo_id)
        await self._locked(photo.file_id)
        original = await self.ensure_original(photo)
        version = await self._version(photo, version_id)
        if version.version_type is VersionType.ORIGINAL:
            raise OriginalVersion("delete the photo itself to remove its original")
        was_current = version.is_current
        await self.repository.delete(version)
        if was_current:
            original.is_current = True
            original.updated_at = utcnow()
            await self.session.flush()
        self._forget_served(photo.file_id)
        self._audit(Actor.of(principal), AuditAction.CHANGE, photo, version.version_id, "delete")
        after_commit(self.session, self._deleter(version_folder(photo.file_id, version_id)))
        log.info("photo_version_deleted", version_id=version.version_id, photo_id=photo.file_id)

    async def ensure_original(self, photo: MediaFile) -> PhotoVersion:
        """The photo's original version, created (current, and announced) if it does not
        exist yet: photos stored before versions existed, or whose ``file.uploaded`` has
        not been handled yet. Safe under concurrency: one creation wins."""
        existing = await self.repository.original(photo.file_id)
        if existing is not None:
            return existing
        original = _original_of(photo)
        if await self.repository.add_original(original):
            self._announce(original)
            return original
        found = await self.repository.original(photo.file_id)
        if found is None:  # the insert broke the foreign key: the photo was just deleted
            raise NotFound(f"no photo {photo.file_id}")
        return found

    async def record_original(self, photo: MediaFile) -> None:
        """:meth:`ensure_original` for the upload's consumer, which needs no row back: the
        original and its counter inserted unless present (one statement each, no read
        first), announced only if this call made it."""
        original = _original_of(photo)
        if await self.repository.insert_original(original):
            self._announce(original)

    async def ensure_current(self, photo: MediaFile) -> PhotoVersion:
        """The photo's current version (the original, if nothing else was made current)."""
        original = await self.ensure_original(photo)
        current = await self.repository.current(photo.file_id)
        return current if current is not None else original

    # -- helpers ------------------------------------------------------------------------------

    async def _version(self, photo: MediaFile, version_id: str) -> PhotoVersion:
        version = None
        if is_valid_id(version_id, "ver"):
            version = await self.repository.get(photo.file_id, version_id)
        if version is None:
            raise NotFound(f"{photo.file_id} has no version {version_id[:60]!r}")
        return version

    async def _locked(self, photo_id: str) -> MediaFile:
        if not await self.repository.lock_photo(photo_id):
            raise NotFound(f"no photo {photo_id}")
        photo = await self.media.find(photo_id)
        assert photo is not None  # locked: it cannot go before the transaction ends
        return photo

    async def _make_current(self, version: PhotoVersion) -> None:
        # Clear first, then set, each flushed: the unique index is checked per statement.
        if version.is_current:
            return
        previous = await self.repository.current(version.photo_id)
        now = utcnow()
        if previous is not None:
            previous.is_current = False
            previous.updated_at = now
            await self.session.flush()
        version.is_current = True
        version.updated_at = now
        await self.session.flush()
        self._forget_served(version.photo_id)

    def _audit(
        self, actor: Actor, action: AuditAction, photo: MediaFile, resource_id: str, operation: str
    ) -> None:
        # In the caller's transaction: a version change that rolls back leaves no row.
        detail = {"operation": operation}
        self.audit.record(
            actor, action, photo, AuditResource.VERSION, resource_id=resource_id, detail=detail
        )

    def _forget_served(self, photo_id: str) -> None:
        # This process's renditions path remembers what it served for a second.
        forget_file_after_commit(self.session, self.state.recent_files, photo_id)

    def _deleter(self, folder: str) -> Hook:
        state = self.state

        async def delete() -> None:
            state.hot_objects.discard_prefix(folder)
            await delete_folder(state.blobs, folder)

        return delete

    def _announce(self, version: PhotoVersion) -> None:
        event = MediaVersionCreated(
            photo_id=version.photo_id,
            version_id=version.version_id,
            version_type=version.version_type.value,
            user_id=version.user_id,
            file_id=version.file_id,
            organization_id=version.organization_id,
        )
        record_event(self.session, event)


def _original_of(photo: MediaFile) -> PhotoVersion:
    return PhotoVersion(
        version_id=new_id("ver"),
        photo_id=photo.file_id,
        user_id=photo.uploaded_by,
        organization_id=photo.organization_id,
        version_name=ORIGINAL_NAME,
        version_type=VersionType.ORIGINAL,
        processing_mode=None,
        file_id=photo.file_id,
        storage_path=photo.storage_path,
        file_size=photo.file_size,
        content_type=photo.content_type,
        sha256=photo.sha256,
        width=photo.width,
        height=photo.height,
        processing_params={},
        version_metadata={},
        is_current=True,
        version_number=1,
    )
