"""Run identical concurrent work once: the others wait for the first one's result.

Used for on-the-fly renditions: ten frames asking for the same new size at the same
moment cause one decode. The work runs in a task of its own, so a caller that goes away
(a client disconnecting) does not cancel it for the callers still waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Per-process de-duplication of in-flight work by key, with counters for metrics."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[T]] = {}
        self.started = 0  # how many times work actually ran
        self.joined = 0  # how many callers waited for work another caller started

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        """``work()``'s result; if work for ``key`` is already running, wait for it."""
        task = self._tasks.get(key)
        if task is None:
            task = self.start(key, work)
        else:
            self.joined += 1
        return await asyncio.shield(task)

    def start(self, key: str, work: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        """Start ``work()`` unless work for ``key`` is already running; either way, that
        work's task (held here until it ends, its failure logged by nobody: a caller that
        wants the result awaits :meth:`run`)."""
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self.started += 1
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def in_flight(self) -> int:
        """How many distinct keys are being worked on now."""
        return len(self._tasks)

    def _finished(self, key: str, task: asyncio.Task[T]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # every waiter may have gone: never "exception not retrieved"
