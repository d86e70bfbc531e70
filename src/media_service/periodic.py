"""A round of background work every so many seconds, until stopped (the housekeeping, the
frames' pre-cache rounds, the frames' last-seen writes)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from media_service.events.bus import describe_error
from media_service.tasks import stop_gracefully

log = structlog.get_logger(__name__)


class PeriodicLoop:
    """Runs ``run_round`` every ``interval`` seconds, the first time after
    ``first_delay`` (default: one interval), until :meth:`stop`. A round that fails is
    logged as ``failure_event`` and tried again next time: the database may be away."""

    def __init__(
        self,
        name: str,
        run_round: Callable[[], Awaitable[object]],
        interval: float,
        *,
        failure_event: str,
        first_delay: float | None = None,
    ) -> None:
        self.name = name
        self._run_round = run_round
        self._interval = interval
        self._failure_event = failure_event
        self._first_delay = first_delay
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        """Start the rounds (nothing if they run already)."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop between rounds (a round under way gets a grace period, then is cancelled)."""
        task, self._task = self._task, None
        if task is not None:
            await stop_gracefully(task, self._stop.set)

    async def _run(self) -> None:
        delay = self._interval if self._first_delay is None else self._first_delay
        while not await self._stopped_within(delay):
            try:
                await self._run_round()
            except Exception as exc:
                log.warning(self._failure_event, error=describe_error(exc))
            delay = self._interval

    async def _stopped_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        return self._stop.is_set()
