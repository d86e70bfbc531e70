"""Stopping background tasks within a deadline, and saying what held them up.

A background loop is stopped by cancelling it. If it does not finish within ``grace``
seconds (a shielded clean-up waiting for a locked database, a client close waiting for a
socket), its stack is logged and it is cancelled once more; if even that does not end it,
it is abandoned with an error in the log. Shutdown therefore takes a bounded time, and a
slow stop leaves a stack trace rather than a silent hang.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

DEFAULT_GRACE = 5.0
STOP_REQUEST_GRACE = 2.0


async def stop_gracefully(
    task: asyncio.Task[object],
    request_stop: Callable[[], None],
    *,
    grace: float = STOP_REQUEST_GRACE,
) -> bool:
    """Ask a loop to finish (``request_stop``), give it ``grace`` seconds, then cancel it.

    A loop that checks its stop flag between iterations ends without being interrupted in
    the middle of a database call: cancelling SQLite work mid-statement can leave the
    write lock with a connection that is being torn down, and the next writer then waits
    for the busy timeout.
    """
    request_stop()
    done, _ = await asyncio.wait({task}, timeout=grace)
    if done:
        if not task.cancelled():
            task.exception()
        return True
    return await cancel_and_wait(task)


async def cancel_and_wait(task: asyncio.Task[object], *, grace: float = DEFAULT_GRACE) -> bool:
    """Cancel ``task`` and wait for it; returns whether it finished.

    Exceptions and cancellation of the task itself are swallowed: it is being stopped.
    Cancellation of the *caller* still propagates.
    """
    for attempt in (1, 2):
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=grace)
        if done:
            if not task.cancelled():
                task.exception()  # retrieved, so asyncio does not log it as never retrieved
            return True
        log.warning(
            "task_slow_to_stop",
            task=task.get_name(),
            waited_seconds=grace * attempt,
            stack=_stack_of(task),
        )
    log.error("task_abandoned", task=task.get_name(), waited_seconds=grace * 2)
    return False


def _stack_of(task: asyncio.Task[object]) -> str:
    out = io.StringIO()
    task.print_stack(file=out)
    return out.getvalue()
