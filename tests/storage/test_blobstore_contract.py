"""One contract for every BlobStore: each test runs on ``local`` and on ``s3`` (SeaweedFS).

The S3-only section at the end covers what only that backend has: URL parsing, secrets,
checksums, public endpoints for presigned URLs, a missing bucket.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import random
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest

from media_service.storage.base import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    ByteRange,
    InvalidKey,
    StorageUnavailable,
)
from media_service.storage.local import LocalBlobStore
from media_service.storage.s3 import PART_SIZE, S3BlobStore

from .conftest import BROKEN_SECRET, unreachable_s3_url
from harness.seaweed import with_params, with_prefix

KiB = 1024
MiB = 1024 * KiB
ODD_CHUNKS = (1, 4093, 65_521, 1_048_573, 7)
SIZES = [
    0,
    1,
    KiB,
    5 * MiB - 1,
    5 * MiB,
    5 * MiB + 1,
    PART_SIZE - 1,
    PART_SIZE,
    PART_SIZE + 1,
    2 * PART_SIZE,
    65 * MiB,
]


# -- helpers -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes."""
    return random.Random(f"{seed}:{size}").randbytes(size)


async def stream(data: bytes, sizes: tuple[int, ...] = ODD_CHUNKS) -> AsyncIterator[bytes]:
    """``data`` in chunks of odd, varying sizes."""
    view = memoryview(data)
    offset = 0
    for size in itertools.cycle(sizes):
        if offset >= len(data):
            return
        yield bytes(view[offset : offset + size])
        offset += size


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def digest_of(chunks: AsyncIterable[bytes]) -> tuple[str, int]:
    """SHA-256 and length of a stream, without holding it in memory."""
    digest = hashlib.sha256()
    length = 0
    async for chunk in chunks:
        digest.update(chunk)
        length += len(chunk)
    return digest.hexdigest(), length


async def read(store: BlobStore, key: str, byte_range: ByteRange | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.get(key, byte_range)])


async def listed(store: BlobStore, prefix: str = "") -> dict[str, int]:
    return {info.key: info.size async for info in store.list(prefix)}


class Boom(Exception):
    """Raised by a chunk iterator to simulate a client that fails mid-upload."""


async def failing_after(data: bytes) -> AsyncIterator[bytes]:
    async for chunk in stream(data):
        yield chunk
    raise Boom("client went away")


async def must_not_be_read() -> AsyncIterator[bytes]:
    raise AssertionError("the chunk iterator was consumed for an invalid key")
    yield b""  # pragma: no cover - makes this an async generator


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size}B")
async def test_round_trip_is_byte_identical(blob_store: BlobStore, size: int) -> None:
    data = payload(size)
    key = f"objects/size-{size}"

    written = await blob_store.put(key, stream(data))

    assert written == size
    info = await blob_store.head(key)
    assert info is not None
    assert (info.key, info.size) == (key, size)
    assert await digest_of(blob_store.get(key)) == (sha256(data), size)


OBJECT_SIZE = 3 * MiB + 123
RANGES = {
    "first-byte": (0, 0),
    "last-byte": (OBJECT_SIZE - 1, OBJECT_SIZE - 1),
    "middle-across-chunks": (MiB - 5, 2 * MiB + 5),
    "whole": (0, OBJECT_SIZE - 1),
    "end-past-the-end": (OBJECT_SIZE - 10, OBJECT_SIZE + 1000),
}


@pytest.mark.parametrize(("start", "end"), RANGES.values(), ids=RANGES.keys())
async def test_ranged_read_returns_exactly_the_range(
    blob_store: BlobStore, start: int, end: int
) -> None:
    data = payload(OBJECT_SIZE, seed=1)
    await blob_store.put("ranged/object", stream(data))

    got = await read(blob_store, "ranged/object", ByteRange(start, end))

    assert got == data[start : end + 1]


async def test_range_starting_past_the_end_is_empty(blob_store: BlobStore) -> None:
    await blob_store.put("ranged/short", stream(b"0123456789"))

    assert await read(blob_store, "ranged/short", ByteRange(10, 20)) == b""
    assert await read(blob_store, "ranged/short", ByteRange(9, 20)) == b"9"


# -- metadata, delete, missing keys ------------------------------------------------------


async def test_head_describes_a_present_key(blob_store: BlobStore) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)
    await blob_store.put("meta/present", stream(b"x" * 1234))

    info = await blob_store.head("meta/present")

    assert isinstance(info, BlobInfo)
    assert (info.key, info.size) == ("meta/present", 1234)
    assert info.modified_at.tzinfo is not None
    assert before <= info.modified_at <= datetime.now(UTC) + timedelta(minutes=5)


async def test_head_of_a_missing_key_is_none(blob_store: BlobStore) -> None:
    await blob_store.put("meta/present", stream(b"x"))

    assert await blob_store.head("meta/absent") is None
    assert await blob_store.head("other/present") is None


async def test_get_of_a_missing_key_raises_on_first_iteration(blob_store: BlobStore) -> None:
    chunks = blob_store.get("missing/key")  # no I/O yet: nothing may raise here

    with pytest.raises(BlobNotFound):
        await anext(aiter(chunks))
    with pytest.raises(BlobNotFound):
        await read(blob_store, "missing/key", ByteRange(0, 10))


async def test_delete_is_idempotent(blob_store: BlobStore) -> None:
    await blob_store.put("gone/soon", stream(b"bye"))
    await blob_store.put("gone/kept", stream(b"stay"))

    await blob_store.delete("gone/soon")
    await blob_store.delete("gone/soon")
    await blob_store.delete("never/existed")

    assert await blob_store.head("gone/soon") is None
    with pytest.raises(BlobNotFound):
        await read(blob_store, "gone/soon")
    assert await listed(blob_store) == {"gone/kept": 4}


# -- listing -----------------------------------------------------------------------------


LIST_KEYS = {"alpha/one": 1, "alpha/two/three": 2, "alphabet/x": 3, "beta/y": 4, "top": 5}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", set(LIST_KEYS)),
        ("alpha/", {"alpha/one", "alpha/two/three"}),
        ("alpha/two/", {"alpha/two/three"}),
        ("alph", {"alpha/one", "alpha/two/three", "alphabet/x"}),
        ("gamma/", set()),
    ],
)
async def test_list_returns_exactly_the_keys_under_a_prefix(
    blob_store: BlobStore, prefix: str, expected: set[str]
) -> None:
    for key, size in LIST_KEYS.items():
        await blob_store.put(key, stream(b"k" * size))

    found = await listed(blob_store, prefix)

    assert found == {key: LIST_KEYS[key] for key in expected}


async def test_list_of_an_empty_store_is_empty(blob_store: BlobStore) -> None:
    assert await listed(blob_store) == {}


# -- atomic writes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fail_after",
    [0, 1000, PART_SIZE + MiB, 2 * PART_SIZE + 5],
    ids=["before-any-byte", "small", "after-one-part", "after-two-parts"],
)
async def test_failed_put_leaves_nothing(blob_store: BlobStore, fail_after: int) -> None:
    with pytest.raises(Boom, match="client went away"):
        await blob_store.put("upload/broken", failing_after(payload(fail_after)))

    assert await blob_store.head("upload/broken") is None
    assert await listed(blob_store) == {}
    with pytest.raises(BlobNotFound):
        await read(blob_store, "upload/broken")


async def test_cancelled_put_leaves_nothing(blob_store: BlobStore) -> None:
    """A request cancelled mid-upload (the client went away) stores nothing, and the local
    store leaves no temporary file behind."""
    started = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        block = payload(MiB, seed=9)
        while True:
            yield block
            started.set()
            await asyncio.sleep(0)

    task = asyncio.create_task(blob_store.put("upload/cancelled", endless()))
    await asyncio.wait_for(started.wait(), timeout=10)
    await asyncio.sleep(0.2)  # well into the write
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await blob_store.head("upload/cancelled") is None
    assert await listed(blob_store) == {}
    if isinstance(blob_store, LocalBlobStore):
        assert not any(p.is_file() for p in blob_store.tmp_root.glob("*"))


async def test_failed_overwrite_keeps_the_previous_object(blob_store: BlobStore) -> None:
    old = payload(MiB + 3, seed=2)
    await blob_store.put("upload/kept", stream(old))

    with pytest.raises(Boom):
        await blob_store.put("upload/kept", failing_after(payload(PART_SIZE + 17, seed=3)))

    assert await read(blob_store, "upload/kept") == old
    assert await listed(blob_store) == {"upload/kept": len(old)}


async def test_overwrite_replaces_the_object_atomically(blob_store: BlobStore) -> None:
    old, new = payload(6 * MiB + 1, seed=4), payload(PART_SIZE + 7, seed=5)
    allowed = {(sha256(old), len(old)), (sha256(new), len(new))}
    await blob_store.put("photo/original", stream(old))

    async def slow(data: bytes) -> AsyncIterator[bytes]:
        async for chunk in stream(data):
            yield chunk
            await asyncio.sleep(0.001)

    writer = asyncio.create_task(blob_store.put("photo/original", slow(new)))
    reads = 0
    while not writer.done():
        assert await digest_of(blob_store.get("photo/original")) in allowed
        reads += 1
    assert await writer == len(new)

    assert reads >= 1
    assert await digest_of(blob_store.get("photo/original")) == (sha256(new), len(new))
    assert await listed(blob_store) == {"photo/original": len(new)}


async def test_concurrent_puts_of_twenty_keys(blob_store: BlobStore) -> None:
    sizes = [i * 37 * KiB + i for i in range(18)] + [PART_SIZE + 1, 2 * PART_SIZE + 3]
    objects = {f"batch/{i:02d}": payload(size, seed=100 + i) for i, size in enumerate(sizes)}

    written = await asyncio.gather(
        *(blob_store.put(key, stream(data)) for key, data in objects.items())
    )

    assert written == [len(data) for data in objects.values()]
    assert await listed(blob_store, "batch/") == {k: len(d) for k, d in objects.items()}
    for key, data in objects.items():
        assert await digest_of(blob_store.get(key)) == (sha256(data), len(data))


# -- keys --------------------------------------------------------------------------------


BAD_KEYS = [
    "../x",
    "/abs",
    "a//b",
    "a/./b",
    "a/../b",
    "a\x00b",
    ".hidden",
    "a/.hidden",
    "",
    "a/",
    "a b",
    "caf\u00e9",
    "x" * 513,
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
async def test_invalid_keys_are_refused_before_any_io(broken_store: BlobStore, key: str) -> None:
    # Every I/O of broken_store fails with another error, so InvalidKey proves none happened.
    with pytest.raises(InvalidKey):
        await broken_store.put(key, must_not_be_read())
    with pytest.raises(InvalidKey):
        await read(broken_store, key)
    with pytest.raises(InvalidKey):
        await read(broken_store, key, ByteRange(0, 1))
    with pytest.raises(InvalidKey):
        await broken_store.head(key)
    with pytest.raises(InvalidKey):
        await broken_store.delete(key)
    try:
        url = await broken_store.presigned_get_url(key, timedelta(minutes=1))
    except InvalidKey:
        url = None
    assert url is None  # never a URL for a key the service could not have made


# -- presigned URLs ----------------------------------------------------------------------


async def test_presigned_url_downloads_exactly_that_object(
    blob_store: BlobStore, backend: str
) -> None:
    data, other = payload(300_001, seed=6), payload(10, seed=7)
    await blob_store.put("share/photo", stream(data))
    await blob_store.put("share/other", stream(other))

    url = await blob_store.presigned_get_url("share/photo", timedelta(minutes=5))

    if backend == "local":
        assert url is None  # the local store cannot make one; downloads go through us
        return
    assert url is not None
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
        assert response.status_code == 200
        assert response.content == data
        tampered = await http.get(url.replace("share/photo", "share/other"))
        assert tampered.status_code == 403  # the signature binds the key


async def test_presigned_url_lifetime_is_clamped_to_seven_days(
    blob_store: BlobStore, backend: str
) -> None:
    await blob_store.put("share/long", stream(b"x"))

    long = await blob_store.presigned_get_url("share/long", timedelta(days=30))
    short = await blob_store.presigned_get_url("share/long", timedelta(seconds=90))

    if backend == "local":
        assert (long, short) == (None, None)
        return
    assert long is not None
    assert short is not None
    assert parse_qs(urlsplit(long).query)["X-Amz-Expires"] == [str(7 * 24 * 3600)]
    assert parse_qs(urlsplit(short).query)["X-Amz-Expires"] == ["90"]


# -- health check ------------------------------------------------------------------------


async def test_check_passes_and_leaves_no_trace(blob_store: BlobStore) -> None:
    await blob_store.check()
    await blob_store.check()

    assert await listed(blob_store) == {}


async def test_check_reports_an_unusable_backend_in_one_line(
    broken_store: BlobStore, backend: str
) -> None:
    with pytest.raises(StorageUnavailable) as caught:
        await broken_store.check()

    message = str(caught.value)
    assert "\n" not in message
    assert BROKEN_SECRET not in message
    if backend == "local":
        assert "not writable" in message
    else:
        assert "unreachable" in message
        assert isinstance(broken_store, S3BlobStore)
        assert str(broken_store.endpoint) in message


# -- S3 only -----------------------------------------------------------------------------


def s3_store(s3_base_url: str, **params: str) -> S3BlobStore:
    """A store on the session's S3 server under a fresh key prefix."""
    return S3BlobStore.from_url(
        with_params(with_prefix(s3_base_url, f"t-{uuid.uuid4().hex}"), **params)
    )


def credentials_of(url: str) -> tuple[str, str]:
    query = dict(parse_qsl(urlsplit(url).query))
    return query["access_key"], query["secret_key"]


def without_credentials(url: str) -> str:
    parts = urlsplit(url)
    query = "&".join(
        f"{k}={v}" for k, v in parse_qsl(parts.query) if k not in {"access_key", "secret_key"}
    )
    return parts._replace(query=query).geturl()


async def test_s3_url_never_shows_secrets(s3_base_url: str) -> None:
    _, secret = credentials_of(s3_base_url)
    store = s3_store(s3_base_url)

    assert secret not in store.url
    assert secret not in repr(store)
    assert store.url.startswith(f"s3://{urlsplit(s3_base_url).netloc}/")
    assert store.prefix.rstrip("/") in store.url
    await store.check()


async def test_s3_credentials_fall_back_to_the_environment(
    s3_base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    access, secret = credentials_of(s3_base_url)
    bare = without_credentials(s3_base_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    await S3BlobStore.from_url(bare).check()

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StorageUnavailable):
        await S3BlobStore.from_url(bare).check()


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:///prefix?endpoint=http://127.0.0.1:1",
        "s3://ab",
        "s3://Upper-Case",
        "s3://under_score",
        "s3://bucket:9000",
        "s3://key:secret@bucket",
        "s3://bucket/../escape",
        "s3://bucket?endpiont=http://127.0.0.1:1",
        "s3://bucket?path_style=maybe",
        "s3://bucket?access_key=only-half",
        "http://bucket",
    ],
)
def test_s3_bad_urls_are_refused_with_value_error(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(ValueError, match=r"\S"):
        S3BlobStore.from_url(url)


def test_s3_url_prefix_and_parameters_are_parsed() -> None:
    store = S3BlobStore.from_url(
        "s3://media-bucket/tenant/a/?endpoint=http://127.0.0.1:9&region=eu-west-1"
        "&access_key=AK&secret_key=SECRET&public_endpoint=https://cdn.example.com"
    )

    assert (store.bucket, store.prefix) == ("media-bucket", "tenant/a/")
    assert (store.endpoint, store.public_endpoint) == (
        "http://127.0.0.1:9",
        "https://cdn.example.com",
    )
    assert "SECRET" not in store.url
    assert "AK" not in store.url


async def test_s3_check_reports_a_missing_bucket(s3_base_url: str) -> None:
    missing = f"media-missing-{uuid.uuid4().hex[:12]}"
    parts = urlsplit(s3_base_url)
    store = S3BlobStore.from_url(parts._replace(netloc=missing, path="").geturl())

    with pytest.raises(StorageUnavailable, match=missing):
        await store.check()


async def test_s3_unreachable_endpoint_raises_storage_unavailable_everywhere() -> None:
    store = S3BlobStore.from_url(unreachable_s3_url("prefix"))

    with pytest.raises(StorageUnavailable):
        await store.put("k/small", stream(b"abc"))
    with pytest.raises(StorageUnavailable):
        await store.put("k/large", stream(payload(PART_SIZE + 1)))
    with pytest.raises(StorageUnavailable):
        await read(store, "k/small")
    with pytest.raises(StorageUnavailable):
        await store.head("k/small")
    with pytest.raises(StorageUnavailable):
        await store.delete("k/small")
    with pytest.raises(StorageUnavailable):
        await listed(store)


async def test_s3_keys_live_under_the_configured_prefix(s3_base_url: str) -> None:
    store = s3_store(s3_base_url)
    parent = S3BlobStore.from_url(s3_base_url)
    own = store.prefix.removeprefix(parent.prefix)  # the test's prefix below the parent's
    await store.put("inner/key", stream(b"data"))

    assert await listed(store) == {"inner/key": 4}
    assert await parent.head("inner/key") is None
    info = await parent.head(own + "inner/key")
    assert info is not None
    assert info.size == 4
    assert {info.key async for info in parent.list(own)} == {own + "inner/key"}


@pytest.mark.parametrize("size", [PART_SIZE - 1, 2 * PART_SIZE + 1], ids=["single", "multipart"])
async def test_s3_round_trip_with_sha256_checksums(s3_base_url: str, size: int) -> None:
    store = s3_store(s3_base_url, checksum="sha256")
    data = payload(size, seed=8)

    assert await store.put("checked/object", stream(data)) == size
    assert await digest_of(store.get("checked/object")) == (sha256(data), size)


async def test_s3_presigned_url_uses_the_public_endpoint(s3_base_url: str) -> None:
    endpoint = dict(parse_qsl(urlsplit(s3_base_url).query))["endpoint"]
    alias = endpoint.replace("127.0.0.1", "localhost")  # same server, another host name
    store = s3_store(s3_base_url, public_endpoint=alias)
    await store.put("share/public", stream(b"public bytes"))

    url = await store.presigned_get_url("share/public", timedelta(minutes=5))

    assert url is not None
    assert url.startswith(f"{alias}/")
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert (response.status_code, response.content) == (200, b"public bytes")
