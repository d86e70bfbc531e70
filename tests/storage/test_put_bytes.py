"""``put_bytes`` and ``read_all``, the preprocessing engine's whole-object writes and reads
(on the local store one thread hop each, through ``LocalBlobStore.write_whole``): the same
results as ``put``/``get`` on every backend."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from media_service.preprocessing.sources import put_bytes, read_all
from media_service.storage import BlobNotFound, BlobStore
from media_service.storage.base import InvalidKey
from media_service.storage.local import LocalBlobStore

from .test_blobstore_contract import BAD_KEYS, listed, payload, read


async def test_whole_object_round_trip_and_overwrite(blob_store: BlobStore) -> None:
    first, second = payload(70_000, seed=1), payload(3, seed=2)
    await put_bytes(blob_store, "renditions/custom/a.jpg", first)
    assert await read(blob_store, "renditions/custom/a.jpg") == first
    assert await read_all(blob_store, "renditions/custom/a.jpg") == first
    await put_bytes(blob_store, "renditions/custom/a.jpg", second)
    assert await read_all(blob_store, "renditions/custom/a.jpg") == second
    assert await listed(blob_store) == {"renditions/custom/a.jpg": 3}
    with pytest.raises(BlobNotFound):
        await read_all(blob_store, "renditions/custom/missing.jpg")


async def test_local_whole_write_leaves_no_temporary(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    await put_bytes(store, "x/y.webp", payload(10_000))
    assert await read_all(store, "x/y.webp") == payload(10_000)
    assert os.listdir(store.tmp_root) == []


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
async def test_whole_write_refuses_invalid_keys(blob_store: BlobStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        await put_bytes(blob_store, key, b"data")
    assert await listed(blob_store) == {}
