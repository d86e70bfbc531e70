"""Values remembered for a short time, to spare hot paths a lookup.

Used for file records on the rendition path (a second: a frame wall asking for the same
photo many times a second needs its record once a second, not once a request; a change
made elsewhere is seen up to a second late, and access is still checked on every request
against the remembered record) and for verified bearer tokens (``auth/tokens.py``: up to
five minutes, never past the token's expiry; tokens are immutable).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from media_service.singleflight import SingleFlight

T = TypeVar("T")
REFRESH_AHEAD = 0.2  # of the ttl: get_or_load reloads an entry in its last fifth


class RecentValues(Generic[T]):
    """A bounded map whose entries expire ``ttl`` seconds after they were put."""

    def __init__(
        self, ttl: float = 1.0, max_items: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_items = max_items
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._loads: SingleFlight[T | None] = SingleFlight()
        self._forgets = 0  # a load that began before a forget does not put its value

    def get(self, key: str) -> T | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._items[key]
            return None
        return value

    def put(self, key: str, value: T, ttl: float | None = None) -> None:
        """Remember ``value`` for ``ttl`` seconds (the map's own ``ttl`` if not given)."""
        self._items.pop(key, None)
        self._items[key] = (self._clock() + (self.ttl if ttl is None else ttl), value)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    async def get_or_load(self, key: str, load: Callable[[], Awaitable[T | None]]) -> T | None:
        """The remembered value, or else ``load()``'s, remembered unless it is ``None``.

        Callers that miss at the same moment share one load, and an entry asked for in the
        last fifth of its ttl is loaded again in the background. Without either, every
        request in flight when an entry expired read the database at once: with 32
        connections asking for one warm rendition, all 32 stalled together for 0.3–1 s
        about once a second.
        """
        entry = self._items.get(key)
        now = self._clock()
        if entry is not None and now < entry[0]:
            if now >= entry[0] - self.ttl * REFRESH_AHEAD:
                # In its last stretch: read it again in the background, so that steady
                # traffic never waits for a load (and no value is older than ttl).
                self._loads.start(self._flight(key), lambda: self._load(key, load))
            return entry[1]
        return await self._loads.run(self._flight(key), lambda: self._load(key, load))

    def _flight(self, key: str) -> str:
        # Keyed by the forgets so far: a caller after a forget starts a load of its own.
        return f"{self._forgets}:{key}"

    async def _load(self, key: str, load: Callable[[], Awaitable[T | None]]) -> T | None:
        forgets = self._forgets
        value = await load()
        if forgets != self._forgets:
            return value
        if value is None:  # gone (a reload ahead found a deleted file): stop serving it
            self._items.pop(key, None)
        else:
            self.put(key, value)
        return value

    def forget(self, key: str) -> None:
        """Drop ``key``; a load already under way will not remember what it read."""
        self._items.pop(key, None)
        self._forgets += 1

    def forget_prefix(self, prefix: str) -> None:
        """:meth:`forget` every key that starts with ``prefix``."""
        for key in [key for key in self._items if key.startswith(prefix)]:
            del self._items[key]
        self._forgets += 1
