"""What is in a playlist: filled from criteria or by curation, counted, announced.

Shared by the API's service and the event consumers. Every photo a playlist shows is one
its owner may see (``visible``): smart and curated playlists are filled through the owner's
eyes, and reading joins every item to its file under the owner's visibility, so an item
whose file is gone, or that the owner can no longer see, is neither shown nor counted.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Principal
from media_service.db.base import utcnow
from media_service.events import MediaPlaylistUpdated, record_event
from media_service.media.service import MediaService
from media_service.metadata import compiler
from media_service.metadata.criteria import Criteria
from media_service.metadata.models import PhotoMetadata
from media_service.playlists import curation
from media_service.playlists.explain import uses_private_fields
from media_service.playlists.models import Playlist
from media_service.playlists.policy import owner_of
from media_service.playlists.repository import PlaylistRepository
from media_service.playlists.schemas import CurationGoal
from media_service.state import ServiceState

log = structlog.get_logger(__name__)

Condition = ColumnElement[bool]
# Curation looks at the best photos by quality, enough of them to find variety.
POOL_PER_PICK = 20
MIN_POOL = 2000
MAX_POOL = 20_000


class PlaylistContent:
    """Fills, counts and announces playlists inside the caller's unit of work."""

    def __init__(self, session: AsyncSession, state: ServiceState) -> None:
        self.session = session
        self.repository = PlaylistRepository(session)
        self.media = MediaService(session, state)

    def visible(self, playlist: Playlist) -> Condition:
        """SQL over ``media_files`` for the photos ``playlist`` may show."""
        return self.media.readable_clause(owner_of(playlist))

    def photo_conditions(self, owner: Principal, criteria: Criteria) -> list[Condition]:
        """The photos ``owner`` may see that meet ``criteria`` (over ``photo_metadata``
        joined to ``media_files``): the rules of the metadata query, with the owner as
        the caller."""
        conditions = [
            self.media.readable_clause(owner),
            # Implied by the line above; restated on photo_metadata for its indexes.
            PhotoMetadata.organization_id == owner.organization_id,
        ]
        if self.media.reads_only_own(owner):
            conditions.append(PhotoMetadata.user_id == owner.subject)
        if uses_private_fields(criteria) and not self.media.private_implied(owner):
            conditions.append(self.media.private_clause(owner))
        return conditions + compiler.compile_where(criteria, self.repository.dialect)

    # -- filling ---------------------------------------------------------------------------------

    async def refill_smart(self, playlist: Playlist) -> bool:
        """Evaluate a smart playlist over all the owner's photos: remove what no longer
        matches, add what does. Call after ``bump_generation``. Whether anything changed."""
        criteria = Criteria.model_validate(playlist.smart_criteria)
        conditions = self.photo_conditions(owner_of(playlist), criteria)
        playlist_id = playlist.playlist_id
        if not await self.repository.item_count(playlist_id):
            # Empty (a new playlist): one INSERT … SELECT, nothing leaves the database.
            added = await self.repository.fill(playlist_id, conditions)
            log.info("smart_playlist_filled", playlist_id=playlist_id, added=added)
            return bool(added)
        # Otherwise the difference, worked out here: two plain reads instead of two
        # anti-joins, whose plans go wrong on a playlist too new to have statistics.
        wanted = await self.repository.matching(conditions)
        held = set(await self.repository.item_ids(playlist_id))
        removed, new = sorted(held - wanted), sorted(wanted - held)
        await self.repository.delete_items(playlist_id, removed)
        await self.repository.insert_items(
            [{"playlist_id": playlist_id, "file_id": file_id} for file_id in new]
        )
        log.info("smart_playlist_evaluated", playlist_id=playlist_id, added=len(new),
                 removed=len(removed))  # fmt: skip
        return bool(new or removed)

    async def curate(self, playlist: Playlist) -> bool:
        """Choose the photos of an AI-curated playlist afresh; whether they changed."""
        now = utcnow()
        stored: dict[str, Any] = playlist.curation or {}
        goal = CurationGoal.model_validate(stored.get("goal", {}))
        since, until = window(goal, now)
        conditions = self.photo_conditions(owner_of(playlist), goal.criteria or Criteria())
        if since is not None:
            conditions.append(PhotoMetadata.photo_taken_at >= since)
        if until is not None:
            conditions.append(PhotoMetadata.photo_taken_at < until)
        pool = min(max(goal.count * POOL_PER_PICK, MIN_POOL), MAX_POOL)
        rows = await self.repository.candidates(conditions, pool)
        candidates = [
            curation.candidate(
                file_id=row.file_id,
                quality=row.quality_score,
                phash=row.perceptual_hash,
                taken=row.photo_taken_at,
                location_name=row.location_name,
                latitude=row.latitude,
                longitude=row.longitude,
                face_count=row.face_count,
            )
            for row in rows
        ]
        # Pure CPU over up to MAX_POOL photos: off the event loop.
        picks = await asyncio.to_thread(
            curation.curate, candidates, goal.count, goal.duplicate_distance
        )
        playlist.curation = {**stored, "curated_at": now.isoformat()}
        before = await self.repository.item_ids(playlist.playlist_id)
        # Rewritten even when the same photos come out: their reasons may have moved.
        await self.repository.clear(playlist.playlist_id)
        await self.repository.insert_items(
            [
                {
                    "playlist_id": playlist.playlist_id,
                    "file_id": pick.file_id,
                    "position": pick.rank,
                    "reason": pick.reason,
                }
                for pick in picks
            ]
        )
        return before != [pick.file_id for pick in picks]

    async def remove_deleted_photo(self, file_id: str) -> list[str]:
        """Take a deleted photo out of every playlist and announce each one it left."""
        playlist_ids = await self.repository.delete_file_everywhere(file_id)
        await self.announce(await self.repository.get_many(playlist_ids))
        return playlist_ids

    # -- counting and announcing -------------------------------------------------------------------

    async def counts(self, playlists: list[Playlist]) -> dict[str, int]:
        """Photos each playlist shows: one query per distinct owner."""
        by_owner: dict[tuple[str, str, tuple[str, ...]], list[Playlist]] = defaultdict(list)
        for playlist in playlists:
            key = (playlist.user_id, playlist.organization_id, tuple(playlist.owner_roles or ()))
            by_owner[key].append(playlist)
        counts: dict[str, int] = {}
        for group in by_owner.values():
            ids = [playlist.playlist_id for playlist in group]
            counts.update(await self.repository.counts(ids, self.visible(group[0])))
        return counts

    async def announce(self, playlists: list[Playlist]) -> None:
        """Record ``media.playlist.updated`` for each playlist, with its photo count, in the
        caller's transaction."""
        if not playlists:
            return
        counts = await self.counts(playlists)
        for playlist in playlists:
            record_event(
                self.session,
                MediaPlaylistUpdated(
                    playlist_id=playlist.playlist_id,
                    user_id=playlist.user_id,
                    photo_count=counts.get(playlist.playlist_id, 0),
                    playlist_type=playlist.playlist_type.value,
                    organization_id=playlist.organization_id,
                ),
            )


def window(goal: CurationGoal, now: datetime) -> tuple[datetime | None, datetime | None]:
    """The capture-time window of a curation goal, resolved at ``now``."""
    if goal.last_days is not None:
        return now - timedelta(days=goal.last_days), None
    return goal.since, goal.until
