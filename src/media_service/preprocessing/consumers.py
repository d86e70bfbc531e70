"""``file.uploaded`` → queue the file's preprocessing.

Our own uploads queue the job already, in the upload's transaction (one relay pass less
between an upload and its renditions); for them this finds the job queued (read first: one
read instead of two) and adds nothing. An external storage service's events for files we
hold queue it here; an event about a file we do not hold changes nothing.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from media_service.events import FileUploaded, IdempotentConsumer, idempotent
from media_service.media.service import MediaService
from media_service.preprocessing.queueing import enqueue_preprocessing, preprocessing_queued
from media_service.state import ServiceState

PREPROCESS_CONSUMER = "media-preprocess-uploaded-files"


def preprocess_uploaded_files(state: ServiceState) -> IdempotentConsumer[FileUploaded]:
    """The consumer that queues ``media.preprocess`` for each uploaded file."""

    @idempotent(PREPROCESS_CONSUMER, FileUploaded)
    async def on_uploaded(session: AsyncSession, event: FileUploaded) -> None:
        if not state.settings.preprocess_uploads or await preprocessing_queued(
            session, event.file_id
        ):
            return
        media = MediaService(session, state)
        file = await media.find(event.file_id)
        if file is None:
            return  # not ours, or deleted since
        # Not queued: looked at above, in this transaction.
        await enqueue_preprocessing(session, file.file_id, file.organization_id, unqueued=True)

    return on_uploaded
