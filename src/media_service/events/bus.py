"""The EventBus contract and the delivery rules every bus shares.

A bus carries opaque bytes on dot-separated subjects. Publishing returns only once the
bus has the message durably; consumers are durable (they keep their position across
restarts), receive each message at least once, and acknowledge it only after their
handler succeeded. A handler that raises gets the message again after a back-off; after
``max_deliver`` attempts the message goes to a dead-letter callback and is not delivered
again. Nothing is dropped without the callback having recorded it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import structlog

if TYPE_CHECKING:
    from media_service.events.scrub import Mentions

log = structlog.get_logger(__name__)

_DURABLE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SUBJECT_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")
MAX_ERROR_LENGTH = 4000


class BusError(Exception):
    """Base class of every bus failure."""


class BusUnavailable(BusError):
    """The bus cannot be reached or did not acknowledge in time: try again later."""


class BusMisconfigured(BusError):
    """The bus is reachable but set up in a way we cannot work with (say how to fix it)."""


class RejectMessage(Exception):
    """Raised by a handler for a message that can never succeed (malformed, unknown type):
    it goes to the dead-letter callback at once instead of being retried."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of a message to a handler."""

    consumer: str
    subject: str
    payload: bytes
    msg_id: str | None
    attempt: int  # 1 for the first delivery


Handler = Callable[[Delivery], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message a consumer gave up on, and why."""

    consumer: str
    subject: str
    payload: bytes
    msg_id: str | None
    attempts: int
    error: str


DeadLetterCallback = Callable[[DeadLetter], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How a consumer retries.

    ``backoff[i]`` is the wait after the (i+1)-th failed attempt; the last value repeats.
    A handler running longer than ``handler_timeout`` is cancelled and counts as failed;
    the bus redelivers an unacknowledged message after ``ack_wait`` (a crashed consumer),
    which is therefore longer than the slowest handler.
    """

    max_deliver: int = 5
    backoff: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)
    handler_timeout: float = 120.0
    ack_margin: float = 30.0
    max_in_flight: int = 16

    def __post_init__(self) -> None:
        if self.max_deliver < 1 or not self.backoff or min(self.backoff) < 0:
            raise ValueError("max_deliver must be ≥ 1 and backoff a non-empty list of delays ≥ 0")
        if self.handler_timeout <= 0 or self.ack_margin <= 0 or self.max_in_flight < 1:
            raise ValueError("handler_timeout, ack_margin and max_in_flight must be positive")

    @property
    def ack_wait(self) -> float:
        return self.handler_timeout + self.ack_margin

    def delay_after(self, attempt: int) -> float:
        """The wait before the next delivery once ``attempt`` has failed."""
        return self.backoff[min(attempt, len(self.backoff)) - 1]


@dataclass(frozen=True, slots=True)
class BusHealth:
    """What ``check()`` found: for ``doctor`` and metrics."""

    url: str
    detail: str
    consumer_lag: dict[str, int] = field(default_factory=dict)
    sync_always: bool | None = None
    warnings: tuple[str, ...] = ()


@runtime_checkable
class EventBus(Protocol):
    """A durable, at-least-once message bus (in-process or NATS JetStream)."""

    url: str

    async def start(self) -> None:
        """Connect and create (or check) what the bus needs, such as streams. Raises
        :class:`BusMisconfigured` when the bus is set up in a way we cannot use."""
        ...

    async def publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        """Return once the bus has durably accepted the message; raise
        :class:`BusUnavailable` otherwise. Publishing the same ``msg_id`` again is
        recognised as a duplicate (NATS: within the stream's duplicate window)."""
        ...

    async def subscribe(
        self,
        durable_name: str,
        subjects: Sequence[str],
        handler: Handler,
        *,
        on_dead_letter: DeadLetterCallback,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        """Start consuming ``subjects`` (wildcards ``*`` and ``>``) as the durable
        consumer ``durable_name``, in background tasks, until :meth:`close`."""
        ...

    async def check(self) -> BusHealth:
        """Raise :class:`BusUnavailable` unless the bus is reachable and set up; report
        consumer lag and whether acknowledged writes are synced to disk."""
        ...

    async def forget_messages(self, mentions: Mentions) -> int:
        """Delete every message the bus still stores (waiting, in flight or kept as
        history) that mentions a person; how many went (see
        :mod:`media_service.events.scrub`). For the erasure of a person."""
        ...

    async def close(self) -> None:
        """Stop consumers (unfinished deliveries are handed back) and disconnect."""
        ...


# -- shared rules -------------------------------------------------------------------------


def validate_subscription(durable_name: str, subjects: Sequence[str]) -> list[str]:
    """Check ``subscribe()``'s arguments the same way for every bus; the subject patterns."""
    validate_durable_name(durable_name)
    patterns = [validate_subject(s, wildcards=True) for s in subjects]
    if not patterns:
        raise ValueError("subscribe to at least one subject")
    return patterns


def validate_durable_name(name: str) -> str:
    if not _DURABLE_NAME.match(name):
        raise ValueError(f"durable consumer name must match {_DURABLE_NAME.pattern}: {name!r}")
    return name


def validate_subject(subject: str, *, wildcards: bool = False) -> str:
    """A dot-separated subject; with ``wildcards``, ``*`` tokens and a final ``>``."""
    tokens = subject.split(".")
    for index, part in enumerate(tokens):
        if wildcards and (part == "*" or (part == ">" and index == len(tokens) - 1)):
            continue
        if not _SUBJECT_TOKEN.match(part):
            raise ValueError(f"invalid subject {subject[:200]!r}")
    return subject


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    wanted, actual = pattern.split("."), subject.split(".")
    for index, part in enumerate(wanted):
        if part == ">":
            return len(actual) > index
        if index >= len(actual) or (part not in ("*", actual[index])):
            return False
    return len(actual) == len(wanted)


def describe_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    # PostgreSQL text cannot hold NUL; operators read this, so keep it bounded.
    return text.replace("\x00", "\\0")[:MAX_ERROR_LENGTH]


class Settlement(Protocol):
    """How a bus settles one delivery (acknowledge, retry later, give up)."""

    async def ack(self) -> None: ...

    async def nak(self, delay: float, error: str) -> None: ...

    async def term(self, error: str) -> None: ...


async def deliver(
    delivery: Delivery,
    handler: Handler,
    policy: DeliveryPolicy,
    on_dead_letter: DeadLetterCallback,
    settle: Settlement,
) -> None:
    """Run ``handler`` on one delivery and settle it by the policy.

    A delivery already past ``max_deliver`` (earlier attempts ended without a verdict:
    the consumer stopped or crashed mid-handler, or the dead letter could not be written)
    goes to the dead-letter callback without running the handler again. If the callback
    fails, the message is retried later rather than dropped.
    """
    if delivery.attempt > policy.max_deliver:
        error = (
            f"gave up after {delivery.attempt} deliveries (max_deliver {policy.max_deliver}): "
            "earlier attempts ended without a result (consumer stopped or crashed "
            "mid-handler, or the dead letter could not be recorded)"
        )
        await _give_up(delivery, error, policy, on_dead_letter, settle)
        return
    try:
        async with asyncio.timeout(policy.handler_timeout):
            await handler(delivery)
    except RejectMessage as exc:
        await _give_up(delivery, describe_error(exc), policy, on_dead_letter, settle)
        return
    except Exception as exc:  # the handler's failure is data for the retry policy
        error = describe_error(exc)
        if delivery.attempt >= policy.max_deliver:
            await _give_up(delivery, error, policy, on_dead_letter, settle)
            return
        delay = policy.delay_after(delivery.attempt)
        log.warning(
            "event_handler_failed",
            consumer=delivery.consumer,
            subject=delivery.subject,
            msg_id=delivery.msg_id,
            attempt=delivery.attempt,
            retry_in=delay,
            error=error,
        )
        await settle.nak(delay, error)
        return
    await settle.ack()


async def _give_up(
    delivery: Delivery,
    error: str,
    policy: DeliveryPolicy,
    on_dead_letter: DeadLetterCallback,
    settle: Settlement,
) -> None:
    letter = DeadLetter(
        consumer=delivery.consumer,
        subject=delivery.subject,
        payload=delivery.payload,
        msg_id=delivery.msg_id,
        attempts=delivery.attempt,
        error=error,
    )
    try:
        await on_dead_letter(letter)
    except Exception as exc:  # keep the message rather than lose it
        log.error(
            "dead_letter_failed",
            consumer=delivery.consumer,
            msg_id=delivery.msg_id,
            error=describe_error(exc),
        )
        await settle.nak(policy.backoff[-1], error)
        return
    log.error(
        "event_dead_lettered",
        consumer=delivery.consumer,
        subject=delivery.subject,
        msg_id=delivery.msg_id,
        attempts=delivery.attempt,
        error=error,
    )
    await settle.term(error)
