"""How the media domain reacts to events, whoever published them.

``file.deleted`` removes everything stored under the file's folder. It runs the same for
our own deletes (the row is already gone) and for an external storage service's event
about a file we still hold (the row goes first, in this transaction, and the objects
after the commit, so no row ever points to a missing object).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from media_service.db.uow import after_commit
from media_service.events import FileDeleted, IdempotentConsumer, idempotent
from media_service.ids import is_valid_id
from media_service.media.repository import MediaFileRepository
from media_service.media.storage_keys import file_folder
from media_service.storage import BlobStore

PURGE_CONSUMER = "media-purge-deleted-files"


def purge_deleted_files(blobs: BlobStore) -> IdempotentConsumer[FileDeleted]:
    """The consumer that removes a deleted file's stored objects."""

    # One event per transaction: deleting a folder of objects should not hold up others.
    @idempotent(PURGE_CONSUMER, FileDeleted, max_batch=1)
    async def purge(session: AsyncSession, event: FileDeleted) -> None:
        if not is_valid_id(event.file_id, "file"):
            return  # not one of ours: nothing of it is stored here
        repository = MediaFileRepository(session)
        file = await repository.get(event.file_id)
        folder = file_folder(event.file_id)
        if file is not None:
            await repository.delete(file)
            after_commit(session, lambda: delete_folder(blobs, folder))
            return
        await delete_folder(blobs, folder)

    return purge


async def delete_folder(blobs: BlobStore, folder: str) -> None:
    """Delete every object under ``folder`` (idempotent)."""
    async for info in blobs.list(folder):
        await blobs.delete(info.key)
