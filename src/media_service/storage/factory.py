"""Build the configured BlobStore from its URL.

``file://./data/blobs`` (relative) or ``file:///srv/media`` (absolute) selects the local
directory store; ``s3://bucket[/prefix]?endpoint=…`` any S3 API. Anything else stops
start-up with one clear line.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from media_service.storage.base import BlobStore
from media_service.storage.local import LocalBlobStore


class UnknownStorageScheme(ValueError):
    """MEDIA_STORAGE_URL names a backend we do not have."""


def local_path_from_url(url: str) -> Path:
    """``file://./x`` → ``./x``; ``file:///x`` → ``/x``; a bare path is itself."""
    if not url.startswith("file://"):
        return Path(url)
    rest = url.removeprefix("file://")
    return Path(rest) if rest else Path(".")


def open_blob_store(url: str) -> BlobStore:
    """The BlobStore for ``url``; connects to nothing until first used."""
    scheme = urlsplit(url).scheme
    if scheme in {"file", ""}:
        return LocalBlobStore(local_path_from_url(url), url=url)
    if scheme == "s3":
        from media_service.storage.s3 import S3BlobStore

        return S3BlobStore.from_url(url)
    raise UnknownStorageScheme(
        f"MEDIA_STORAGE_URL has unknown scheme {scheme!r}: use file://PATH or s3://BUCKET?endpoint=URL"
    )
