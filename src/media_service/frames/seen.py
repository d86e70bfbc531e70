"""When each frame's device last asked for something (``frames.last_seen_at``).

Polls note the time in memory; a loop writes the notes of every frame in one statement
every few seconds, and once more when the process stops. A poll therefore stays a
read-only transaction: writing the row from the poll itself was a writing transaction per
frame and minute (17 a second for 1,000 frames) and one for every first poll after a
start, when a fleet's frames all come back at once. ``last_seen_at`` has a resolution of a
minute anyway (``service.SEEN_RESOLUTION``); it now reaches the database within
``FLUSH_SECONDS`` of the poll.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media_service.db.uow import unit_of_work
from media_service.events.bus import describe_error
from media_service.frames.repository import FrameRepository
from media_service.periodic import PeriodicLoop

FLUSH_SECONDS = 5.0

log = structlog.get_logger(__name__)


class SeenFrames:
    """Last-seen times noted by polls, written in batches."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], interval: float = FLUSH_SECONDS
    ) -> None:
        self._sessions = sessions
        self._notes: dict[str, datetime] = {}
        # One flush at a time: a flush asked for while the loop's is writing waits for it,
        # so that when it returns every note taken so far is in the database.
        self._flushing = asyncio.Lock()
        self._loop = PeriodicLoop(
            "frames-seen", self.flush, interval, failure_event="frames_seen_not_written"
        )

    def note(self, frame_id: str, at: datetime) -> None:
        """Remember that ``frame_id``'s device asked for something at ``at``."""
        self._notes[frame_id] = at

    def noted(self, frame_id: str) -> datetime | None:
        """The time noted for ``frame_id`` and not written yet, if any."""
        return self._notes.get(frame_id)

    async def flush(self) -> int:
        """Write every note now; how many. Notes that could not be written are kept for
        the next try (a later note of the same frame wins)."""
        async with self._flushing:
            if not self._notes:
                return 0
            batch, self._notes = self._notes, {}
            try:
                async with unit_of_work(self._sessions) as session:
                    await FrameRepository(session).touch(batch)  # one statement
            except BaseException:
                self._notes = {**batch, **self._notes}
                raise
            return len(batch)

    def start(self) -> None:
        """Write the notes every interval (a failed round keeps them for the next)."""
        self._loop.start()

    async def stop(self) -> None:
        """Stop the rounds and write what is left."""
        await self._loop.stop()
        try:
            await self.flush()
        except Exception as exc:  # the database is away: the times are lost, not the data
            log.warning("frames_seen_not_written", error=describe_error(exc))
