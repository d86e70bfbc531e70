"""The photo cache's rules as pure functions: which status may follow which, when a
failed download is tried again, and which entries LRU eviction removes.

    PENDING ──claim──▶ DOWNLOADING ──stored──▶ CACHED
                          │  ▲                   │
                    error │  │ retry (back-off)  │ expires / new version / evicted
                          ▼  │                   ▼
                         FAILED ─────────────▶ EXPIRED ──wanted again──▶ PENDING

A DOWNLOADING entry whose worker died is claimed again once its lease has passed
(DOWNLOADING → DOWNLOADING). The database enforces the rest: a CACHED entry has its stored
file and size, a FAILED one its error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from media_service.frames.models import CacheStatus

PENDING, DOWNLOADING, CACHED, FAILED, EXPIRED = (
    CacheStatus.PENDING,
    CacheStatus.DOWNLOADING,
    CacheStatus.CACHED,
    CacheStatus.FAILED,
    CacheStatus.EXPIRED,
)

TRANSITIONS: dict[CacheStatus, frozenset[CacheStatus]] = {
    PENDING: frozenset({DOWNLOADING, EXPIRED}),
    DOWNLOADING: frozenset({DOWNLOADING, CACHED, FAILED, EXPIRED}),
    CACHED: frozenset({EXPIRED}),
    FAILED: frozenset({DOWNLOADING, EXPIRED}),
    EXPIRED: frozenset({PENDING}),
}


def may_move(source: CacheStatus, target: CacheStatus) -> bool:
    """Whether an entry in ``source`` may go to ``target``."""
    return target in TRANSITIONS[source]


def sources_of(target: CacheStatus) -> tuple[CacheStatus, ...]:
    """Every status from which ``target`` is legal (the ``WHERE`` of an update)."""
    return tuple(source for source in CacheStatus if may_move(source, target))


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How much a frame keeps and how downloads are retried."""

    keep_count: int = 20  # upcoming photos pre-cached, and most entries kept per frame
    byte_budget: int = 200 * 1024 * 1024  # most bytes of CACHED entries per frame
    ttl: timedelta = timedelta(days=30)  # spec 003 §5: expires_at defaults to 30 days
    retry_base: timedelta = timedelta(minutes=1)
    retry_max: timedelta = timedelta(hours=1)
    max_retries: int = 5  # after this many failures an entry waits for expiry
    lease: timedelta = timedelta(minutes=10)  # a download not finished by then is retaken


def next_attempt(policy: CachePolicy, failures: int, now: datetime) -> datetime | None:
    """When an entry that failed ``failures`` times (≥ 1) is tried again: exponential
    back-off capped at ``retry_max``; ``None`` once ``max_retries`` is reached."""
    if failures >= policy.max_retries:
        return None
    delay: timedelta = min(policy.retry_base * (2 ** (failures - 1)), policy.retry_max)
    return now + delay


@dataclass(frozen=True, slots=True)
class Held:
    """A CACHED entry as eviction sees it."""

    cache_id: str
    size: int
    last_used: datetime  # last hit, or when it was cached if never hit


def lru_victims(entries: Iterable[Held], keep_count: int, byte_budget: int) -> list[str]:
    """The entries to evict so that at most ``keep_count`` entries and ``byte_budget``
    bytes remain: the most recently used are kept, the rest go (oldest use first)."""
    ordered: Sequence[Held] = sorted(entries, key=lambda e: (e.last_used, e.cache_id), reverse=True)
    kept, used = 0, 0
    victims: list[str] = []
    for entry in ordered:
        if victims or kept >= keep_count or used + entry.size > byte_budget:
            victims.append(entry.cache_id)  # strict LRU: nothing older survives a victim
            continue
        kept, used = kept + 1, used + entry.size
    return list(reversed(victims))
