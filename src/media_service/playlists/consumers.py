"""How playlists follow photos: ``media.metadata.updated`` re-checks the photo against the
smart playlists of its organization; ``file.deleted`` takes it out of every playlist."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from media_service.events import FileDeleted, IdempotentConsumer, MediaMetadataUpdated, idempotent
from media_service.ids import is_valid_id
from media_service.playlists.content import PlaylistContent
from media_service.playlists.smart import SmartPlaylists, SmartRuleCache
from media_service.state import ServiceState

SMART_CONSUMER = "media-playlists-smart-upkeep"
DELETED_CONSUMER = "media-playlists-deleted-photos"


def check_smart_playlists(state: ServiceState) -> IdempotentConsumer[MediaMetadataUpdated]:
    """The consumer that keeps smart playlists current as photos' metadata changes (its
    rule cache lives as long as the consumer)."""
    cache = SmartRuleCache()

    @idempotent(SMART_CONSUMER, MediaMetadataUpdated)
    async def on_metadata_updated(session: AsyncSession, event: MediaMetadataUpdated) -> None:
        if is_valid_id(event.file_id, "file"):  # not one of ours: not in any playlist
            await SmartPlaylists(session, state, cache).check_photo_matches_playlists(event.file_id)

    return on_metadata_updated


def leave_playlists(state: ServiceState) -> IdempotentConsumer[FileDeleted]:
    """The consumer that takes a deleted photo out of every playlist."""

    @idempotent(DELETED_CONSUMER, FileDeleted)
    async def on_file_deleted(session: AsyncSession, event: FileDeleted) -> None:
        if is_valid_id(event.file_id, "file"):
            await PlaylistContent(session, state).remove_deleted_photo(event.file_id)

    return on_file_deleted
