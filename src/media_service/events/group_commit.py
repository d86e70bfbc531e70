"""Group commit for idempotent consumers: events that arrive while one transaction runs
are applied together in the next one.

A bus hands a consumer up to ``max_in_flight`` deliveries at once. Applying each in a
transaction of its own costs a begin, a ``handled_events`` insert and a commit per event,
which made the consumer the slowest stage of the pipeline (about 1 ms of CPU per event,
bench/events.py). Here the first delivery leads: it applies every event queued behind it
in one transaction (one multi-row ``handled_events`` insert, then each handler in turn),
and hands the lead to the next waiting delivery when it is done. No delivery waits for a
batch to fill, so a lone event is applied as soon as it would have been alone.

Each event still commits together with its ``handled_events`` row. When any handler in a
batch fails, the batch is rolled back and its events are applied again one by one, so the
failure is charged to its own event only and the others are not held back by it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from media_service.events.envelope import Event

E = TypeVar("E", bound=Event)

# Apply these events in one transaction: the set of event ids that were new (applied).
ApplyBatch = Callable[[Sequence[E]], Awaitable[set[str]]]
# Apply one event in a transaction of its own: True when applied, False when a duplicate.
ApplyOne = Callable[[E], Awaitable[bool]]


class BatchAbandoned(Exception):
    """The delivery leading this event's batch was stopped before the batch committed."""


_LEAD = object()  # the result that makes a waiting delivery the next leader


@dataclass(eq=False)
class _Waiting(Generic[E]):
    event: E
    outcome: asyncio.Future[object] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit(Generic[E]):
    """Applies the events of concurrent deliveries in shared transactions (see module)."""

    def __init__(self, apply_batch: ApplyBatch[E], apply_one: ApplyOne[E], max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._apply_batch = apply_batch
        self._apply_one = apply_one
        self._max_batch = max_batch
        self._queue: deque[_Waiting[E]] = deque()
        self._leading = False

    async def apply(self, event: E) -> bool:
        """Apply ``event`` (alone or with others): True if applied, False if it had been
        applied before. Raises what its handler raised."""
        waiting = _Waiting(event)
        self._queue.append(waiting)
        if self._leading:
            outcome = await self._wait(waiting)
            if outcome is not _LEAD:
                return bool(outcome)
            waiting.outcome = asyncio.get_running_loop().create_future()  # for its own result
        self._leading = True
        try:
            await self._lead()
        finally:
            self._hand_over()
        return bool(waiting.outcome.result())

    async def _wait(self, waiting: _Waiting[E]) -> object:
        try:
            return await waiting.outcome
        except asyncio.CancelledError:
            if waiting in self._queue:  # not taken into a batch: forget it
                self._queue.remove(waiting)
            if _is_lead(waiting.outcome):  # promoted, but stopped before leading
                self._hand_over()
            raise

    async def _lead(self) -> None:
        """Apply the batch at the head of the queue (this delivery's event is its first)."""
        batch = [self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch))]
        try:
            await self._settle(batch)
        except BaseException:  # stopped mid-batch: the others must not wait forever
            for waiting in batch[1:]:
                if not waiting.outcome.done():
                    waiting.outcome.set_exception(BatchAbandoned())
            raise

    async def _settle(self, batch: list[_Waiting[E]]) -> None:
        firsts = _first_of_each(batch)
        try:
            applied: set[str] | None = await self._apply_batch([w.event for w in firsts])
        except Exception as exc:
            if len(firsts) > 1:
                applied = None  # some handler failed: find which, one event at a time
            else:
                for waiting in batch:  # one event (perhaps twice): its failure is theirs
                    waiting.outcome.set_exception(exc)
                return
        for waiting in batch:
            if waiting not in firsts:
                waiting.outcome.set_result(False)  # a second copy of an event in this batch
            elif applied is not None:
                waiting.outcome.set_result(waiting.event.event_id in applied)
            else:
                await self._settle_alone(waiting)

    async def _settle_alone(self, waiting: _Waiting[E]) -> None:
        try:
            waiting.outcome.set_result(await self._apply_one(waiting.event))
        except Exception as exc:
            waiting.outcome.set_exception(exc)

    def _hand_over(self) -> None:
        """Make the oldest waiting delivery lead the next batch, or stop leading."""
        if self._queue:
            self._queue[0].outcome.set_result(_LEAD)
        else:
            self._leading = False


def _is_lead(outcome: asyncio.Future[object]) -> bool:
    return (
        outcome.done()
        and not outcome.cancelled()
        and outcome.exception() is None
        and (outcome.result() is _LEAD)
    )


def _first_of_each(batch: Sequence[_Waiting[E]]) -> list[_Waiting[E]]:
    seen: set[str] = set()
    firsts = []
    for waiting in batch:
        if waiting.event.event_id not in seen:
            seen.add(waiting.event.event_id)
            firsts.append(waiting)
    return firsts
