"""How the frame cache follows photos: ``media.version.created`` expires entries made from
another version than the photo's current one; ``file.deleted`` removes the photo's entries.

Making an older version current again publishes no event: the pre-cache run (and the
feed, which serves an entry only for the current version) notice that by themselves.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from media_service.events import FileDeleted, IdempotentConsumer, MediaVersionCreated, idempotent
from media_service.frames import cache
from media_service.ids import is_valid_id
from media_service.state import ServiceState

VERSIONS_CONSUMER = "media-frames-cache-versions"
DELETED_CONSUMER = "media-frames-cache-deleted-photos"


def invalidate_new_versions(state: ServiceState) -> IdempotentConsumer[MediaVersionCreated]:
    """The consumer that expires cache entries of a photo whose current version changed."""

    @idempotent(VERSIONS_CONSUMER, MediaVersionCreated)
    async def on_version_created(session: AsyncSession, event: MediaVersionCreated) -> None:
        if not is_valid_id(event.photo_id, "file"):
            return
        await cache.invalidate_versions(session, state.blobs, event.photo_id)

    return on_version_created


def forget_deleted_photos(state: ServiceState) -> IdempotentConsumer[FileDeleted]:
    """The consumer that removes a deleted photo's cache entries."""

    @idempotent(DELETED_CONSUMER, FileDeleted)
    async def on_file_deleted(session: AsyncSession, event: FileDeleted) -> None:
        if is_valid_id(event.file_id, "file"):
            await cache.forget_photo(session, state.blobs, event.file_id)

    return on_file_deleted
