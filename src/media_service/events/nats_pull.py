"""One durable JetStream pull consumer of :class:`NatsEventBus`.

It keeps up to ``max_in_flight`` messages in hand, handled concurrently as they arrive, and
pulls more as handlers finish: a pull request asks for the free slots and lingers
``pull_expires`` seconds (``fetch()`` would instead wait to fill its whole batch). A
reconnect or a deleted consumer is noticed within a fraction of a second and the consumer
is created again when it went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from media_service.events.bus import (
    BusError,
    BusMisconfigured,
    DeadLetterCallback,
    Delivery,
    DeliveryPolicy,
    Handler,
    deliver,
)
from media_service.tasks import cancel_and_wait

if TYPE_CHECKING:
    from media_service.events.nats import NatsEventBus

log = structlog.get_logger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"
API_PREFIX = "$JS.API"
_V1_ACK_TOKENS = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
_RECHECK = 0.25  # seconds between checks for a reconnect while a pull request lingers


class PullConsumer:
    """Keeps up to ``max_in_flight`` messages in hand, pulling more as handlers finish.

    A pull request asks for the free slots and lingers ``pull_expires`` seconds; messages
    are handled as they arrive (``fetch`` would wait to fill its batch).
    """

    def __init__(
        self,
        bus: NatsEventBus,
        stream: str,
        name: str,
        subjects: list[str],
        handler: Handler,
        on_dead_letter: DeadLetterCallback,
        policy: DeliveryPolicy,
    ) -> None:
        self._bus = bus
        self._stream = stream
        self._name = name
        self._subjects = subjects
        self._handler = handler
        self._on_dead_letter = on_dead_letter
        self._policy = policy
        self._task: asyncio.Task[None] | None = None
        self._handling: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()

    def config(self) -> ConsumerConfig:
        one = len(self._subjects) == 1
        return ConsumerConfig(
            name=self._name,
            durable_name=self._name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self._policy.ack_wait,
            max_deliver=-1,  # bounded by deliver(): see the module docstring
            filter_subject=self._subjects[0] if one else None,
            filter_subjects=None if one else list(self._subjects),
            max_ack_pending=max(1000, self._policy.max_in_flight * 4),
        )

    async def ensure(self) -> None:
        """Create the consumer, or update it to our configuration."""
        js = self._bus.jetstream()
        try:
            await js.add_consumer(self._stream, config=self.config())
        except nats.js.errors.NotFoundError:
            await self._bus.ensure_streams()
            await js.add_consumer(self._stream, config=self.config())
        except nats.js.errors.APIError as exc:
            raise BusMisconfigured(
                f"consumer {self._name} on {self._stream} rejected: {exc.description}"
            ) from exc

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"nats-consumer-{self._name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    async def _run(self) -> None:
        try:
            while True:
                try:
                    await self._pull_loop()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # connection trouble: pull again shortly
                    log.warning("nats_consumer_error", consumer=self._name, error=repr(exc))
                    await asyncio.sleep(self._bus.options.reconnect_wait)
        finally:
            for task in list(self._handling):
                task.cancel()
            await asyncio.gather(*self._handling, return_exceptions=True)

    async def _pull_loop(self) -> None:
        client = self._bus.client()
        inbox = client.new_inbox()
        pull = _PullRequest()
        # A callback, not next_msg(): next_msg() starts two tasks (and a uuid) for every
        # message, which was a good part of the consumer's CPU per event.
        subscription = await client.subscribe(inbox, cb=self._receiver(pull))
        subject = f"{API_PREFIX}.CONSUMER.MSG.NEXT.{self._stream}.{self._name}"
        expires = self._bus.options.pull_expires
        loop = asyncio.get_running_loop()
        generation = -1
        try:
            while True:
                if not client.is_connected:  # requests sent now would pile up
                    pull.credits = 0
                    await asyncio.sleep(self._bus.options.reconnect_wait)
                    continue
                if generation != self._bus.connection_generation:
                    pull.credits = 0  # the server forgot our pull request when we reconnected
                if pull.status is not None:
                    status, pull.status = pull.status, None
                    await self._recover(*status)
                if pull.credits <= 0 or loop.time() > pull.deadline:
                    self._slot_freed.clear()
                    free = self._policy.max_in_flight - len(self._handling)
                    if free <= 0:
                        await self._slot_freed.wait()
                        continue
                    request = {"batch": free, "expires": int(expires * 1e9)}
                    pull.start(free, loop.time() + expires + 1.0)
                    await client.publish(subject, json.dumps(request).encode(), reply=inbox)
                    generation = self._bus.connection_generation
                # Short waits, so that a reconnect is noticed without waiting for expiry.
                wait = min(max(pull.deadline - loop.time(), 0.01), _RECHECK)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await pull.ended.wait()
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    def _receiver(self, pull: _PullRequest) -> Callable[[Msg], Awaitable[None]]:
        """The subscription's callback: hand messages to handlers, note how the pull
        request ends (its last message, or a status from the server)."""

        async def receive(msg: Msg) -> None:
            headers = msg.headers or {}
            status = headers.get("Status")
            if status is None:
                self._handle(msg)
                pull.received()
            elif status != "100":  # not an idle heartbeat: this pull request is over
                if status not in {"404", "408"}:  # not just "no messages" or "expired"
                    pull.status = (status, headers.get("Description", ""))
                pull.end()

        return receive

    async def _recover(self, status: str, description: str) -> None:
        """The consumer (or its stream) went away, or the server is busy."""
        log.warning("nats_pull_status", consumer=self._name, status=status, description=description)
        if status == "503" or "deleted" in description.lower():
            with contextlib.suppress(BusError, nats.errors.Error, TimeoutError):
                await self.ensure()
        await asyncio.sleep(self._bus.options.reconnect_wait)

    def _handle(self, msg: Msg) -> None:
        task = asyncio.create_task(self._process(msg))
        self._handling.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._handling.discard(task)
        self._slot_freed.set()

    async def _process(self, msg: Msg) -> None:
        delivery = Delivery(
            consumer=self._name,
            subject=msg.subject,
            payload=msg.data,
            msg_id=(msg.headers or {}).get(MSG_ID_HEADER),
            attempt=_num_delivered(msg),
        )
        try:
            await deliver(delivery, self._handler, self._policy, self._on_dead_letter, _Ack(msg))
        except asyncio.CancelledError:
            # Stopping: hand it back now rather than after ack_wait.
            with contextlib.suppress(Exception):
                await asyncio.shield(msg.nak())
            raise
        except Exception as exc:  # the ack did not get out: ack_wait brings it back
            log.warning("nats_settle_failed", consumer=self._name, error=repr(exc))


def _num_delivered(msg: Msg) -> int:
    """``msg.metadata.num_delivered``, read without parsing the whole reply subject
    (``$JS.ACK.<stream>.<consumer>.<delivered>.…``, nine tokens): nats-py's ``metadata``
    builds a datetime and two dataclasses for every message."""
    tokens = (msg.reply or "").split(".")
    if len(tokens) == _V1_ACK_TOKENS and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[4])
    return msg.metadata.num_delivered  # the longer form (with a domain), or not JetStream


class _Ack:
    def __init__(self, msg: Msg) -> None:
        self._msg = msg

    async def ack(self) -> None:
        await self._msg.ack()

    async def nak(self, delay: float, error: str) -> None:
        await self._msg.nak(delay=delay)

    async def term(self, error: str) -> None:
        await self._msg.term()


class _PullRequest:
    """The pull request in progress: messages still owed to us, until when, and how it
    ended when the server ended it with a status."""

    def __init__(self) -> None:
        self.credits = 0
        self.deadline = 0.0
        self.status: tuple[str, str] | None = None  # a status the pull loop must act on
        self.ended = asyncio.Event()

    def start(self, credits: int, deadline: float) -> None:
        self.credits, self.deadline = credits, deadline
        self.ended.clear()

    def received(self) -> None:
        self.credits -= 1
        if self.credits <= 0:
            self.ended.set()

    def end(self) -> None:
        self.credits = 0
        self.ended.set()
