"""File names as clients send them: sanitised for display, never used as storage keys."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

FALLBACK_NAME = "file"
# Characters that are legal in Unicode but dangerous in a name shown to people or put
# into a header: path separators, quotes, and reserved characters on common filesystems.
_REPLACED = str.maketrans({c: "_" for c in '/\\"<>:|?*'})


def sanitize_file_name(raw: str | None, *, max_length: int = 255) -> str:
    """A display-safe version of a client's file name.

    The last path component only; control and format characters (CR, LF, NUL,
    right-to-left overrides, zero-width joiners) removed; NFC-normalised; separators and
    quotes replaced; no leading dots or spaces, no trailing spaces; at most
    ``max_length`` characters with the extension kept when the name is cut. Sanitising
    a sanitised name changes nothing.
    """
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    # After the removals: "e<NUL><combining acute>" must become one "é".
    name = unicodedata.normalize("NFC", name)
    name = name.translate(_REPLACED)
    name = " ".join(name.split()).lstrip(". ")
    if not name:
        return FALLBACK_NAME[:max_length]
    return _shorten(name, max_length)


def _shorten(name: str, max_length: int) -> str:
    if len(name) <= max_length:
        return name
    stem, dot, ext = name.rpartition(".")
    room = max_length - len(ext) - 1
    if dot and 0 < len(ext) <= 16 and stem and room > 0:
        # stem starts with neither a space nor a dot, so the cut stem is never empty.
        return stem[:room].rstrip() + "." + ext
    return name[:max_length].rstrip()


def content_disposition(file_name: str, *, inline: bool) -> str:
    """A ``Content-Disposition`` value with an ASCII fallback and RFC 8187 UTF-8 name."""
    disposition = "inline" if inline else "attachment"
    ascii_name = unicodedata.normalize("NFKD", file_name).encode("ascii", "ignore").decode("ascii")
    ascii_name = "".join(ch for ch in ascii_name if ch.isprintable() and ch not in '"\\;')
    ascii_name = ascii_name.strip() or FALLBACK_NAME
    encoded = quote(file_name, safe="")
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"
