"""The streaming half of an upload: size limits, type detection and hashing on the way
to storage.

Network chunks are coalesced into blocks of about :data:`BLOCK_SIZE` (one copy each). The
first block decides the format, and with it the size limit, before anything is written;
from then on the limit is checked at every chunk. Each block is hashed in a worker thread
while the storage backend stores it and the next block arrives, so neither the event loop
nor a single core is the bottleneck. Memory stays at a few blocks whatever the file's
size.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field

from media_service.errors import BadRequest, EmptyFile, PayloadTooLarge, UnsupportedMediaType
from media_service.media.sniff import Format, sniff

BLOCK_SIZE = 1024 * 1024
FIRST_BLOCK = 64 * 1024
HEAD_BYTES = 1024 * 1024  # kept for reading image headers


@dataclass
class IngestResult:
    """What streaming the file revealed; complete once the stream is exhausted."""

    format: Format | None = None
    size: int = 0
    sha256: str = ""
    head: bytes = b""
    _hasher: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)

    @property
    def complete_in_head(self) -> bool:
        """True when ``head`` holds the whole file."""
        return self.size == len(self.head)


class Ingest:
    """Wraps a file's byte stream; iterate :meth:`blocks` into a BlobStore's ``put``."""

    def __init__(self, chunks: AsyncIterable[bytes], limit_for: Callable[[Format], int]) -> None:
        self._chunks = chunks
        self._limit_for = limit_for
        self._limit: int | None = None
        self.result = IngestResult()

    async def blocks(self) -> AsyncIterator[bytes]:
        hashing: asyncio.Future[None] | None = None
        async for block in _coalesce(self._counted()):
            if self._limit is None:
                self._limit = self._limit_for(self._detect(block))
                self._check_limit()
            self._keep_head(block)
            if hashing is not None:
                await hashing
            hashing = asyncio.ensure_future(asyncio.to_thread(self.result._hasher.update, block))
            yield block
        if hashing is not None:
            await hashing
        if self._limit is None:
            raise EmptyFile()
        self.result.sha256 = self.result._hasher.hexdigest()

    async def _counted(self) -> AsyncIterator[bytes]:
        """The chunks, counted; once the type (and so the limit) is known, an oversized
        stream stops within one network chunk of its limit, whatever the block size."""
        async for chunk in self._chunks:
            self.result.size += len(chunk)
            self._check_limit()
            yield chunk

    def _check_limit(self) -> None:
        if self._limit is not None and self.result.size > self._limit:
            raise PayloadTooLarge(f"the limit for this type is {self._limit} bytes")

    def _detect(self, first_block: bytes) -> Format:
        detected = sniff(first_block[:4096])
        if detected is None:
            raise UnsupportedMediaType(
                "the content is not one of the allowed formats "
                "(JPEG, PNG, WebP, GIF, HEIC/HEIF, AVIF, TIFF, MP4, MOV, WebM, PDF)"
            )
        self.result.format = detected
        return detected

    def _keep_head(self, block: bytes) -> None:
        room = HEAD_BYTES - len(self.result.head)
        if room > 0:
            self.result.head += block[:room]


async def _coalesce(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Regroup arbitrary chunks into blocks of at least :data:`FIRST_BLOCK` bytes (the
    first, to decide the type early), then at least :data:`BLOCK_SIZE`: each block is the
    chunks that reach that size, joined with a single copy (none for a lone chunk)."""
    parts: list[bytes] = []
    held = 0
    target = FIRST_BLOCK
    async for chunk in chunks:
        if not chunk:
            continue
        parts.append(chunk)
        held += len(chunk)
        if held >= target:
            yield _join(parts)
            parts, held, target = [], 0, BLOCK_SIZE
    if parts:
        yield _join(parts)


def _join(parts: list[bytes]) -> bytes:
    if len(parts) == 1 and type(parts[0]) is bytes:
        return parts[0]
    return b"".join(parts)


def normalise_sha256(value: str) -> str:
    """A SHA-256 given as hex or base64, as lower-case hex; :class:`BadRequest` otherwise."""
    value = value.strip()
    if len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise BadRequest("a SHA-256 checksum must be 64 hex digits or 44 base64 characters")
    return raw.hex()
