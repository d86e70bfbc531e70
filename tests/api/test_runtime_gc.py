"""A started service runs the garbage collector with its own thresholds (``runtime.py``)."""

from __future__ import annotations

import gc

import httpx
from asgi_lifespan import LifespanManager

from media_service.app import create_app
from media_service.runtime import GC_THRESHOLDS

from conftest import Stack


async def test_the_collector_runs_full_passes_rarely(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    assert (await client.get("/health/live")).status_code == 200  # the app has started
    assert gc.get_threshold() == GC_THRESHOLDS
    young, middle, old = GC_THRESHOLDS
    assert young > 700 and young * middle * old >= 10_000_000  # far above the defaults


async def test_a_stopped_service_gives_the_collector_back(stack: Stack) -> None:
    before = gc.get_threshold()
    app = create_app(stack.settings, stack.state)
    async with LifespanManager(app):
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    # Nothing stays frozen (each test's start would otherwise keep its garbage for good).
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
