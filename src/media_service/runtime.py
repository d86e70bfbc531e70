"""Background work of a running service: the bus, the domains' consumers, the relay."""

from __future__ import annotations

import gc
from typing import Any

from media_service.events import IdempotentConsumer, start_consumer
from media_service.frames import cache_jobs as frame_cache
from media_service.frames.cache_consumers import forget_deleted_photos, invalidate_new_versions
from media_service.jobs import JobHandler, JobRegistry, Worker
from media_service.media.consumers import purge_deleted_files
from media_service.metadata import jobs as metadata
from media_service.metadata.consumers import create_metadata_records
from media_service.playlists.consumers import check_smart_playlists, leave_playlists
from media_service.preprocessing import jobs as preprocessing
from media_service.preprocessing.consumers import preprocess_uploaded_files
from media_service.privacy import jobs as privacy
from media_service.state import ServiceState
from media_service.versions import jobs as versions
from media_service.versions.consumers import create_original_versions

# The garbage collector's thresholds (Python's defaults: 700, 10, 10). What lives on after
# start-up (kept feeds, signed-URL and statement caches) piles up after the freeze below;
# with the defaults, full passes over it ran every few seconds under load, 35-105 ms each
# (measured with gc.callbacks during bench/frames.py), and were the 100+ ms stalls in the
# feed's p99. With these, young passes come every 5,000 net allocations and stay under
# ~30 ms, and full passes are rare.
GC_THRESHOLDS = (5_000, 20, 100)


def domain_consumers(state: ServiceState) -> list[IdempotentConsumer[Any]]:
    """Every domain's event consumers (each a durable subscription of its own)."""
    return [
        purge_deleted_files(state.blobs),
        preprocess_uploaded_files(state),
        create_metadata_records(state),
        check_smart_playlists(state),
        leave_playlists(state),
        create_original_versions(state),
        invalidate_new_versions(state),
        forget_deleted_photos(state),
    ]


# Every job type some code enqueues; start-up fails unless each has exactly one handler.
ENQUEUED_JOBS: tuple[str, ...] = (
    preprocessing.PREPROCESS,
    *metadata.ENQUEUED,
    *versions.ENQUEUED,
    *frame_cache.ENQUEUED,
    *privacy.ENQUEUED,
)


def domain_jobs(state: ServiceState) -> list[JobHandler[Any]]:
    """Every domain's job handlers (one durable consumer per job type)."""
    return [
        *preprocessing.preprocessing_jobs(state),
        *metadata.metadata_jobs(state),
        *versions.version_jobs(state),
        *frame_cache.cache_jobs(state),
        *privacy.privacy_jobs(state),
    ]


async def start_background(state: ServiceState) -> None:
    """Connect the bus, subscribe the consumers, then start relaying the outbox.

    Consumers subscribe before the relay runs, so the in-process bus (which delivers to
    the consumers that exist when a message is published) never misses one.
    """
    registry = JobRegistry(domain_jobs(state))
    registry.validate(ENQUEUED_JOBS)
    await state.bus.start()
    for consumer in domain_consumers(state):
        await start_consumer(state.bus, state.sessions, consumer)
    await Worker(state.bus, state.sessions, registry).start()
    state.relay.start()
    state.housekeeping.start()
    state.seen.start()
    state.loops.append(state.seen)
    rounds = frame_cache.FrameCacheLoop(
        state, interval=state.settings.frame_precache_interval_seconds
    )
    if rounds.interval > 0:  # in serve and in worker: whichever processes run
        rounds.start()
        state.loops.append(rounds)
    tune_collector()


_thresholds_before: tuple[int, int, int] | None = None


def tune_collector() -> None:
    """Freeze what start-up loaded and raise the collector's thresholds (see
    ``GC_THRESHOLDS``); :func:`restore_collector` undoes both."""
    global _thresholds_before
    if _thresholds_before is None:
        _thresholds_before = gc.get_threshold()
    # Everything loaded at start-up lives as long as the process: keep it out of the
    # garbage collector's full passes (they paused requests for 65-80 ms at 140k objects).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def restore_collector() -> None:
    """Undo :func:`tune_collector` when the service stops: in a process that goes on
    (tests start and stop an app per test) frozen objects would never be collected, and
    what each start froze, garbage included, stayed for good (test workers grew to 2 GB)."""
    global _thresholds_before
    gc.unfreeze()
    if _thresholds_before is not None:
        gc.set_threshold(*_thresholds_before)
        _thresholds_before = None
