"""The NATS JetStream bus.

At start the streams are created, or checked and given any missing subject (the default
stream ``MEDIA_EVENTS`` holds ``file.>`` and ``media.>`` on file storage, with a
duplicate window in which a re-published ``Nats-Msg-Id`` is dropped by the server;
``MEDIA_JOBS`` holds ``jobs.>`` as a work queue for ``media_service.jobs``).
Consumers are durable pull consumers with explicit acks, ``ack_wait`` above the handler
timeout, and redelivery bounded by our own count of ``num_delivered``: the server's
``max_deliver`` stays unlimited, because a server that reaches it drops the message with
only an advisory, while :func:`bus.deliver` writes the dead letter first and keeps the
message if even that fails.

``MEDIA_EVENTS_URL=nats://host:4222?monitor=http://host:8222`` also names the monitoring
port, from which :meth:`NatsEventBus.sync_always` reads whether the server syncs every
JetStream write to disk (``sync_interval: always``); without it, acknowledged messages
can be lost on power failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from media_service.events.bus import (
    BusError,
    BusHealth,
    BusMisconfigured,
    BusUnavailable,
    DeadLetterCallback,
    DeliveryPolicy,
    Handler,
    subject_matches,
    validate_subject,
    validate_subscription,
)
from media_service.events.nats_pull import MSG_ID_HEADER, PullConsumer
from media_service.events.scrub import Mentions

log = structlog.get_logger(__name__)

DAY = 24 * 3600.0
CLOSE_TIMEOUT = 5.0  # seconds for the NATS client to close before we let it go


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A stream this bus needs, and what it must look like."""

    name: str
    subjects: tuple[str, ...]
    duplicate_window: float = 120.0
    max_age: float = 7 * DAY  # 0: kept until consumed (work queue) or forever
    description: str = ""
    retention: RetentionPolicy = RetentionPolicy.LIMITS

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            description=self.description or None,
            subjects=list(self.subjects),
            storage=StorageType.FILE,
            retention=self.retention,
            discard=DiscardPolicy.OLD,
            duplicate_window=self.duplicate_window,
            max_age=self.max_age,
        )


EVENTS_STREAM = StreamSpec(
    "MEDIA_EVENTS", ("file.>", "media.>"), description="Media service events (spec 003)"
)
# Jobs (``jobs.<job name>``): a work queue, so a job leaves the stream once acknowledged
# and is never aged out while it waits for a worker.
JOBS_STREAM = StreamSpec(
    "MEDIA_JOBS",
    ("jobs.>",),
    max_age=0,
    description="Media service background jobs",
    retention=RetentionPolicy.WORK_QUEUE,
)
DEFAULT_STREAMS = (EVENTS_STREAM, JOBS_STREAM)


@dataclass
class NatsOptions:
    connect_timeout: float = 2.0
    publish_timeout: float = 5.0
    reconnect_wait: float = 0.5
    pull_expires: float = 2.0
    monitor_url: str | None = None
    streams: tuple[StreamSpec, ...] = DEFAULT_STREAMS


class NatsEventBus:
    """EventBus on NATS JetStream (nats-py)."""

    def __init__(
        self,
        url: str,
        *,
        streams: Sequence[StreamSpec] = DEFAULT_STREAMS,
        connect_timeout: float = 2.0,
        publish_timeout: float = 5.0,
        reconnect_wait: float = 0.5,
        pull_expires: float = 2.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"nats", "tls"}:
            raise ValueError(f"not a NATS URL: {url!r}")
        query = parse_qs(parts.query)
        self.url = url
        self._server = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        self.options = NatsOptions(
            connect_timeout=connect_timeout,
            publish_timeout=publish_timeout,
            reconnect_wait=reconnect_wait,
            pull_expires=pull_expires,
            monitor_url=_monitor_url(query.get("monitor", [None])[0]),
            streams=tuple(streams),
        )
        self._nc: Client | None = None
        # The JetStream context of ``_nc``, made once: making one per publish (a parser,
        # an asyncio.Event and a Semaphore each time) was 3% of an event's CPU.
        self._js: tuple[Client, JetStreamContext] | None = None
        self._consumers: list[PullConsumer] = []
        self._closing = False
        self.connection_generation = 0  # counts reconnects: pull requests die with them

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self._nc is not None:
            return
        self._closing = False
        client = Client()
        options = self.options
        try:
            # nats-py retries the first connection forever when reconnects are unlimited.
            async with asyncio.timeout(options.connect_timeout * 2):
                await client.connect(
                    servers=[self._server],
                    name="media-service",
                    connect_timeout=max(1, int(options.connect_timeout)),
                    reconnect_time_wait=options.reconnect_wait,  # type: ignore[arg-type]
                    max_reconnect_attempts=-1,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
        except Exception as exc:
            with contextlib.suppress(Exception):
                await client.close()
            raise BusUnavailable(f"cannot connect to NATS at {self._redacted}: {exc!r}") from exc
        self._nc = client
        try:
            await self.ensure_streams()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._closing = True
        consumers, self._consumers = self._consumers, []
        await asyncio.gather(*(consumer.stop() for consumer in consumers))
        client, self._nc = self._nc, None
        if client is not None and not client.is_closed:
            with contextlib.suppress(Exception):
                await client.flush(timeout=1)
            # nats-py's close() waits for its reader and flusher tasks; never for ever.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await client.close()

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        validate_subject(subject)
        js = self.jetstream()
        headers = {MSG_ID_HEADER: msg_id}
        try:
            try:
                await js.publish(
                    subject, payload, timeout=self.options.publish_timeout, headers=headers
                )
            except nats.js.errors.NoStreamResponseError:
                # The stream was deleted under us: put it back once, then publish again.
                await self.ensure_streams()
                await js.publish(
                    subject, payload, timeout=self.options.publish_timeout, headers=headers
                )
        except (nats.errors.TimeoutError, nats.errors.ConnectionClosedError) as exc:
            raise BusUnavailable(f"NATS did not acknowledge {msg_id}: {exc!r}") from exc
        except nats.js.errors.ServiceUnavailableError as exc:
            raise BusUnavailable(f"JetStream unavailable for {msg_id}: {exc}") from exc
        except nats.js.errors.NoStreamResponseError as exc:
            raise BusMisconfigured(f"no stream captures subject {subject!r}") from exc
        except nats.errors.Error as exc:
            raise BusError(f"NATS refused {msg_id} on {subject!r}: {exc!r}") from exc

    # -- consuming --------------------------------------------------------------------------

    async def subscribe(
        self,
        durable_name: str,
        subjects: Sequence[str],
        handler: Handler,
        *,
        on_dead_letter: DeadLetterCallback,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        patterns = validate_subscription(durable_name, subjects)
        policy = policy or DeliveryPolicy()
        stream = self._stream_for(patterns)
        consumer = PullConsumer(
            self, stream, durable_name, patterns, handler, on_dead_letter, policy
        )
        await consumer.ensure()
        self._consumers.append(consumer)
        consumer.start()

    def _stream_for(self, patterns: Sequence[str]) -> str:
        for spec in self.options.streams:
            if all(any(subject_matches(s, p) for s in spec.subjects) for p in patterns):
                return spec.name
        raise BusMisconfigured(f"no configured stream holds all of {list(patterns)}")

    # -- checks -----------------------------------------------------------------------------

    async def check(self) -> BusHealth:
        js = self.jetstream()
        lag: dict[str, int] = {}
        try:
            for spec in self.options.streams:
                await js.stream_info(spec.name)
                for info in await js.consumers_info(spec.name):
                    lag[info.name] = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        except nats.js.errors.NotFoundError as exc:
            raise BusUnavailable(f"stream missing on {self._redacted}: {exc}") from exc
        except (nats.errors.Error, TimeoutError) as exc:
            raise BusUnavailable(f"cannot read streams on {self._redacted}: {exc!r}") from exc
        synced = await self.sync_always()
        warnings: tuple[str, ...] = ()
        if synced is False:
            warnings = (
                "NATS acknowledges JetStream writes before they are on disk "
                "(set `jetstream { sync_interval: always }`): acknowledged events can be "
                "lost on power failure",
            )
        elif synced is None:
            warnings = (
                "cannot tell whether NATS syncs every write to disk: add "
                "?monitor=http://HOST:8222 (its monitoring port) to MEDIA_EVENTS_URL",
            )
        streams = ", ".join(spec.name for spec in self.options.streams)
        return BusHealth(self._redacted, f"JetStream streams {streams}", lag, synced, warnings)

    async def forget_messages(self, mentions_: Mentions) -> int:
        """Read every message of every stream (events and jobs) and delete the ones whose
        payload or headers mention the person."""
        js = self.jetstream()
        try:
            return sum(
                [await _forget_in_stream(js, s.name, mentions_) for s in self.options.streams]
            )
        except (nats.errors.Error, TimeoutError) as exc:
            raise BusUnavailable(f"cannot scan streams on {self._redacted}: {exc!r}") from exc

    async def sync_always(self) -> bool | None:
        """Whether the server fsyncs every JetStream write; ``None`` when it cannot tell
        (no monitoring URL and no access to ``$SYS``)."""
        varz = await self._varz()
        if varz is None:
            return None
        config = (varz.get("jetstream") or {}).get("config") or {}
        return bool(config.get("sync_always", False))

    async def _varz(self) -> dict[str, Any] | None:
        monitor = self.options.monitor_url
        if monitor is not None:
            try:
                async with httpx.AsyncClient(timeout=2.0) as http:
                    response = await http.get(f"{monitor}/varz")
                    response.raise_for_status()
                    data: dict[str, Any] = response.json()
                    return data
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("nats_varz_unreadable", monitor=monitor, error=str(exc))
                return None
        if self._nc is None or not self._nc.is_connected:
            return None
        try:  # works only for a user of the system account
            reply = await self._nc.request("$SYS.REQ.SERVER.PING.VARZ", b"", timeout=1.0)
            body: dict[str, Any] = json.loads(reply.data)
            return dict(body.get("data") or {}) or None
        except (nats.errors.Error, TimeoutError, ValueError):
            return None

    # -- internals --------------------------------------------------------------------------

    @property
    def _redacted(self) -> str:
        parts = urlsplit(self._server)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, "", "", ""))

    def client(self) -> Client:
        if self._nc is None:
            raise BusUnavailable("the NATS bus is not started")
        if not self._nc.is_connected:
            raise BusUnavailable(f"not connected to NATS at {self._redacted}")
        return self._nc

    def jetstream(self) -> JetStreamContext:
        client = self.client()
        if self._js is None or self._js[0] is not client:
            self._js = (client, client.jetstream(timeout=self.options.publish_timeout))
        return self._js[1]

    async def ensure_streams(self) -> None:
        js = self.jetstream()
        for spec in self.options.streams:
            try:
                await _ensure_stream(js, spec)
            except BusError:
                raise
            except nats.js.errors.APIError as exc:
                raise BusMisconfigured(
                    f"stream {spec.name} cannot be created or updated: {exc.description} "
                    "(does another stream already capture these subjects?)"
                ) from exc
            except (nats.errors.Error, TimeoutError) as exc:
                raise BusUnavailable(f"cannot set up stream {spec.name}: {exc!r}") from exc

    async def _on_error(self, exc: Exception) -> None:
        # While reconnecting, every refused attempt lands here: the disconnect was logged.
        reconnecting = self._nc is not None and self._nc.is_reconnecting
        level = log.debug if reconnecting else log.warning
        level("nats_error", server=self._redacted, error=repr(exc))

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("nats_disconnected", server=self._redacted)

    async def _on_reconnected(self) -> None:
        self.connection_generation += 1
        log.info("nats_reconnected", server=self._redacted)


async def _ensure_stream(js: JetStreamContext, spec: StreamSpec) -> None:
    try:
        info = await js.stream_info(spec.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(spec.config())
        log.info("nats_stream_created", stream=spec.name, subjects=list(spec.subjects))
        return
    config = info.config
    if config.storage != StorageType.FILE:
        raise BusMisconfigured(
            f"stream {spec.name} keeps messages in {config.storage}, not on file: "
            "delete it (nats stream rm) and let the service create it again"
        )
    if config.retention is not None and config.retention != spec.retention:
        raise BusMisconfigured(
            f"stream {spec.name} has retention {config.retention}, not {spec.retention}: "
            "delete it (nats stream rm) and let the service create it again"
        )
    missing = [s for s in spec.subjects if s not in (config.subjects or [])]
    if missing:
        config.subjects = [*(config.subjects or []), *missing]
        await js.update_stream(config)
        log.info("nats_stream_subjects_added", stream=spec.name, subjects=missing)
    if (config.duplicate_window or 0) < spec.duplicate_window:
        log.warning(
            "nats_duplicate_window_short",
            stream=spec.name,
            seconds=config.duplicate_window,
            wanted=spec.duplicate_window,
        )


NO_MESSAGE_FOUND = 10057  # JetStream's error code when a message to delete is not there


async def _forget_in_stream(js: JetStreamContext, stream: str, mentions_: Mentions) -> int:
    """Delete the messages of ``stream`` that mention the person, up to its last message
    when the scan began; how many."""
    state = (await js.stream_info(stream)).state
    seq, deleted = state.first_seq, 0
    while seq <= state.last_seq:
        try:  # the next message at or after seq (deleted ones leave gaps)
            message = await js.get_msg(stream, seq=seq, next=True, subject=">")
        except nats.js.errors.NotFoundError:
            break
        headers = message.headers or {}
        written = "".join(f"\n{k}: {v}" for k, v in headers.items()).encode()
        if mentions_.found_in(message.data or b"", written):
            deleted += await _delete_message(js, stream, int(message.seq or seq))
        seq = int(message.seq or seq) + 1
    return deleted


async def _delete_message(js: JetStreamContext, stream: str, seq: int) -> int:
    """1 if this call deleted the message, 0 if it was gone already: a work-queue message
    consumed between the read and the delete, or one another scan deleted first."""
    try:
        await js.delete_msg(stream, seq)
    except nats.js.errors.NotFoundError:
        return 0
    except nats.js.errors.APIError as exc:
        if exc.err_code != NO_MESSAGE_FOUND:
            raise
        return 0
    return 1


def _monitor_url(value: str | None) -> str | None:
    if not value:
        return None
    if "://" not in value:
        value = f"http://{value}"
    return value.rstrip("/")
