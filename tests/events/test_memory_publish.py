"""The in-process bus's shared publish transactions: a stopped writer leaves no publish
waiting for ever."""

from __future__ import annotations

import asyncio

import pytest

from events.conftest import Sessions
from media_service.events.memory_publish import DeliveryWriter


async def test_publishes_fail_rather_than_wait_when_the_writer_is_stopped(
    sessions: Sessions,
) -> None:
    writer = DeliveryWriter(sessions)
    first = asyncio.create_task(writer.write("stopped.a", b"{}", "stopped-1"))
    await asyncio.sleep(0)  # the writer's task has started its transaction
    queued = asyncio.create_task(writer.write("stopped.b", b"{}", "stopped-2"))
    await asyncio.sleep(0)
    task = writer._writing
    assert task is not None
    task.cancel()
    for publish in (first, queued):
        with pytest.raises(RuntimeError, match="stopped"):
            await asyncio.wait_for(publish, timeout=5)
    await writer.close()
    assert await writer.write("stopped.c", b"{}", "stopped-3") == set()  # a new writer task
