"""Where an upload's bytes come from: a streamed multipart form, or a raw request body.

Both give the same shape: the form fields (or query parameters), the client's file name,
and an async iterator over the file's bytes that never holds more than one network chunk
of the file in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Protocol

from python_multipart.multipart import MultipartParser, parse_options_header

from media_service.errors import BadRequest, RequestTimeout

FILE_FIELD = "file"
MAX_FIELDS = 32
MAX_FIELD_BYTES = 8 * 1024
# A file name may have 10,000 characters (see UploadFields), of up to 4 UTF-8 bytes each.
MAX_FILE_NAME_FIELD_BYTES = 40_000
MAX_PART_HEADER_BYTES = 16 * 1024


async def idle_limited(stream: AsyncIterable[bytes], seconds: float) -> AsyncIterator[bytes]:
    """``stream``'s chunks; :class:`RequestTimeout` once ``seconds`` pass without one. A
    client that stops sending (a body shorter than its Content-Length on a connection kept
    open, an unfinished chunked body) otherwise holds its upload open forever."""
    chunks = aiter(stream)
    while True:
        try:
            async with asyncio.timeout(seconds):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout(f"no bytes of the body for {seconds:g} s") from None
        yield chunk


class UploadSource(Protocol):
    """A file arriving in a request."""

    fields: dict[str, str]
    file_name: str | None

    def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes, in network-sized pieces."""
        ...

    async def finish(self) -> None:
        """Consume what follows the file (form fields after it) and check the body ended
        properly; raise :class:`BadRequest` for a truncated body."""
        ...


class RawBodySource:
    """The request body is the file; fields come from the query string."""

    def __init__(
        self, stream: AsyncIterator[bytes], fields: Mapping[str, str], file_name: str | None
    ) -> None:
        self._stream = stream
        self.fields = dict(fields)
        self.file_name = file_name

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            if chunk:
                yield chunk

    async def finish(self) -> None:
        return None


class MultipartSource:
    """A ``multipart/form-data`` body parsed as it streams in.

    Exactly one part named ``file`` carries the file; other parts are small text fields,
    before or after it.
    """

    def __init__(self, stream: AsyncIterator[bytes], boundary: bytes, query: Mapping[str, str]):
        self._stream = stream
        self.fields: dict[str, str] = dict(query)
        self.file_name: str | None = None
        self._pending: list[bytes] = []
        self._part = _Part()
        self._file_parts = 0
        self._file_done = False
        self._ended = False
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
            max_header_count=16,
            max_header_size=MAX_PART_HEADER_BYTES,
        )

    @classmethod
    def from_content_type(
        cls, stream: AsyncIterator[bytes], content_type: str, query: Mapping[str, str]
    ) -> MultipartSource:
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise BadRequest("multipart/form-data without a boundary")
        try:
            return cls(stream, boundary, query)
        except ValueError as exc:  # the parser refuses boundaries over 256 bytes
            raise BadRequest(f"unusable multipart boundary: {exc}") from None

    async def chunks(self) -> AsyncIterator[bytes]:
        async for data in self._stream:
            self._write(data)
            pending, self._pending = self._pending, []
            for piece in pending:
                yield piece
            if self._file_done:
                return
        if self._file_parts == 0:
            raise BadRequest(f"the form has no part named {FILE_FIELD!r}")
        raise BadRequest("the multipart body ended before the file did")

    async def finish(self) -> None:
        async for data in self._stream:
            self._write(data)
        if not self._ended:
            raise BadRequest("the multipart body is truncated (no closing boundary)")

    # -- parser callbacks ----------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        try:
            self._parser.write(data)
        except BadRequest:
            raise
        except Exception as exc:  # the parser's own errors: malformed client input
            raise BadRequest(f"malformed multipart body: {exc}") from None

    def _on_part_begin(self) -> None:
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._part.header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._part.header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._part.end_header()

    def _on_headers_finished(self) -> None:
        name, file_name = self._part.disposition()
        self._part.name = name
        if name == FILE_FIELD:
            self._file_parts += 1
            if self._file_parts > 1:
                raise BadRequest("only one file may be uploaded per request")
            self.file_name = file_name
        elif len(self.fields) >= MAX_FIELDS:
            raise BadRequest("too many form fields")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part.name == FILE_FIELD:
            self._pending.append(data[start:end])
            return
        self._part.value += data[start:end]
        limit = MAX_FILE_NAME_FIELD_BYTES if self._part.name == "file_name" else MAX_FIELD_BYTES
        if len(self._part.value) > limit:
            raise BadRequest(f"form field {self._part.name!r} is too long")

    def _on_part_end(self) -> None:
        if self._part.name == FILE_FIELD:
            self._file_done = True
        elif self._part.name:
            try:
                self.fields[self._part.name] = self._part.value.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"form field {self._part.name!r} is not UTF-8") from None

    def _on_end(self) -> None:
        self._ended = True


class _Part:
    """Headers and (for text fields) the value of the part being parsed."""

    def __init__(self) -> None:
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.value = b""

    def end_header(self) -> None:
        self.headers[self.header_field.strip().lower()] = self.header_value.strip()
        self.header_field = self.header_value = b""

    def disposition(self) -> tuple[str, str | None]:
        kind, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        if kind != b"form-data" or b"name" not in params:
            raise BadRequest("a multipart part has no form-data name")
        name = params[b"name"].decode("utf-8", "replace")
        raw_file_name = params.get(b"filename")
        return name, raw_file_name.decode("utf-8", "replace") if raw_file_name is not None else None
