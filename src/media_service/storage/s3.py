"""BlobStore on any S3 API (AWS S3, SeaweedFS, MinIO, R2 …) through async ``obstore``.

``s3://bucket[/prefix]?endpoint=…&region=…&path_style=true&access_key=…&secret_key=…``
selects it. Writes are atomic: objects up to one part go up in a single ``PUT``, larger
ones as a multipart upload fed from the chunk iterator (bounded memory) that obstore
aborts when the iterator raises, so a failed write never leaves a visible object.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import obstore
from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from media_service.storage.base import (
    BlobInfo,
    BlobNotFound,
    ByteRange,
    InvalidKey,
    StorageUnavailable,
    validate_key,
)

if TYPE_CHECKING:
    from obstore import GetOptions
    from obstore.store import ClientConfig, RetryConfig, S3Config

PART_SIZE = 8 * 1024 * 1024
"""Multipart part size; also the largest object sent as one ``PUT``."""
UPLOAD_CONCURRENCY = 4
"""Parts in flight per upload: memory per upload stays below (1 + this) × PART_SIZE."""
READ_CHUNK = 1024 * 1024
MAX_PRESIGN = timedelta(days=7)
"""SigV4's limit; SeaweedFS accepts longer lifetimes, so we clamp ourselves."""
MIN_PRESIGN = timedelta(seconds=1)
PROBE_PREFIX = ".probe/"
"""Where ``check`` writes; ``validate_key`` refuses dot segments, so no real key collides."""

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_SECRET_PARAMS = frozenset({"access_key", "secret_key", "session_token"})
_KNOWN_PARAMS = _SECRET_PARAMS | {
    "endpoint",
    "region",
    "path_style",
    "public_endpoint",
    "timeout",
    "checksum",
}
_UNSATISFIABLE = re.compile(r"\b416 Range Not Satisfiable\b|<Code>InvalidRange</Code>")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class S3BlobStore:
    """Objects in one bucket, optionally below a key prefix that callers never see."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint: str | None = None,
        region: str = "us-east-1",
        path_style: bool = True,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        public_endpoint: str | None = None,
        timeout: str = "1h",
        checksum: str | None = None,
        url: str | None = None,
    ) -> None:
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ValueError(f"invalid S3 bucket name {bucket!r} (3-63 of a-z 0-9 . -)")
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        self.endpoint = endpoint
        self.public_endpoint = public_endpoint
        self.url = url or _describe_location(bucket, self.prefix, endpoint)
        config = _config(region, path_style, access_key, secret_key, session_token, checksum)
        retry: RetryConfig = {"max_retries": 3, "retry_timeout": timedelta(seconds=30)}
        # Data transfers may stream for long; metadata calls must fail fast.
        self._data = _s3_store(bucket, endpoint, config, retry, timeout)
        self._meta = _s3_store(bucket, endpoint, config, retry, "30s")
        # SigV4 signs the Host header: sign client URLs for the host that clients reach.
        self._signer = (
            _s3_store(bucket, public_endpoint, config, retry, "30s")
            if public_endpoint
            else self._meta
        )

    @classmethod
    def from_url(cls, url: str) -> S3BlobStore:
        """Build the store from ``s3://bucket[/prefix]?endpoint=…``; secrets may come from
        ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` instead of the URL."""
        parts = urlsplit(url)
        if parts.scheme != "s3":
            raise ValueError(f"not an s3:// URL: {redact_url(url)}")
        if "@" in parts.netloc:
            raise ValueError("S3 URL: pass credentials as access_key=…&secret_key=… parameters")
        if not parts.netloc:
            raise ValueError(f"S3 URL names no bucket: {redact_url(url)} (use s3://BUCKET?…)")
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(params) - _KNOWN_PARAMS)
        if unknown:
            raise ValueError(f"unknown S3 URL parameter(s) {', '.join(unknown)}")
        return cls(
            parts.netloc,
            prefix=parts.path,
            endpoint=params.get("endpoint") or None,
            region=params.get("region") or "us-east-1",
            path_style=_flag(params.get("path_style", "true"), "path_style"),
            access_key=params.get("access_key") or os.environ.get("AWS_ACCESS_KEY_ID"),
            secret_key=params.get("secret_key") or os.environ.get("AWS_SECRET_ACCESS_KEY"),
            session_token=params.get("session_token") or None,
            public_endpoint=params.get("public_endpoint") or None,
            timeout=params.get("timeout") or "1h",
            checksum=params.get("checksum") or None,
            url=redact_url(url),
        )

    def __repr__(self) -> str:
        return f"S3BlobStore({self.url!r})"

    def _path(self, key: str) -> str:
        return self.prefix + validate_key(key)

    # -- writing -----------------------------------------------------------------------

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        path = self._path(key)
        source = _ChunkSource(chunks)
        first = await source.read_up_to(PART_SIZE)
        try:
            if source.exhausted:
                await obstore.put_async(self._data, path, b"".join(first), use_multipart=False)
            else:
                await obstore.put_async(
                    self._data,
                    path,
                    source.stream(first),
                    chunk_size=PART_SIZE,
                    max_concurrency=UPLOAD_CONCURRENCY,
                )
        except BaseException as exc:
            # obstore has already aborted the multipart upload; surface the caller's error.
            if source.error is not None and exc is not source.error:
                raise source.error from None
            if isinstance(exc, BaseError | OSError):
                raise self._translate(exc, key) from exc
            raise
        return source.size

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            await obstore.delete_async(self._meta, path)
        except FileNotFoundError:
            return
        except (BaseError, OSError) as exc:
            raise self._translate(exc, key) from exc

    # -- reading -----------------------------------------------------------------------

    async def get(self, key: str, byte_range: ByteRange | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        options: GetOptions = {}
        if byte_range is not None:
            if byte_range.start < 0 or byte_range.end < byte_range.start:
                raise ValueError(f"invalid byte range {byte_range}")
            options["range"] = (byte_range.start, byte_range.end + 1)  # obstore: exclusive end
        try:
            result = await obstore.get_async(self._data, path, options=options)
            async for chunk in result.stream(min_chunk_size=READ_CHUNK):
                yield chunk
        except (BaseError, OSError) as exc:
            if byte_range is not None and _is_unsatisfiable_range(exc):
                return  # a range starting at or past the end holds no bytes, as on disk
            raise self._translate(exc, key) from exc

    async def head(self, key: str) -> BlobInfo | None:
        path = self._path(key)
        try:
            meta = await obstore.head_async(self._meta, path)
        except FileNotFoundError:
            return None
        except (BaseError, OSError) as exc:
            raise self._translate(exc, key) from exc
        return BlobInfo(key=key, size=meta["size"], modified_at=meta["last_modified"])

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        if prefix.strip("/"):
            validate_key(prefix.strip("/"))
        wanted = self.prefix + prefix
        # obstore lists whole path segments; list the enclosing "folder" and filter, so
        # a partial last segment behaves like str.startswith (as the local store does).
        folder = wanted[: wanted.rfind("/") + 1].rstrip("/")
        try:
            async for batch in obstore.list(self._meta, folder or None, chunk_size=1000):
                for meta in batch:
                    path = meta["path"]
                    if path.startswith(wanted) and not path.startswith(self.prefix + PROBE_PREFIX):
                        yield BlobInfo(
                            key=path.removeprefix(self.prefix),
                            size=meta["size"],
                            modified_at=meta["last_modified"],
                        )
        except (BaseError, OSError) as exc:
            raise self._translate(exc, prefix or "/") from exc

    async def presigned_get_url(self, key: str, expires_in: timedelta) -> str | None:
        path = self._path(key)
        lifetime = min(max(expires_in, MIN_PRESIGN), MAX_PRESIGN)
        try:
            return await obstore.sign_async(self._signer, "GET", path, lifetime)
        except (BaseError, OSError) as exc:
            raise self._translate(exc, key) from exc

    # -- lifecycle ---------------------------------------------------------------------

    async def check(self) -> None:
        """Bucket reachable and listable, then write and delete a probe object."""
        where = self.endpoint or "AWS S3"
        try:
            await obstore.list_with_delimiter_async(self._meta, self.prefix + PROBE_PREFIX)
        except (BaseError, OSError) as exc:
            if _is_missing_bucket(exc):
                problem = f"S3 bucket {self.bucket} does not exist at {where}"
            elif isinstance(exc, PermissionDeniedError | UnauthenticatedError):
                problem = f"S3 {where} refused our credentials for bucket {self.bucket}"
            else:
                problem = f"S3 endpoint {where} unreachable"
            raise StorageUnavailable(f"{problem}: {_first_line(exc)}") from exc
        probe = self.prefix + PROBE_PREFIX + uuid.uuid4().hex
        try:
            await obstore.put_async(self._meta, probe, b"ok", use_multipart=False)
            await obstore.delete_async(self._meta, probe)
        except (BaseError, OSError) as exc:
            raise StorageUnavailable(
                f"S3 bucket {self.bucket} at {where} is not writable: {_first_line(exc)}"
            ) from exc

    async def close(self) -> None:
        # obstore stores hold only a connection pool, released when they are dropped.
        return None

    # -- errors ------------------------------------------------------------------------

    def _translate(self, exc: BaseException, key: str) -> BaseException:
        if isinstance(exc, FileNotFoundError):
            if _is_missing_bucket(exc):
                return StorageUnavailable(f"S3 bucket {self.bucket} does not exist")
            return BlobNotFound(key)
        if isinstance(exc, BaseError | OSError):
            return StorageUnavailable(f"S3 request for {key!r} failed: {_first_line(exc)}")
        return exc


class _ChunkSource:
    """The caller's chunks, counted; remembers the caller's own exception."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = aiter(chunks)
        self.size = 0
        self.exhausted = False
        self.error: BaseException | None = None

    async def _next(self) -> bytes | None:
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self.exhausted = True
            return None
        except BaseException as exc:
            self.error = exc
            raise
        self.size += len(chunk)
        return chunk

    async def read_up_to(self, limit: int) -> list[bytes]:
        """Chunks until more than ``limit`` bytes arrived or the source ended."""
        buffered: list[bytes] = []
        while self.size <= limit and (chunk := await self._next()) is not None:
            buffered.append(chunk)
        return buffered

    async def stream(self, first: list[bytes]) -> AsyncIterator[bytes]:
        for buffered in first:
            yield buffered
        first.clear()
        while (chunk := await self._next()) is not None:
            if chunk:
                yield chunk


def redact_url(url: str) -> str:
    """``url`` without credentials in its query or user-info, safe to log."""
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in _SECRET_PARAMS
    ]
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe=":/"), ""))


def _normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    if not prefix:
        return ""
    try:
        return validate_key(prefix) + "/"
    except InvalidKey:
        raise ValueError(f"invalid S3 key prefix {prefix[:80]!r}") from None


def _describe_location(bucket: str, prefix: str, endpoint: str | None) -> str:
    query = f"?{urlencode({'endpoint': endpoint}, safe=':/')}" if endpoint else ""
    return f"s3://{bucket}/{prefix}{query}"


def _flag(value: str, name: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"S3 URL parameter {name} must be true or false, not {value!r}")


def _s3_store(
    bucket: str, endpoint: str | None, config: S3Config, retry: RetryConfig, timeout: str
) -> S3Store:
    options: ClientConfig = {
        "allow_http": bool(endpoint and endpoint.startswith("http://")),
        "connect_timeout": "5s",
        "timeout": timeout,
    }
    if endpoint:
        config = {**config, "endpoint": endpoint}
    return S3Store(bucket, config=config, client_options=options, retry_config=retry)


def _config(
    region: str,
    path_style: bool,
    access_key: str | None,
    secret_key: str | None,
    session_token: str | None,
    checksum: str | None,
) -> S3Config:
    if bool(access_key) != bool(secret_key):
        raise ValueError("S3 needs both access_key and secret_key, or neither")
    config: S3Config = {
        "region": region,
        "virtual_hosted_style_request": not path_style,
    }
    if access_key and secret_key:
        config["access_key_id"] = access_key
        config["secret_access_key"] = secret_key
    if session_token:
        config["session_token"] = session_token
    if checksum:
        config["checksum_algorithm"] = checksum
    return config


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _is_missing_bucket(exc: BaseException) -> bool:
    return "NoSuchBucket" in str(exc)


def _is_unsatisfiable_range(exc: BaseException) -> bool:
    return _UNSATISFIABLE.search(str(exc)) is not None
