"""The HTTP ``Range`` header (RFC 9110 §14) for one file of known size.

One range is served as 206. Several ranges are answered with the whole file (200), which
the RFC allows; it also keeps a thousand overlapping ranges from costing a thousand reads.
"""

from __future__ import annotations

import re

from media_service.errors import RangeNotSatisfiable
from media_service.storage import ByteRange

# ASCII digits and HTTP whitespace only: int() would also accept "١" or "１", and \s
# would take a no-break space (a byte a latin-1 header can carry).
_SPEC = re.compile(r"^[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*$")
MAX_HEADER_LENGTH = 1024


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range ``header`` asks for, ``None`` for the whole file.

    Raises :class:`RangeNotSatisfiable` when a well-formed single range lies outside
    the file. Malformed, non-byte, or multi-range headers mean "the whole file".
    """
    if not header or len(header) > MAX_HEADER_LENGTH:
        return None
    unit, _, specs = header.partition("=")
    if unit.strip(" \t").lower() != "bytes" or "," in specs:
        return None
    match = _SPEC.match(specs)
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix range: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(0, size - length), size - 1)
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None  # syntactically invalid: ignore the header
    if start >= size:
        raise RangeNotSatisfiable(size)
    return ByteRange(start, end)
