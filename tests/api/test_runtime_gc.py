"""A started service runs the garbage collector with its own thresholds (``runtime.py``)."""

from __future__ import annotations

import gc

import httpx

from media_service.runtime import GC_THRESHOLDS

from conftest import Stack


async def test_the_collector_runs_full_passes_rarely(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    assert (await client.get("/health/live")).status_code == 200  # the app has started
    assert gc.get_threshold() == GC_THRESHOLDS
    young, middle, old = GC_THRESHOLDS
    assert young > 700 and young * middle * old >= 10_000_000  # far above the defaults
