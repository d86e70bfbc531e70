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
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class RecentValues(Generic[T]):
    """A bounded map whose entries expire ``ttl`` seconds after they were put."""

    def __init__(
        self, ttl: float = 1.0, max_items: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_items = max_items
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, T]] = OrderedDict()

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

    def forget(self, key: str) -> None:
        self._items.pop(key, None)
