"""HTTP responses that carry a stored file's bytes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fastapi import Response
from fastapi.responses import StreamingResponse

from media_service.media.filenames import content_disposition
from media_service.media.models import FileType, MediaFile
from media_service.storage import ByteRange

PRIVATE_MAX_AGE = 3600


def file_etag(file: MediaFile) -> str:
    """A strong validator: the content's SHA-256 (a file's bytes never change)."""
    return f'"{file.sha256}"'


def etag_matches(header: str | None, etag: str) -> bool:
    """``If-None-Match`` semantics: ``*`` or any listed tag, weak or strong."""
    if not header:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag in tags


async def content_response(
    file: MediaFile,
    body: AsyncIterator[bytes] | None,
    byte_range: ByteRange | None,
    *,
    signed_expiry: int | None = None,
) -> Response:
    """200 or 206 with a server-chosen type, ``nosniff`` and private caching.

    ``body`` is ``None`` for HEAD. The first chunk is read before the response starts, so
    a storage failure becomes a proper error response instead of a truncated body.
    """
    headers = _headers(file, byte_range, signed_expiry)
    status = 206 if byte_range else 200
    if body is None:
        return Response(status_code=status, headers=headers, media_type=file.content_type)
    first = await anext(body, b"")
    return StreamingResponse(
        _prepend(first, body), status_code=status, headers=headers, media_type=file.content_type
    )


def _headers(
    file: MediaFile, byte_range: ByteRange | None, signed_expiry: int | None
) -> dict[str, str]:
    length = byte_range.length if byte_range else file.file_size
    max_age = PRIVATE_MAX_AGE
    if signed_expiry is not None:
        max_age = max(0, min(PRIVATE_MAX_AGE, signed_expiry - int(time.time())))
    headers = {
        "Content-Length": str(length),
        "Accept-Ranges": "bytes",
        "ETag": file_etag(file),
        "Cache-Control": f"private, max-age={max_age}",
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": content_disposition(
            file.file_name, inline=file.file_type is FileType.IMAGE
        ),
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    if byte_range:
        headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{file.file_size}"
    return headers


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk
