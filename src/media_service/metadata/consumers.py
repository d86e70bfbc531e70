"""``file.uploaded`` → the photo's metadata record exists at once (spec 003, consumed
events), empty until ``media.analyse`` fills it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from media_service.events import FileUploaded, IdempotentConsumer, idempotent
from media_service.metadata.service import MetadataService
from media_service.state import ServiceState

METADATA_CONSUMER = "media-metadata-uploaded-files"


def create_metadata_records(state: ServiceState) -> IdempotentConsumer[FileUploaded]:
    """The consumer that creates a ``photo_metadata`` row for each uploaded photo."""

    @idempotent(METADATA_CONSUMER, FileUploaded)
    async def on_uploaded(session: AsyncSession, event: FileUploaded) -> None:
        service = MetadataService(session, state)
        file = await service.media.find(event.file_id, hold=True)
        if file is not None:  # not ours, or deleted since
            await service.create_missing_record(file)

    return on_uploaded
