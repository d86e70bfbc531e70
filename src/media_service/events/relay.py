"""The relay: publishes committed outbox rows and marks them sent once the bus acked them.

It claims a batch (a lease, see :class:`OutboxRepository`), publishes each row in order
with its id as the message id, and marks the published ones. A relay killed between the
bus's acknowledgement and the mark leaves rows that are published again after the lease:
the bus drops the duplicate (``Nats-Msg-Id``) and consumers are idempotent anyway. While
the bus is down the rows stay pending and the relay backs off; nothing is ever dropped.

While commits keep waking it, the relay marks a batch in the transaction that claims the
next one, on a connection it keeps until it runs out of work (one transaction per pass
instead of two, without a pool checkout each: most of its CPU per event when passes
carry a few events each).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media_service.events.bus import BusUnavailable, EventBus, describe_error
from media_service.events.observer import event_observer
from media_service.events.outbox import ClaimedMessage, OutboxRepository
from media_service.tasks import stop_gracefully

log = structlog.get_logger(__name__)

DEFAULT_RETRY_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


_PUBLISHED = "published"
_REFUSED = "refused"  # this message only: go on with the batch
_BUS_DOWN = "bus_down"  # stop the batch and back off
_NOT_SENT = "not_sent"  # the bus was down before this one's turn


class OutboxRelay:
    """Moves outbox rows to the bus. Start it with :meth:`start`, wake it with
    :meth:`notify` after a commit, stop it with :meth:`stop`."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: EventBus,
        *,
        batch_size: int = 256,
        poll_interval: float = 1.0,
        lease: float = 30.0,
        retry_backoff: Sequence[float] = DEFAULT_RETRY_BACKOFF,
        concurrency: int = 128,
    ) -> None:
        if min(batch_size, concurrency) < 1 or min(poll_interval, lease) <= 0:
            raise ValueError("batch_size, concurrency, poll_interval and lease must be > 0")
        if not retry_backoff:
            raise ValueError("retry_backoff needs at least one delay")
        self.repository = OutboxRepository(sessions, hold_connection=True)
        self._sessions = sessions
        self._bus = bus
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._lease = timedelta(seconds=lease)
        self._retry_backoff = tuple(retry_backoff)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failures = 0  # consecutive passes that could not reach the bus or database
        # Published in run()'s last pass and not yet marked: the next claim marks them.
        self._unmarked: list[ClaimedMessage] = []

    def notify(self) -> None:
        """Publish soon: something was committed to the outbox."""
        self._wakeup.set()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await stop_gracefully(task, self._request_stop)

    def _request_stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        """Publish until stopped (or cancelled)."""
        try:
            while not self._stopping:
                self._wakeup.clear()
                try:
                    published = await self._pass()
                except Exception as exc:  # the database is down: try again after a back-off
                    self._failures += 1
                    log.warning("outbox_relay_failed", error=describe_error(exc))
                    await self.repository.release_connection()
                    published = 0
                if published >= self._batch_size and self._failures == 0:
                    continue  # more may be waiting
                if self._failures:
                    # Commits during an outage must not cut the back-off short: each early
                    # pass would fail again and push the back-off (and the rows) further out.
                    await asyncio.sleep(self._backoff())
                else:
                    await self._sleep(self._poll_interval)
        finally:
            with contextlib.suppress(Exception):  # else they go again after the lease
                await self._mark(self._take_unmarked())
            await self.repository.release_connection()

    def _backoff(self) -> float:
        return self._delay(self._failures)

    async def run_once(self) -> int:
        """Publish one batch of due rows and mark them; returns how many were published."""
        try:
            published = await self._publish_batch(await self._claim())
            await self._mark(published)
        finally:
            await self.repository.release_connection()
        return len(published)

    async def _pass(self) -> int:
        """One batch of :meth:`run`: as :meth:`run_once`, except that while commits keep
        waking the relay, a batch is marked by the claim of the next one (one transaction
        per pass, not two). A relay that dies in between leaves them to be published
        again after the lease, which the bus drops as duplicates."""
        published = await self._publish_batch(await self._claim())
        if self._wakeup.is_set() or len(published) >= self._batch_size:
            self._unmarked = published
        else:
            await self._mark(published)
        return len(published)

    async def _claim(self) -> list[ClaimedMessage]:
        marked = self._take_unmarked()
        try:
            batch = await self.repository.claim_pending(
                self._batch_size, self._lease, published=[m.id for m in marked]
            )
        except BaseException:
            self._unmarked = marked + self._unmarked  # still to be marked
            raise
        self._report(marked)
        if not batch:  # idle: hold no connection while there is nothing to do
            await self.repository.release_connection()
        return batch

    def _take_unmarked(self) -> list[ClaimedMessage]:
        unmarked, self._unmarked = self._unmarked, []
        return unmarked

    async def _mark(self, published: list[ClaimedMessage]) -> None:
        await self.repository.mark_published([m.id for m in published])
        self._report(published)

    async def _publish_batch(self, batch: list[ClaimedMessage]) -> list[ClaimedMessage]:
        """Publish ``batch``; the messages the bus acknowledged.

        Up to ``concurrency`` publishes are in flight at once (NATS pipelines them on one
        connection), each acknowledgement making room for the next row, so the order of
        arrival may differ from the order of commits. Once the bus is found down, the rows
        not yet sent are released for a later pass.
        """
        slots = asyncio.Semaphore(self._concurrency)
        down = asyncio.Event()

        async def publish(message: ClaimedMessage) -> str:
            async with slots:
                if down.is_set():
                    return _NOT_SENT
                outcome = await self._publish(message)
                if outcome is _BUS_DOWN:
                    down.set()
                return outcome

        outcomes = await asyncio.gather(*(publish(m) for m in batch))
        if down.is_set():
            not_sent = [m.id for m, o in zip(batch, outcomes, strict=True) if o is _NOT_SENT]
            await self.repository.release(not_sent, timedelta(seconds=self._next_backoff()))
            self._failures += 1
        elif batch:
            self._failures = 0
        return [m for m, o in zip(batch, outcomes, strict=True) if o is _PUBLISHED]

    async def _publish(self, message: ClaimedMessage) -> str:
        try:
            await self._bus.publish(message.subject, orjson.dumps(message.payload), message.id)
        except BusUnavailable as exc:
            error = describe_error(exc)
            log.warning("outbox_bus_unavailable", msg_id=message.id, error=error)
            retry_in = timedelta(seconds=self._next_backoff())
            await self.repository.mark_failed(message.id, error, retry_in)
            return _BUS_DOWN
        except Exception as exc:  # this message was refused: retry it later, go on
            error = describe_error(exc)
            log.error("outbox_publish_refused", msg_id=message.id, error=error)
            retry_in = timedelta(seconds=self._delay(message.attempts + 1))
            await self.repository.mark_failed(message.id, error, retry_in)
            return _REFUSED
        return _PUBLISHED

    def _report(self, published: Sequence[ClaimedMessage]) -> None:
        observer = event_observer(self._sessions)
        if observer is not None:
            for message in published:
                observer.published(message.kind, message.subject, message.payload)

    def _next_backoff(self) -> float:
        return self._delay(self._failures + 1)

    def _delay(self, attempt: int) -> float:
        return self._retry_backoff[min(max(attempt, 1), len(self._retry_backoff)) - 1]

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()
