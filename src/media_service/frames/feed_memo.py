"""Feeds this process has built, kept so that an idle frame's poll costs one small query
instead of a rebuild.

A feed is a function of rows (the frame, its schedules, their playlists and items, the
items' files, metadata and current versions, the frame's cached photos) and of the time.
:func:`feed_inputs.frame_and_inputs` reads the frame with a fingerprint of every row the
build reads, in one statement; a kept feed is served again only while that fingerprint is
unchanged and the time is before the first instant at which the time alone would change it
(``valid_until``). Every replica keeps its own memo and checks the database on every
request, so a change made through any replica shows on the next poll.

The poll's transaction reads one snapshot (``db.uow.begin_snapshot``): the build reads
the rows the fingerprint describes, even if a change commits meanwhile, so the feed it
builds can be kept under that fingerprint without reading it again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

DEFAULT_BUDGET = 64 * 1024 * 1024  # bytes of feed bodies kept at most (MEDIA_FEED_MEMORY_BYTES)


@dataclass(frozen=True, slots=True)
class FeedInputs:
    """A fingerprint of everything a frame's feed is built from, time aside. Equal
    fingerprints mean equal rows (each part lists the rows' relevant columns)."""

    frame: tuple[object, ...]
    schedules: str | None
    playlists: str | None
    items: str | None
    cached: str | None


@dataclass(frozen=True, slots=True)
class KeptFeed:
    """A built feed, valid for ``inputs`` from ``built_at`` until ``valid_until``."""

    inputs: FeedInputs
    built_at: datetime
    valid_until: datetime
    body: bytes
    etag: str

    @property
    def size(self) -> int:
        """Bytes it holds: the body and the fingerprint's digests."""
        inputs = self.inputs
        parts = (inputs.schedules, inputs.playlists, inputs.items, inputs.cached)
        return len(self.body) + sum(len(part or "") for part in parts)


class FeedMemo:
    """The feeds last built per frame, least recently used dropped first past ``budget``
    bytes. Not thread-safe: use it from the event loop only."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._feeds: OrderedDict[str, KeptFeed] = OrderedDict()

    def get(self, frame_id: str, inputs: FeedInputs, at: datetime) -> KeptFeed | None:
        """The kept feed of the frame if it was built from ``inputs`` and is valid at ``at``."""
        kept = self._feeds.get(frame_id)
        if kept is None or kept.inputs != inputs or not kept.built_at <= at < kept.valid_until:
            self.misses += 1
            return None
        self._feeds.move_to_end(frame_id)
        self.hits += 1
        return kept

    def put(self, frame_id: str, kept: KeptFeed) -> None:
        """Keep ``kept`` as the frame's feed (replacing the one before)."""
        self.discard(frame_id)
        if kept.size > self.budget:
            return
        self._feeds[frame_id] = kept
        self.size += kept.size
        while self.size > self.budget:
            _, dropped = self._feeds.popitem(last=False)
            self.size -= dropped.size

    def discard(self, frame_id: str) -> None:
        """Forget the frame's kept feed, if any."""
        dropped = self._feeds.pop(frame_id, None)
        if dropped is not None:
            self.size -= dropped.size

    def __len__(self) -> int:
        return len(self._feeds)
