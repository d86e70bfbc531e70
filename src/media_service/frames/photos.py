"""SQL over the playlists' and versions' tables for what a frame shows: a playlist's
photos as its owner may see them, each with its current version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.media.models import FileType, MediaFile
from media_service.metadata.models import PhotoMetadata
from media_service.playlists.models import Playlist, PlaylistItem
from media_service.versions.models import PhotoVersion

MAX_FRAME_PHOTOS = 10_000  # a frame's cycle; larger playlists show their first photos


@dataclass(frozen=True, slots=True)
class PhotoRow:
    """One photo of a playlist as a frame needs it."""

    photo_id: str
    position: int
    added_at: datetime
    taken_at: datetime | None
    version_id: str | None
    version_number: int | None


class PlaylistPhotos:
    """Reads playlists for frames (the playlists domain owns the tables)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def playlist(self, playlist_id: str) -> Playlist | None:
        return await self.session.get(Playlist, playlist_id)

    async def photos(self, playlist_id: str, visible: ColumnElement[bool]) -> list[PhotoRow]:
        """The playlist's image items whose file exists and satisfies ``visible``."""
        statement = (
            select(
                PlaylistItem.file_id,
                PlaylistItem.position,
                PlaylistItem.added_at,
                PhotoMetadata.photo_taken_at,
                PhotoVersion.version_id,
                PhotoVersion.version_number,
            )
            .join(MediaFile, MediaFile.file_id == PlaylistItem.file_id)
            .outerjoin(PhotoMetadata, PhotoMetadata.file_id == PlaylistItem.file_id)
            .outerjoin(
                PhotoVersion,
                and_(PhotoVersion.photo_id == PlaylistItem.file_id, PhotoVersion.is_current),
            )
            .where(
                PlaylistItem.playlist_id == playlist_id,
                MediaFile.file_type == FileType.IMAGE,
                visible,
            )
            .order_by(PlaylistItem.position, PlaylistItem.file_id)
            .limit(MAX_FRAME_PHOTOS)
        )
        return [PhotoRow(*row) for row in (await self.session.execute(statement)).all()]
