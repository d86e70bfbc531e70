"""The worker pool: real processes, crash and timeout recovery, worker settings."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from media_service.imaging.errors import ImagingError, UnsupportedImage
from media_service.imaging.pool import ImagingPool, shared_pool

# Module-level functions: the workers import this module to unpickle them.


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def record_pid_then_sleep(path: str, seconds: float) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)


def unpicklable_result() -> object:
    return lambda: None


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8"/></svg>'


def worker_settings() -> tuple[int, int, bool]:
    import pyvips

    try:  # libvips can render SVG (librsvg), but svgload is an untrusted loader
        pyvips.Image.new_from_buffer(SVG, "").avg()
        untrusted_blocked = False
    except pyvips.Error:
        untrusted_blocked = True
    return pyvips.concurrency_get(), pyvips.cache_get_max(), untrusted_blocked


def refuse() -> None:
    raise UnsupportedImage("nope")


async def test_runs_in_parallel_worker_processes(pool: ImagingPool) -> None:
    # Start both workers outside the timed part (each starts on its first call).
    await asyncio.gather(pool.run(pid_after, 0.2), pool.run(pid_after, 0.2))
    start = time.perf_counter()
    pids = await asyncio.gather(pool.run(pid_after, 1.0), pool.run(pid_after, 1.0))
    assert time.perf_counter() - start < 1.8
    assert len(set(pids)) == 2 and os.getpid() not in pids


async def test_workers_are_configured_for_untrusted_input(pool: ImagingPool) -> None:
    assert await pool.run(worker_settings) == (1, 0, True)


async def test_errors_from_the_function_pass_through(pool: ImagingPool) -> None:
    with pytest.raises(UnsupportedImage, match="nope"):
        await pool.run(refuse)


async def test_crashed_worker_raises_and_the_pool_recovers(pool: ImagingPool) -> None:
    with pytest.raises(ImagingError, match="crashed"):
        await pool.run(kill_self)
    assert await pool.run(pid_after, 0) != os.getpid()
    with pytest.raises(ImagingError, match="crashed"):  # and again: it was rebuilt, not spent
        await pool.run(kill_self)
    assert await pool.run(pid_after, 0) > 0


async def test_a_crash_fails_only_its_own_call(pool: ImagingPool) -> None:
    slow = asyncio.ensure_future(pool.run(pid_after, 1.0))
    await asyncio.sleep(0.2)
    with pytest.raises(ImagingError, match="crashed"):
        await pool.run(kill_self)
    assert await slow > 0


async def test_timeout_kills_the_stuck_worker(pool: ImagingPool, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    # Warm every worker first: on a loaded machine a freshly spawned one can take longer
    # than the timeout to start, and would then be killed before writing its pid.
    await asyncio.gather(*(pool.run(pid_after, 0) for _ in range(pool.workers * 2)))
    start = time.perf_counter()
    with pytest.raises(ImagingError, match="timed out"):
        await pool.run(record_pid_then_sleep, str(pid_file), 60, timeout=2.0)
    assert time.perf_counter() - start < 10
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # killed and reaped
    assert await pool.run(pid_after, 0) > 0


async def test_unpicklable_result_is_an_imaging_error(pool: ImagingPool) -> None:
    with pytest.raises(ImagingError, match="cannot be returned"):
        await pool.run(unpicklable_result)
    assert await pool.run(pid_after, 0) > 0


async def test_close_then_run_restarts() -> None:
    pool = ImagingPool(workers=1)
    first = await pool.run(pid_after, 0)
    await pool.close()
    second = await pool.run(pid_after, 0)
    await pool.close()
    assert first != second


def test_shared_pool_is_one_instance() -> None:
    assert shared_pool() is shared_pool(3) is shared_pool()
    assert shared_pool().workers >= 1


def test_default_size_is_one_worker_per_core() -> None:
    assert ImagingPool().workers == os.cpu_count()


async def test_an_os_error_raised_by_the_function_is_its_own_error_not_a_crash(
    pool: ImagingPool,
) -> None:
    """A missing file is the caller's problem, not a dead worker."""
    with pytest.raises(FileNotFoundError):
        await pool.run(os.stat, "/nonexistent/file.jpg")
    assert await pool.run(os.getpid) > 0
