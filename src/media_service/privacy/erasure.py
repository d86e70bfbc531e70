"""Carrying out an erasure: the steps, each idempotent, each in short transactions.

1. ``playlists``: the person's playlists and their items go (first, so that no later
   event about a deleted photo announces a playlist of theirs).
2. ``frames``: their frames, with schedules, cache entries and cached files.
3. ``files``: every file they own (not a class session's), a batch per transaction,
   through the media domain's own delete: the row goes with its versions, metadata,
   renditions and analysis (foreign-key cascades) and ``file.deleted`` is recorded, naming
   the erasure as the actor. In the same transaction the photo leaves other people's
   playlists and frame caches, which the ``file.deleted`` consumers would do a moment
   later; done here, the erasure's end means the work is done.
4. ``references``: rows that stay but named the person name their pseudonym; every
   forgetter of :mod:`media_service.privacy.forgetters` runs.
5. ``objects``: wait (bounded) for the purge consumer to empty every erased file's
   folder, then delete what is left directly.
6. ``events``: event history, dead letters and the bus's stored messages that mention the
   person or anything of theirs are deleted (the erasure's own ``file.deleted`` stays).

Then the erasure is ``done``: its row names the person by pseudonym only. A crash at any
point leaves committed batches committed (with their counts); running again finishes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.db.base import utcnow
from media_service.db.uow import unit_of_work
from media_service.errors import NotFound
from media_service.events.scrub import Mentions, chunks, forget_history
from media_service.frames import cache
from media_service.frames.cache import CacheService
from media_service.frames.schedules import ScheduleService
from media_service.frames.service import FrameService
from media_service.media.consumers import delete_folder
from media_service.media.models import PERSONAL_OWNER_TYPES, MediaFile
from media_service.media.schemas import ListFilters
from media_service.media.service import MediaService
from media_service.media.storage_keys import file_folder
from media_service.playlists.content import PlaylistContent
from media_service.playlists.schemas import PlaylistSummary
from media_service.playlists.service import PlaylistService
from media_service.privacy.forgetters import FORGETTERS, Forgetter
from media_service.privacy.models import Erasure, ErasureStatus
from media_service.privacy.policy import actor, seen_as
from media_service.privacy.references import (
    FILE_KEY,
    FRAME_KEY,
    PLAYLIST_KEY,
    ReferenceRepository,
)
from media_service.privacy.repository import ErasureRepository
from media_service.state import ServiceState

log = structlog.get_logger(__name__)

STEPS = ("playlists", "frames", "files", "references", "objects", "events")
Progress = Callable[[str, Mapping[str, int]], None]


@dataclass(frozen=True, slots=True)
class ErasureOptions:
    """``batch_size`` items per transaction; ``purge_wait`` seconds for the purge consumer
    to empty the erased folders before the erasure deletes what is left itself."""

    batch_size: int = 50
    purge_wait: float = 30.0
    poll_interval: float = 0.2


@dataclass(frozen=True, slots=True)
class Subject:
    """Whom one running erasure is about."""

    erasure_id: str
    organization_id: str
    user_id: str
    pseudonym: str


class ErasureRun:
    """Runs (or resumes) one erasure to the end."""

    def __init__(
        self,
        state: ServiceState,
        options: ErasureOptions | None = None,
        *,
        progress: Progress | None = None,
        forgetters: Mapping[str, Forgetter] = FORGETTERS,
    ) -> None:
        self.state = state
        self.options = options or ErasureOptions()
        self.progress = progress
        self.forgetters = forgetters
        self._steps: dict[str, Callable[[Subject], Awaitable[None]]] = {
            "playlists": self._playlists,
            "frames": self._frames,
            "files": self._files,
            "references": self._references,
            "objects": self._objects,
            "events": self._events,
        }

    async def run(self, erasure_id: str, steps: Sequence[str] = STEPS) -> Erasure | None:
        """Carry out ``steps`` (all of them, and then finish, by default); the erasure as
        it is afterwards, ``None`` if there is no such erasure."""
        subject = await self._start(erasure_id)
        if subject is not None:
            for name in steps:
                await self._steps[name](subject)
                await self._step_done(subject, name)
            if tuple(steps) == STEPS:
                await self._finish(subject)
        async with self.state.read_sessions() as session:
            return await ErasureRepository(session).get(erasure_id)

    # -- start and finish -----------------------------------------------------------------

    async def _start(self, erasure_id: str) -> Subject | None:
        async with unit_of_work(self.state.sessions) as session:
            erasure = await ErasureRepository(session).get(erasure_id, for_update=True)
            if erasure is None or erasure.status is ErasureStatus.DONE:
                return None
            if erasure.status is ErasureStatus.QUEUED:
                erasure.status, erasure.started_at = ErasureStatus.RUNNING, utcnow()
            log.info("erasure_started", erasure_id=erasure_id)
            return Subject(
                erasure.erasure_id,
                erasure.organization_id,
                erasure.user_id,
                erasure.subject_digest,
            )

    async def _step_done(self, subject: Subject, name: str) -> None:
        async with unit_of_work(self.state.sessions) as session:
            erasure = await ErasureRepository(session).get(subject.erasure_id, for_update=True)
            if erasure is not None:
                erasure.step = name
        log.info("erasure_step_done", erasure_id=subject.erasure_id, step=name)

    async def _finish(self, subject: Subject) -> None:
        async with unit_of_work(self.state.sessions) as session:
            repository = ErasureRepository(session)
            erasure = await repository.get(subject.erasure_id, for_update=True)
            if erasure is None:
                return
            erasure.user_id = subject.pseudonym
            if erasure.requested_by == subject.user_id:
                erasure.requested_by = subject.pseudonym
            erasure.status, erasure.step, erasure.finished_at = ErasureStatus.DONE, None, utcnow()
            await repository.forget_items(subject.erasure_id)
        log.info("erasure_done", erasure_id=subject.erasure_id)

    async def _count(
        self, session: AsyncSession, subject: Subject, step: str, counts: Mapping[str, int]
    ) -> None:
        await ErasureRepository(session).add_counts(subject.erasure_id, counts)
        if self.progress is not None:
            self.progress(step, counts)

    # -- 1. playlists ---------------------------------------------------------------------

    async def _playlists(self, subject: Subject) -> None:
        async with self.state.read_sessions() as session:
            service = PlaylistService(session, self.state)
            owned = await service.owned_by_person(subject.organization_id, subject.user_id)
        summaries = {summary.playlist_id: summary for summary, _items in owned}
        for batch in chunks(list(summaries), self.options.batch_size):
            async with unit_of_work(self.state.sessions) as session:
                service = PlaylistService(session, self.state)
                present = await ReferenceRepository(session).lock_existing(PLAYLIST_KEY, batch)
                theirs = [summaries[playlist_id] for playlist_id in present]
                deleted = [p for p in theirs if await self._delete_playlist(service, subject, p)]
                ids = [p.playlist_id for p in deleted]
                await ErasureRepository(session).add_items(subject.erasure_id, "playlist", ids)
                entries = sum(p.photo_count for p in deleted)
                counts = {"playlists": len(deleted), "playlist_entries": entries}
                await self._count(session, subject, "playlists", counts)

    async def _delete_playlist(
        self, service: PlaylistService, subject: Subject, playlist: PlaylistSummary
    ) -> bool:
        as_erasure = actor(subject.organization_id, subject.erasure_id)
        try:
            await service.delete(as_erasure, playlist.playlist_id)
        except NotFound:  # gone meanwhile (another run of this erasure)
            return False
        return True

    # -- 2. frames ------------------------------------------------------------------------

    async def _frames(self, subject: Subject) -> None:
        owner = seen_as(subject.organization_id, subject.user_id)
        as_erasure = actor(subject.organization_id, subject.erasure_id)
        while True:
            async with unit_of_work(self.state.sessions) as session:
                frames = FrameService(session, self.state)
                listed = (await frames.list_frames(owner))[: self.options.batch_size]
                if not listed:
                    return
                present = await ReferenceRepository(session).lock_existing(
                    FRAME_KEY, [frame.frame_id for frame in listed]
                )
                batch = [frame for frame in listed if frame.frame_id in present]
                counts = {"frames": len(batch), "schedules": 0, "cache_entries": 0}
                for frame in batch:
                    schedules = await ScheduleService(session, self.state).for_frame(
                        as_erasure, frame.frame_id, utcnow()
                    )
                    entries = await CacheService(session, self.state).frame_entries(
                        as_erasure, frame.frame_id
                    )
                    counts["schedules"] += len(schedules.schedules)
                    counts["cache_entries"] += len(entries)
                    await frames.delete(as_erasure, frame.frame_id)
                ids = [frame.frame_id for frame in batch]
                await ErasureRepository(session).add_items(subject.erasure_id, "frame", ids)
                await self._count(session, subject, "frames", counts)

    # -- 3. files -------------------------------------------------------------------------

    async def _files(self, subject: Subject) -> None:
        attempted: set[str] = set()
        while batch := await self._next_files(subject):
            if attempted.issuperset(file.file_id for file in batch):
                # Deleting them changed nothing: stop rather than loop (the job retries).
                raise RuntimeError(f"erasure {subject.erasure_id}: files could not be deleted")
            attempted.update(file.file_id for file in batch)
            # Listing stored objects talks to storage: not inside the transaction.
            objects = {file.file_id: await self._stored_objects(file.file_id) for file in batch}
            async with unit_of_work(self.state.sessions) as session:
                counts, deleted = await self._delete_files(session, subject, batch)
                counts["objects"] = sum(objects[file_id] for file_id in deleted)
                await self._count(session, subject, "files", counts)

    async def _next_files(self, subject: Subject) -> list[MediaFile]:
        """Up to a batch of the person's files, whatever personal owner type."""
        as_erasure = actor(subject.organization_id, subject.erasure_id)
        found: list[MediaFile] = []
        async with self.state.read_sessions() as session:
            media = self._media(session)
            for owner_type in PERSONAL_OWNER_TYPES:
                wanted = self.options.batch_size - len(found)
                if wanted <= 0:
                    break
                filters = ListFilters(owner_id=subject.user_id, owner_type=owner_type, limit=wanted)
                found += (await media.list(as_erasure, filters))[0]
        return found

    async def _delete_files(
        self, session: AsyncSession, subject: Subject, batch: list[MediaFile]
    ) -> tuple[dict[str, int], list[str]]:
        """Delete the batch's files that still exist; the counts of what went with them,
        and their ids. Their rows are locked first, so that a concurrent run of this
        erasure (a job redelivered while ``erase --wait`` runs) counts each file once."""
        as_erasure = actor(subject.organization_id, subject.erasure_id)
        references = ReferenceRepository(session)
        ids = await references.lock_existing(FILE_KEY, [file.file_id for file in batch])
        counts = await references.derived_counts(ids)
        media, playlists = self._media(session), PlaylistContent(session, self.state)
        deleted, entries = [], 0
        for file_id in ids:
            entries += len(await playlists.remove_deleted_photo(file_id))
            await cache.forget_photo(session, self.state.blobs, file_id)
            try:
                await media.delete(as_erasure, file_id)
            except NotFound:  # gone meanwhile: counted by whoever deleted it
                continue
            deleted.append(file_id)
        keys = await references.delete_idempotency_keys(subject.organization_id, None, ids)
        await ErasureRepository(session).add_items(subject.erasure_id, "file", ids)
        counts |= {"files": len(deleted), "playlist_entries": entries, "idempotency_keys": keys}
        return counts, deleted

    async def _stored_objects(self, file_id: str) -> int:
        return len([info async for info in self.state.blobs.list(file_folder(file_id))])

    def _media(self, session: AsyncSession) -> MediaService:
        return MediaService(session, self.state)

    # -- 4. references --------------------------------------------------------------------

    async def _references(self, subject: Subject) -> None:
        async with unit_of_work(self.state.sessions) as session:
            counts = {}
            for name, forget in self.forgetters.items():
                counts[name] = (
                    await forget(
                        session, subject.organization_id, subject.user_id, subject.pseudonym
                    )
                    or 0
                )
            await self._count(session, subject, "references", counts)

    # -- 5. objects -----------------------------------------------------------------------

    async def _objects(self, subject: Subject) -> None:
        async with self.state.read_sessions() as session:
            remaining = await ErasureRepository(session).item_ids(subject.erasure_id, "file")
        deadline = time.monotonic() + self.options.purge_wait
        while remaining:
            remaining = [f for f in remaining if await self._stored_objects(f)]
            if not remaining or time.monotonic() >= deadline:
                break
            await asyncio.sleep(self.options.poll_interval)
        for file_id in remaining:  # the purge consumer is slow or not running here
            await delete_folder(self.state.blobs, file_folder(file_id))
        if remaining:
            log.info(
                "erasure_purged_directly", erasure_id=subject.erasure_id, folders=len(remaining)
            )

    # -- 6. events ------------------------------------------------------------------------

    async def _events(self, subject: Subject) -> None:
        async with self.state.read_sessions() as session:
            items = await ErasureRepository(session).item_ids(subject.erasure_id)
        mentions = Mentions(
            ids=items,
            person=subject.user_id,
            organization_id=subject.organization_id,
            spare=subject.erasure_id,
        )
        async with unit_of_work(self.state.sessions) as session:
            rows = await forget_history(session, mentions)
            await self._count(session, subject, "events", {"event_rows": rows})
        # After the outbox: a row deleted there can no longer be published meanwhile.
        messages = await self.state.bus.forget_messages(mentions)
        async with unit_of_work(self.state.sessions) as session:
            await self._count(session, subject, "events", {"stream_messages": messages})
