"""Stopping background tasks: bounded, and loud about what held them up."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from media_service.tasks import cancel_and_wait, stop_gracefully


async def test_a_task_that_stops_when_cancelled_is_stopped_at_once() -> None:
    task = asyncio.create_task(asyncio.sleep(60), name="sleeper")
    assert await cancel_and_wait(task, grace=5)
    assert task.cancelled()


async def test_a_task_stuck_in_a_shielded_wait_is_cancelled_again_and_its_stack_logged() -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.shield(asyncio.sleep(60))  # a clean-up that would take a minute

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with capture_logs() as logs:
        assert await cancel_and_wait(task, grace=0.2)
    assert task.cancelled()
    slow = [entry for entry in logs if entry["event"] == "task_slow_to_stop"]
    assert len(slow) == 1
    assert slow[0]["task"] == "stubborn"
    assert "stubborn" in slow[0]["stack"]


async def test_a_task_that_ignores_cancellation_is_abandoned_with_an_error() -> None:
    release = asyncio.Event()

    async def deaf() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                continue  # the bug this guards against: a swallowed cancellation

    task = asyncio.create_task(deaf(), name="deaf")
    await asyncio.sleep(0)
    with capture_logs() as logs:
        assert not await cancel_and_wait(task, grace=0.1)
    assert [entry["event"] for entry in logs] == [
        "task_slow_to_stop",
        "task_slow_to_stop",
        "task_abandoned",
    ]
    release.set()
    task.cancel()
    await asyncio.wait({task})


async def test_a_task_that_failed_is_reported_finished_without_raising() -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, grace=1)


async def test_a_loop_asked_to_stop_finishes_its_iteration_without_being_cancelled() -> None:
    stop = asyncio.Event()
    finished: list[str] = []

    async def loop() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.01)
        finished.append("clean")

    task = asyncio.create_task(loop())
    assert await stop_gracefully(task, stop.set, grace=2)
    assert finished == ["clean"] and not task.cancelled()


async def test_a_loop_that_ignores_the_request_is_cancelled_after_the_grace() -> None:
    task = asyncio.create_task(asyncio.sleep(60))
    with capture_logs() as logs:
        assert await stop_gracefully(task, lambda: None, grace=0.05)
    assert task.cancelled()
    assert logs == []  # cancellation worked at once: nothing slow to report
