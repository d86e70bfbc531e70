"""A ZIP archive written as a stream: each entry's bytes go out as they come in.

The standard library's :mod:`zipfile` writes to a file that cannot seek when it is given
one: every entry then gets a data descriptor after its bytes (CRC and sizes, known only at
the end) instead of a header patched afterwards. :class:`ZipStream` hands it such a file
and takes what was written after every chunk, so memory holds one chunk at a time whatever
the size of the entries, and nothing touches the disk. Entries are stored, not deflated:
photos, videos and PDFs are compressed already. ZIP64 is used where sizes or offsets need
it (an entry whose announced size is near 4 GiB, an archive past 4 GiB or 65,535 entries).
"""

from __future__ import annotations

import asyncio
import zipfile
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime

# Chunks this large have their CRC computed in a thread, off the event loop.
THREAD_FROM = 64 * 1024
_DOS_EPOCH_YEAR = 1980  # the earliest time a ZIP entry can carry
_FILE_MODE = 0o100644  # a regular file, rw-r--r--


class _Sink:
    """A write-only file that cannot seek: keeps what is written until drained."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class ZipStream:
    """Builds one archive entry by entry; every method yields the archive's next bytes."""

    def __init__(self) -> None:
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(self._sink, "w", zipfile.ZIP_STORED, allowZip64=True)

    async def entry(
        self, name: str, modified_at: datetime, chunks: AsyncIterable[bytes], size: int
    ) -> AsyncIterator[bytes]:
        """Add ``name`` with the bytes of ``chunks``; ``size`` is what they are expected
        to add up to (it decides whether the entry needs ZIP64)."""
        info = _info(name, modified_at)
        info.file_size = size
        with self._zip.open(info, "w") as member:
            yield self._sink.drain()  # the local header
            async for chunk in chunks:
                if len(chunk) >= THREAD_FROM:
                    await asyncio.to_thread(member.write, chunk)
                else:
                    member.write(chunk)
                yield self._sink.drain()
        yield self._sink.drain()  # the data descriptor

    def small_entry(self, name: str, modified_at: datetime, data: bytes) -> bytes:
        """Add ``name`` with ``data`` (a few kilobytes to megabytes, already in memory)."""
        self._zip.writestr(_info(name, modified_at), data)
        return self._sink.drain()

    def finish(self) -> bytes:
        """The central directory: the archive's last bytes."""
        self._zip.close()
        return self._sink.drain()


def _info(name: str, modified_at: datetime) -> zipfile.ZipInfo:
    stamp = modified_at.timetuple()[:6]
    if stamp[0] < _DOS_EPOCH_YEAR:
        stamp = (_DOS_EPOCH_YEAR, 1, 1, 0, 0, 0)
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = _FILE_MODE << 16
    return info
