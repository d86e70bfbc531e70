"""BlobStore on a local directory: the embedded default.

Writes go to a temporary file under ``<root>/.tmp``, are fsynced, and are renamed into
place, so a crash leaves either the whole object or a stray temporary file (which
``gc`` removes). Every filesystem call runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import threading
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from media_service.storage.base import (
    BlobInfo,
    BlobNotFound,
    ByteRange,
    InvalidKey,
    StorageUnavailable,
    validate_key,
)

READ_CHUNK = 1024 * 1024
# Every this many bytes written, a large write asks the kernel to start flushing them.
WRITEBACK_EVERY = 64 * 1024 * 1024
TMP_DIR = ".tmp"


class LocalBlobStore:
    """Objects as files below ``root``; the key is the relative path."""

    def __init__(self, root: Path, url: str | None = None) -> None:
        self.root = root.resolve()
        self.url = url or f"file://{self.root}"
        self.tmp_root = self.root / TMP_DIR

    # -- paths -------------------------------------------------------------------------

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``; refuses anything that would leave the root."""
        path = (self.root / validate_key(key)).resolve()
        if not path.is_relative_to(self.root) or path.is_relative_to(self.tmp_root):
            raise InvalidKey(f"invalid storage key: {key[:80]!r}")
        return path

    # -- writing -----------------------------------------------------------------------

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        final = self.path_for(key)
        temporary = await asyncio.to_thread(_Temporary.create, self.tmp_root / uuid.uuid4().hex)
        writing: asyncio.Future[None] | None = None
        size = 0
        try:
            async for chunk in chunks:
                # Write each chunk while the next one is received (and, during an upload,
                # while it is hashed): at most one write in flight keeps the order.
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(asyncio.to_thread(temporary.write, chunk))
                size += len(chunk)
            if writing is not None:
                await writing
            await asyncio.to_thread(temporary.finish, final)
        except BaseException:
            if writing is not None:
                writing.add_done_callback(_ignore_outcome)
            await asyncio.to_thread(temporary.discard)
            raise
        return size

    def write_whole(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` as :meth:`put` does (a temporary file, fsynced,
        renamed), in the calling thread: for small objects whose bytes are all at hand,
        one thread hop instead of three."""
        final = self.path_for(key)
        temporary = _Temporary.create(self.tmp_root / uuid.uuid4().hex)
        try:
            temporary.write(data)
            temporary.finish(final)
        except BaseException:
            temporary.discard()
            raise

    async def delete(self, key: str) -> None:
        path = self.path_for(key)
        await asyncio.to_thread(_unlink_and_prune, path, self.root)

    # -- reading -----------------------------------------------------------------------

    async def get(self, key: str, byte_range: ByteRange | None = None) -> AsyncIterator[bytes]:
        path = self.path_for(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(key) from None
        try:
            start, remaining = (byte_range.start, byte_range.length) if byte_range else (0, -1)
            if start:
                await asyncio.to_thread(handle.seek, start)
            while remaining != 0:
                size = READ_CHUNK if remaining < 0 else min(READ_CHUNK, remaining)
                chunk = await asyncio.to_thread(handle.read, size)
                if not chunk:
                    break
                remaining = remaining - len(chunk) if remaining > 0 else remaining
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def head(self, key: str) -> BlobInfo | None:
        path = self.path_for(key)
        try:
            stat = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return BlobInfo(key=key, size=stat.st_size, modified_at=_mtime(stat.st_mtime))

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        pending = [self.root]
        while pending:
            directory = pending.pop()
            entries = await asyncio.to_thread(_scan, directory)
            for entry_path, is_dir, size, mtime in entries:
                rel = entry_path.relative_to(self.root).as_posix()
                if is_dir:
                    if not rel.startswith(".") and _may_contain(rel + "/", prefix):
                        pending.append(entry_path)
                elif rel.startswith(prefix):
                    yield BlobInfo(key=rel, size=size, modified_at=_mtime(mtime))

    async def list_stale_temporaries(self, older_than: datetime) -> builtins.list[Path]:
        """Temporary files left by interrupted writes, older than ``older_than``."""
        entries = await asyncio.to_thread(_scan, self.tmp_root)
        return [
            path for path, is_dir, _, mtime in entries if not is_dir and _mtime(mtime) < older_than
        ]

    async def remove_temporary(self, path: Path) -> None:
        """Delete one stale temporary file found by :meth:`list_stale_temporaries`."""
        if path.parent == self.tmp_root:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def presigned_get_url(self, key: str, expires_in: timedelta) -> str | None:
        return None

    # -- lifecycle ---------------------------------------------------------------------

    async def check(self) -> None:
        try:
            await asyncio.to_thread(_probe_writable, self.tmp_root)
        except OSError as exc:
            raise StorageUnavailable(f"local storage {self.root} is not writable: {exc}") from exc

    async def close(self) -> None:
        return None


class _Temporary:
    """The temporary file of one write. A lock orders a write still running in a worker
    thread before ``discard`` closes the file (a cancelled await does not stop the
    thread); a write that starts after that fails on the closed file."""

    def __init__(self, path: Path, handle: BinaryIO) -> None:
        self.path = path
        self._handle = handle
        self._lock = threading.Lock()
        self._written = 0
        self._flushing_from = 0

    @classmethod
    def create(cls, path: Path) -> _Temporary:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path, path.open("xb"))

    def write(self, chunk: bytes) -> None:
        with self._lock:
            self._handle.write(chunk)
            self._written += len(chunk)
            if self._written - self._flushing_from >= WRITEBACK_EVERY:
                self._start_writeback()

    def _start_writeback(self) -> None:
        """Start writing the bytes written since the last call to disk now, while the
        rest arrives, so that the final fsync has little left to do. On Linux,
        POSIX_FADV_DONTNEED starts asynchronous writeback of dirty pages (and drops only
        pages that are already clean); elsewhere this does nothing."""
        if hasattr(os, "posix_fadvise"):
            length = self._written - self._flushing_from
            self._handle.flush()
            os.posix_fadvise(
                self._handle.fileno(), self._flushing_from, length, os.POSIX_FADV_DONTNEED
            )
        self._flushing_from = self._written

    def finish(self, final: Path) -> None:
        with self._lock:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, final)
        _fsync_dir(final.parent)

    def discard(self) -> None:
        with self._lock:
            self._handle.close()
        self.path.unlink(missing_ok=True)


def _ignore_outcome(future: asyncio.Future[None]) -> None:
    """An abandoned write's error is the caller's error's consequence; mark it seen."""
    if not future.cancelled():
        future.exception()


def _unlink_and_prune(path: Path, root: Path) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        path.unlink()
    parent = path.parent
    while parent != root and parent.is_relative_to(root):
        try:
            parent.rmdir()  # only succeeds when empty
        except OSError:
            break
        parent = parent.parent


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _scan(directory: Path) -> list[tuple[Path, bool, int, float]]:
    try:
        with os.scandir(directory) as it:
            out = []
            for entry in it:
                stat = entry.stat(follow_symlinks=False)
                out.append(
                    (
                        Path(entry.path),
                        entry.is_dir(follow_symlinks=False),
                        stat.st_size,
                        stat.st_mtime,
                    )
                )
            return out
    except (FileNotFoundError, NotADirectoryError):
        return []


def _may_contain(directory_prefix: str, prefix: str) -> bool:
    return directory_prefix.startswith(prefix) or prefix.startswith(directory_prefix)


def _probe_writable(tmp_root: Path) -> None:
    tmp_root.mkdir(parents=True, exist_ok=True)
    probe = tmp_root / f"probe-{uuid.uuid4().hex}"
    probe.write_bytes(b"ok")
    probe.unlink()


def _mtime(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)
