"""``file.uploaded`` → an uploaded photo's original version (version 1, current) exists,
and ``media.version.created`` announces it.

The service creates the original lazily as well (before any version operation), so
photos stored before versions existed, or whose event is still on its way, work too;
whichever path inserts first wins (unique photo and number; the consumer then inserts
nothing). A file that is not an image, or one this service does not hold, changes nothing;
the photo is held while its original is inserted (a delete waits for the commit).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from media_service.events import FileUploaded, IdempotentConsumer, idempotent
from media_service.media.models import FileType
from media_service.state import ServiceState
from media_service.versions.service import VersionService

ORIGINALS_CONSUMER = "media-versions-uploaded-files"


def create_original_versions(state: ServiceState) -> IdempotentConsumer[FileUploaded]:
    """The consumer that records each uploaded photo's original version."""

    @idempotent(ORIGINALS_CONSUMER, FileUploaded)
    async def on_uploaded(session: AsyncSession, event: FileUploaded) -> None:
        service = VersionService(session, state)
        if event.file_type not in (None, FileType.IMAGE.value):
            return  # said by the event itself: no need to look
        file = await service.media.find(event.file_id, hold=True)
        if file is None or file.file_type is not FileType.IMAGE:
            return
        await service.record_original(file)

    return on_uploaded
