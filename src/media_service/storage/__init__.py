"""Blob storage backends behind one Protocol, chosen by URL."""

from media_service.storage.base import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    ByteRange,
    InvalidKey,
    StorageUnavailable,
)
from media_service.storage.factory import UnknownStorageScheme, open_blob_store

__all__ = [
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "BlobStoreError",
    "ByteRange",
    "InvalidKey",
    "StorageUnavailable",
    "UnknownStorageScheme",
    "open_blob_store",
]
