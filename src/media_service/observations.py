"""Durations the domains measure, for whoever exports them.

Domain code times its work with ``state.observations.timed("ai_analysis")``; the app's
metrics (``metrics.ServiceMetrics.attach``) listen and turn the names into Prometheus
histograms. Nothing is registered at import, and a process without listeners (the CLI)
measures for nobody at almost no cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog

log = structlog.get_logger(__name__)

Listener = Callable[[str, float], None]


class Observations:
    """Named durations, passed on to listeners as they happen."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        """Call ``listener(name, seconds)`` for every duration from now on."""
        self._listeners.append(listener)

    def duration(self, name: str, seconds: float) -> None:
        for listener in self._listeners:
            try:
                listener(name, seconds)
            except Exception:  # metrics must never break the work they measure
                log.warning("observation_listener_failed", name=name, exc_info=True)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Measure the block (also when it raises) as ``name``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.duration(name, time.perf_counter() - started)
