"""In which order a frame shows a schedule's photos. Pure: no I/O, no clock.

Time since the schedule's anchor is cut into slots of ``rotation_interval`` seconds; every
``n`` slots (``n`` photos) make a *cycle*, inside which each photo is shown once. A shuffled
cycle orders photos by a hash of (seed, cycle, photo id): every replica computes the same
order without sharing state, and adding a photo does not move the others. Asked for,
photos added in the week before the cycle began come first (each part in its own order).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

RECENT_WINDOW = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A photo a schedule may show, with what ordering looks at."""

    photo_id: str
    position: int
    added_at: datetime


@dataclass(frozen=True, slots=True)
class Position:
    """Where the rotation stands: cycle number, index of the photo on show, and when the
    cycle began and the current photo ends."""

    cycle: int
    index: int
    cycle_started_at: datetime
    next_photo_at: datetime


def position_at(now: datetime, anchor: datetime, interval: int, count: int) -> Position:
    """The rotation's position at ``now`` for ``count`` photos shown ``interval`` s each."""
    slot = max(0, int((now - anchor).total_seconds()) // interval)
    per_cycle = max(count, 1)
    cycle, index = divmod(slot, per_cycle)
    started = anchor + timedelta(seconds=cycle * per_cycle * interval)
    return Position(cycle, index, started, anchor + timedelta(seconds=(slot + 1) * interval))


def cycle_order(
    photos: Sequence[Candidate],
    *,
    seed: str,
    cycle: int,
    shuffle: bool,
    recent_first: bool,
    cycle_started_at: datetime,
) -> list[str]:
    """The photo ids of one cycle, each exactly once."""
    if recent_first:
        since = cycle_started_at - RECENT_WINDOW
        recent = [photo for photo in photos if photo.added_at >= since]
        older = [photo for photo in photos if photo.added_at < since]
        return [
            *_ordered(recent, seed, cycle, shuffle),
            *_ordered(older, seed, cycle, shuffle),
        ]
    return _ordered(photos, seed, cycle, shuffle)


def _ordered(photos: Sequence[Candidate], seed: str, cycle: int, shuffle: bool) -> list[str]:
    if shuffle:
        return sorted((photo.photo_id for photo in photos), key=lambda p: _rank(seed, cycle, p))
    return [p.photo_id for p in sorted(photos, key=lambda p: (p.position, p.photo_id))]


def _rank(seed: str, cycle: int, photo_id: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{cycle}\x00{photo_id}".encode()).digest()
