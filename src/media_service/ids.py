"""Prefixed, time-ordered identifiers such as ``file_01jd3k…``.

26 Crockford base32 characters after the prefix: 48 bits of milliseconds since the epoch
followed by 80 random bits (the ULID layout, lower-cased), so ids sort by creation time
and are safe in URLs, file names and storage keys.
"""

from __future__ import annotations

import re
import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_ID_PATTERN = re.compile(r"^[a-z]{2,8}_[0-9a-hjkmnp-tv-z]{26}$")


def new_id(prefix: str, now_ms: int | None = None) -> str:
    """A new id with ``prefix`` (e.g. ``"file"`` → ``file_…``)."""
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    value = (millis << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def is_valid_id(value: str, prefix: str) -> bool:
    """True when ``value`` has the shape of an id made by :func:`new_id` with ``prefix``."""
    return value.startswith(prefix + "_") and bool(_ID_PATTERN.match(value))
