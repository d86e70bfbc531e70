"""Prometheus metrics at ``/metrics``.

Each app has its own :class:`ServiceMetrics` (its own ``CollectorRegistry``, built by
``create_app``), so nothing is registered at import and two apps in one process (tests)
do not share counters. Counters move as the relay and the consumers report to it (see
``events.observer``); the outbox, dead-letter and job gauges are read from the database
(and the bus) when ``/metrics`` is scraped, asynchronously, before the text is generated,
so a scrape never blocks the event loop on a query.

Jobs by state (``media_jobs{state=...}``): ``queued`` are job rows still in the outbox
(not yet published), ``waiting`` are published jobs the job consumers (``job_*``) have not
acknowledged yet (their bus lag: not started, running, or waiting for a retry), ``dead``
are job dead letters not yet retried. A job published before any worker of its type
subscribed is in none of them on NATS (the stream keeps it until a worker comes).
"""

from __future__ import annotations

import asyncio
import hmac
import math
from collections.abc import Mapping
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from pydantic import SecretStr

from media_service.deps import StateDep
from media_service.errors import Unauthorized
from media_service.events import DeadLetterRepository, OutboxRepository
from media_service.events.bus import describe_error
from media_service.events.observer import observe_events
from media_service.frames.cache_repository import frame_hit_rates
from media_service.jobs.registry import CONSUMER_PREFIX, SUBJECT_PREFIX
from media_service.metadata.ai import AI_ANALYSIS
from media_service.playlists.service import PLAYLIST_QUERY
from media_service.state import ServiceState

log = structlog.get_logger(__name__)

SCRAPE_QUERY_TIMEOUT = 5.0
MAX_HIT_RATE_FRAMES = 1000


class ServiceMetrics:
    """The metrics of one app; also the :class:`events.observer.EventObserver` of its
    relay and consumers."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.outbox_backlog = Gauge(
            "media_outbox_backlog", "Outbox rows not yet published", registry=registry
        )
        self.outbox_oldest_age = Gauge(
            "media_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row (0 when none)",
            registry=registry,
        )
        self.dead_letters = Gauge(
            "media_dead_letters", "Dead letters not yet retried", registry=registry
        )
        self.jobs = Gauge(
            "media_jobs",
            "Jobs by state: queued (in the outbox), waiting (published, not yet acknowledged "
            "by a worker), dead (dead letters not yet retried)",
            ["state"],
            registry=registry,
        )
        self.jobs_oldest_queued_age = Gauge(
            "media_jobs_oldest_queued_age_seconds",
            "Age of the oldest job still in the outbox (0 when none)",
            registry=registry,
        )
        self.events_published = Counter(
            "media_events_published",
            "Events the bus acknowledged and the relay marked published",
            ["event_type"],
            registry=registry,
        )
        self.events_handled = Counter(
            "media_events_handled",
            "Events a consumer applied (effect committed)",
            ["consumer"],
            registry=registry,
        )
        self.events_duplicate = Counter(
            "media_events_duplicate",
            "Events a consumer had already applied and skipped",
            ["consumer"],
            registry=registry,
        )
        self.cache_hit_rate = Gauge(
            "media_cache_hit_rate",
            "Share of a frame's reported photo accesses served from its cache",
            ["frame_id"],
            registry=registry,
        )
        self.requests = Counter(
            "media_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "media_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by route template",
            ["method", "route"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
        )
        # The spec's series (003, "Monitoring & Observability"), by these exact names.
        self.photo_versions = Counter(
            "media_photo_versions",
            "Photo versions created (media.version.created published), by type",
            ["version_type"],
            registry=registry,
        )
        self.smart_playlist_updates = Counter(
            "media_smart_playlist_update",
            "Changes of a smart playlist's content (media.playlist.updated of a SMART one)",
            registry=registry,
        )
        self.ai_analysis_duration = Histogram(
            "media_ai_analysis_duration_seconds",
            "One call to the external AI service for a photo's labels",
            registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.playlist_query_duration = Histogram(
            "media_playlist_query_duration_seconds",
            "Reading a page of a playlist's photos",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.upload_bytes = Counter(
            "media_upload_bytes",
            "Bytes of new uploads stored, by file type (counted as their file.uploaded leaves)",
            ["file_type"],
            registry=registry,
        )
        self.uploads = Counter(
            "media_uploads",
            "New uploads stored, by file type (duplicates of stored files not counted)",
            ["file_type"],
            registry=registry,
        )
        self.handler_failures = Counter(
            "media_event_handler_failures",
            "Deliveries whose handler raised or rejected the message",
            ["consumer"],
            registry=registry,
        )

    # -- EventObserver ----------------------------------------------------------------------

    def published(self, kind: str, subject: str, payload: Mapping[str, Any]) -> None:
        if kind != "event":  # jobs are counted by the job queue's own metrics
            return
        self.events_published.labels(event_type=subject).inc()
        if subject == "file.uploaded":
            # Our own uploads only: an external storage service's file.uploaded is
            # consumed here, never published by our relay.
            file_type = str(payload.get("file_type"))
            self.uploads.labels(file_type=file_type).inc()
            self.upload_bytes.labels(file_type=file_type).inc(_size(payload))
        elif subject == "media.version.created":
            self.photo_versions.labels(version_type=str(payload.get("version_type"))).inc()
        elif subject == "media.playlist.updated" and payload.get("playlist_type") == "SMART":
            self.smart_playlist_updates.inc()

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request answered (see ``middleware.RequestContextMiddleware``)."""
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.request_duration.labels(method=method, route=route).observe(seconds)

    def observed(self, name: str, seconds: float) -> None:
        """A duration a domain measured (``state.observations``)."""
        histogram = {
            AI_ANALYSIS: self.ai_analysis_duration,
            PLAYLIST_QUERY: self.playlist_query_duration,
        }.get(name)
        if histogram is not None:
            histogram.observe(seconds)

    def handled(self, consumer: str) -> None:
        self.events_handled.labels(consumer=consumer).inc()

    def duplicate(self, consumer: str) -> None:
        self.events_duplicate.labels(consumer=consumer).inc()

    def failed(self, consumer: str) -> None:
        self.handler_failures.labels(consumer=consumer).inc()

    # -- wiring -----------------------------------------------------------------------------

    def attach(self, state: ServiceState) -> None:
        """Count what the relay and consumers of ``state`` do (call before they start)."""
        observe_events(state.sessions, self)
        state.observations.listen(self.observed)
        self.registry.register(_RenderCollector(state))

    async def refresh(self, state: ServiceState) -> None:
        """Read the gauges from the database and the bus; NaN (unknown) when they cannot be
        read."""
        await self._refresh_database(state)
        await self._refresh_waiting_jobs(state)
        await self._refresh_cache_hit_rates(state)

    async def _refresh_cache_hit_rates(self, state: ServiceState) -> None:
        """Per frame (the busiest ``MAX_HIT_RATE_FRAMES``, to bound the series)."""
        try:
            async with asyncio.timeout(SCRAPE_QUERY_TIMEOUT):
                rates = await frame_hit_rates(state.read_sessions, MAX_HIT_RATE_FRAMES)
        except Exception as exc:
            log.warning("metrics_cache_refresh_failed", error=describe_error(exc))
            return
        self.cache_hit_rate.clear()
        for frame_id, rate in rates.items():
            self.cache_hit_rate.labels(frame_id=frame_id).set(rate)

    async def _refresh_database(self, state: ServiceState) -> None:
        outbox = OutboxRepository(state.sessions)
        dead_letters = DeadLetterRepository(state.sessions)
        try:
            async with asyncio.timeout(SCRAPE_QUERY_TIMEOUT):
                backlog = await outbox.backlog()
                dead = await dead_letters.count()
                jobs = await outbox.backlog(kind="job")
                dead_jobs = await dead_letters.count(subject_prefix=SUBJECT_PREFIX)
        except Exception as exc:  # a scrape must still answer: unknown, and say why in the log
            log.warning("metrics_refresh_failed", error=describe_error(exc))
            for gauge in (
                self.outbox_backlog,
                self.outbox_oldest_age,
                self.dead_letters,
                self.jobs_oldest_queued_age,
                self.jobs.labels(state="queued"),
                self.jobs.labels(state="dead"),
            ):
                gauge.set(math.nan)
            return
        self.outbox_backlog.set(backlog.pending)
        self.outbox_oldest_age.set(backlog.oldest_age_seconds or 0.0)
        self.dead_letters.set(dead)
        self.jobs.labels(state="queued").set(jobs.pending)
        self.jobs_oldest_queued_age.set(jobs.oldest_age_seconds or 0.0)
        self.jobs.labels(state="dead").set(dead_jobs)

    async def _refresh_waiting_jobs(self, state: ServiceState) -> None:
        """Published jobs not yet acknowledged: the lag of the job consumers on the bus."""
        try:
            async with asyncio.timeout(SCRAPE_QUERY_TIMEOUT):
                health = await state.bus.check()
        except Exception as exc:
            log.warning("metrics_bus_check_failed", error=describe_error(exc))
            self.jobs.labels(state="waiting").set(math.nan)
            return
        waiting = sum(
            lag for name, lag in health.consumer_lag.items() if name.startswith(CONSUMER_PREFIX)
        )
        self.jobs.labels(state="waiting").set(waiting)

    def router(self) -> APIRouter:
        router = APIRouter(tags=["operations"])

        @router.get("/metrics", response_class=Response)
        async def metrics(
            state: StateDep, authorization: Annotated[str | None, Header()] = None
        ) -> Response:
            """Prometheus metrics (text exposition format); with ``MEDIA_METRICS_TOKEN``
            set, only for ``Authorization: Bearer <that token>``."""
            require_metrics_token(state.settings.metrics_token, authorization)
            await self.refresh(state)
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        return router


def _size(payload: Mapping[str, Any]) -> int:
    size = payload.get("file_size")
    return size if isinstance(size, int) and size > 0 else 0


def require_metrics_token(token: SecretStr | None, authorization: str | None) -> None:
    """Refuse a scrape without the configured token (none configured: open, as usual for
    a port only the monitoring network reaches)."""
    if token is None:
        return
    expected = f"Bearer {token.get_secret_value()}".encode()
    if not hmac.compare_digest((authorization or "").encode(), expected):
        raise Unauthorized("/metrics needs Authorization: Bearer <MEDIA_METRICS_TOKEN>")


class _RenderCollector(Collector):
    """Renders and frame feeds of this process, read from the state's counters at scrape
    time."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state

    def collect(self) -> list[Metric]:
        renders = CounterMetricFamily(
            "media_renders",
            "Decodes run in the imaging pool, by kind (preprocess, rendition, faces, face_crop)",
            labels=["kind"],
        )
        for kind, count in sorted(self._state.render_counts.items()):
            renders.add_metric([kind], count)
        waits = CounterMetricFamily(
            "media_render_waits",
            "Requests that waited for an identical render already in flight",
        )
        waits.add_metric([], self._state.flights.joined)
        in_flight = GaugeMetricFamily(
            "media_renders_in_flight", "Distinct renders running now in this process"
        )
        in_flight.add_metric([], self._state.flights.in_flight())
        feeds = CounterMetricFamily(
            "media_frame_feeds",
            "Frame feed polls answered (200 or 304; previews aside), by whether a kept feed was"
            " served or one built",
            labels=["source"],
        )
        feeds.add_metric(["kept"], self._state.feeds.hits)
        feeds.add_metric(["built"], self._state.feeds.misses)
        return [renders, waits, in_flight, feeds]
