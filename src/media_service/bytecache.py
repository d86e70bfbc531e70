"""A bounded in-memory cache of small immutable objects (least recently used goes first).

Stored renditions never change once written (a new size is a new key), so serving them
from memory is always correct; the caller still checks access before every read.
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_BUDGET = 64 * 1024 * 1024  # bytes held at most
MAX_ITEM = 2 * 1024 * 1024  # larger objects are not kept


class BytesCache:
    """LRU by total size. Not thread-safe: use it from the event loop only."""

    def __init__(self, budget: int = DEFAULT_BUDGET, max_item: int = MAX_ITEM) -> None:
        self.budget = budget
        self.max_item = max_item
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        data = self._items.get(key)
        if data is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_item or key in self._items:
            return
        self._items[key] = data
        self.size += len(data)
        while self.size > self.budget:
            _, evicted = self._items.popitem(last=False)
            self.size -= len(evicted)

    def discard_prefix(self, prefix: str) -> None:
        """Forget every key under ``prefix`` (a deleted file's folder)."""
        for key in [key for key in self._items if key.startswith(prefix)]:
            self.size -= len(self._items.pop(key))
