"""Stored objects as local files, for decoders that want a path (and random access).

On the local store the object's own file is used (objects are immutable and written
atomically, so it never changes under a reader); on S3 the object is streamed to a
temporary file that is removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from media_service.storage import BlobNotFound, BlobStore
from media_service.storage.local import LocalBlobStore


@contextlib.asynccontextmanager
async def local_copy(blobs: BlobStore, key: str, tmp_dir: Path) -> AsyncIterator[str]:
    """A path holding the bytes of ``key`` for the duration of the block."""
    if isinstance(blobs, LocalBlobStore):
        yield str(blobs.path_for(key))
        return
    out, path = await asyncio.to_thread(_new_temporary, tmp_dir)
    try:
        with out:
            async for chunk in blobs.get(key):
                await asyncio.to_thread(out.write, chunk)
        yield path
    finally:
        await asyncio.to_thread(_remove, path)


async def read_all(blobs: BlobStore, key: str) -> bytes:
    """A small object's bytes (a rendition, a poster); raises ``BlobNotFound``."""
    if isinstance(blobs, LocalBlobStore):  # one read in one thread hop
        try:
            return await asyncio.to_thread(blobs.path_for(key).read_bytes)
        except FileNotFoundError:
            raise BlobNotFound(key) from None
    return b"".join([chunk async for chunk in blobs.get(key)])


async def put_bytes(blobs: BlobStore, key: str, data: bytes) -> None:
    """Store ``data`` under ``key`` (atomically: readers see all of it or nothing)."""
    if isinstance(blobs, LocalBlobStore):  # one thread hop, as read_all
        await asyncio.to_thread(blobs.write_whole, key, data)
        return

    async def one_chunk() -> AsyncIterator[bytes]:
        yield data

    await blobs.put(key, one_chunk())


def _new_temporary(tmp_dir: Path) -> tuple[BinaryIO, str]:
    """An open temporary file under ``tmp_dir`` (file-system calls: run in a thread)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="source-", dir=tmp_dir)
    return os.fdopen(fd, "wb"), path


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
