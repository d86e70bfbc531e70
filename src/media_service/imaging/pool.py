"""Run imaging work in worker processes, off the event loop.

Decoders are native code fed with untrusted bytes: a crash, an out-of-memory kill or a
hang must cost one call, not the service. Each worker process is driven by one dispatcher
thread over its own pipe, so a dead or stuck worker is noticed by exactly the call it was
running, which fails with ``ImagingError`` while that worker alone is replaced; other calls
carry on. (``concurrent.futures.ProcessPoolExecutor`` breaks the whole pool on one death,
and on Python 3.11 its clean-up can race with new submissions and hang at exit.)

Workers are started with ``spawn``, since the service process has threads and an event loop
and forking it is unsafe, and only when first needed. This module imports no libvips.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar, cast

from media_service.imaging.errors import ImagingError
from media_service.imaging.worker import worker_main

T = TypeVar("T")
_STOP_GRACE = 2.0  # seconds a worker gets to exit on its own before it is killed


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self) -> None:
        here, there = multiprocessing.Pipe()
        self.process: BaseProcess = multiprocessing.get_context("spawn").Process(
            target=worker_main, args=(there,), daemon=True, name="imaging-worker"
        )
        self.process.start()
        there.close()  # so that the worker sees EOF, and exits, if this process dies
        self.conn: Connection = here

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None) -> Any:
        """Run ``fn(*args)`` in the worker; raise ``ImagingError`` if it dies or hangs."""
        try:
            self.conn.send((fn, args))
            ready = wait([self.conn, self.process.sentinel], timeout)
            reply = self.conn.recv() if self.conn in ready else None
        except (EOFError, OSError) as exc:  # the pipe broke: the worker is gone
            self.stop(kill=True)
            raise ImagingError("imaging worker crashed") from exc
        if reply is not None:
            ok, value = reply
            if ok:
                return value
            raise value  # the function's own error (an OSError too), raised here, not above
        self.stop(kill=True)
        if ready:
            raise ImagingError("imaging worker crashed")
        raise ImagingError(f"imaging call timed out after {timeout} s")

    def stop(self, *, kill: bool = False) -> None:
        """Ask the worker to exit (closing its pipe), or kill it; then reap it."""
        if kill:
            self.process.kill()
        self.conn.close()
        self.process.join(_STOP_GRACE)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class ImagingPool:
    """Worker processes for CPU-bound imaging calls, one per core by default.

    ``fn`` given to :meth:`run` must be a picklable module-level function; its exceptions
    are re-raised in the caller. The pool may be shared by several event loops.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None
        self._local = threading.local()  # each dispatcher thread owns one worker
        self._running: set[_Worker] = set()

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109 - on expiry the worker must be killed
    ) -> T:
        """Run ``fn(*args)`` in a worker process and return its result.

        Raises ``ImagingError`` if the worker dies (it is replaced for the next call) or if
        ``timeout`` seconds pass (the worker is killed: native code cannot be interrupted).
        """
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._dispatchers(), self._call, fn, args, timeout)
        return cast(T, result)

    async def close(self) -> None:
        """Stop the workers once running calls finish; a later :meth:`run` restarts them."""
        with self._lock:
            threads, self._threads = self._threads, None
        if threads is not None:
            await asyncio.to_thread(threads.shutdown, wait=True)
        with self._lock:
            workers, self._running = self._running, set()
        for worker in workers:
            await asyncio.to_thread(worker.stop)

    def _dispatchers(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="imaging")
            return self._threads

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None) -> Any:
        worker = self._own_worker()
        try:
            return worker.call(fn, args, timeout)
        except ImagingError:
            if not worker.process.is_alive():
                self._forget(worker)
            raise

    def _own_worker(self) -> _Worker:
        worker: _Worker | None = getattr(self._local, "worker", None)
        if worker is None or not worker.process.is_alive():
            worker = _Worker()
            self._local.worker = worker
            with self._lock:
                self._running.add(worker)
        return worker

    def _forget(self, worker: _Worker) -> None:
        self._local.worker = None
        with self._lock:
            self._running.discard(worker)


_shared: ImagingPool | None = None
_shared_lock = threading.Lock()


def shared_pool(workers: int | None = None) -> ImagingPool:
    """The process-wide pool, created on first use (``workers`` only counts then).

    Every app instance in one process (tests create many) shares it, instead of each
    starting one worker per core.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ImagingPool(workers)
        return _shared
