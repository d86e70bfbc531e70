"""Fixtures for the BlobStore contract: every test runs on each backend.

``local`` is a LocalBlobStore in the test's tmp_path. ``s3`` is an S3BlobStore on a
SeaweedFS started once per session (or on ``MEDIA_TEST_S3_URL``), under a key prefix of
its own, so tests never see each other's objects.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from media_service.storage.base import BlobStore
from media_service.storage.local import LocalBlobStore
from media_service.storage.s3 import S3BlobStore

from harness.ports import free_port
from harness.seaweed import SeaweedNotInstalled, s3_test_url, with_params, with_prefix

BACKENDS = ["local", "s3"]


@pytest.fixture(scope="session")
def s3_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``s3://bucket?endpoint=…`` of the session's S3 server (SeaweedFS unless overridden)."""
    try:
        with s3_test_url(tmp_path_factory.mktemp("seaweed")) as url:
            yield url
    except SeaweedNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> _StoreFactory:
    """Builds stores of the test's backend, all on the test's own root or key prefix."""
    return _StoreFactory(backend, tmp_path, request)


@pytest.fixture
async def blob_store(make_store: _StoreFactory) -> AsyncIterator[BlobStore]:
    """An empty, working store of the parametrized backend."""
    store = make_store.good()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def broken_store(make_store: _StoreFactory) -> AsyncIterator[BlobStore]:
    """A store of the parametrized backend whose every I/O fails."""
    store = make_store.broken()
    try:
        yield store
    finally:
        await store.close()


class _StoreFactory:
    def __init__(self, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.backend = backend
        self.tmp_path = tmp_path
        self.request = request
        self.prefix = f"t-{uuid.uuid4().hex}"

    def s3_url(self, **params: str) -> str:
        base: str = self.request.getfixturevalue("s3_base_url")
        return with_params(with_prefix(base, self.prefix), **params)

    def good(self, **params: str) -> BlobStore:
        if self.backend == "local":
            return LocalBlobStore(self.tmp_path / "blobs")
        return S3BlobStore.from_url(self.s3_url(**params))

    def broken(self) -> BlobStore:
        if self.backend == "local":
            # A root below a regular file can never be created.
            blocker = self.tmp_path / "not-a-directory"
            blocker.write_bytes(b"")
            return LocalBlobStore(blocker / "blobs")
        return S3BlobStore.from_url(unreachable_s3_url(self.prefix))


BROKEN_SECRET = "broken-store-secret-0123456789"


def unreachable_s3_url(prefix: str = "") -> str:
    """An S3 URL whose endpoint is a loopback port nobody listens on."""
    closed = f"http://127.0.0.1:{free_port()}"
    return f"s3://media/{prefix}?endpoint={closed}&access_key=broken&secret_key={BROKEN_SECRET}"
