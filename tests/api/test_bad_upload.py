"""Hostile and broken uploads: every one gets a clear 4xx problem and leaves no trace.

"No trace" means: no row in ``media_files`` or ``idempotency_keys``, nothing in the
listing, no object in the blob store and, for the local store, no temporary file.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import random
import re
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select

from media_service.app import create_app
from media_service.auth.principal import Role
from media_service.auth.tokens import TokenService
from media_service.media.models import IdempotencyKey, MediaFile
from media_service.storage.local import LocalBlobStore

from conftest import Stack

FILES = "/api/v1/media/files"
ORG = "org_bad"
BOUNDARY = "badInputBoundary7MA4YWxkTrZu0gW"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
RAW = {"Content-Type": "application/octet-stream"}
LIMIT = 100_000
SMALL_LIMITS = {
    "max_image_bytes": LIMIT,
    "max_video_bytes": LIMIT,
    "max_document_bytes": LIMIT,
}
STORAGE_PATH = re.compile(r"^files/[0-9a-z]{2}/(file_[0-9a-z]{26})/original$")


# -- helpers -------------------------------------------------------------------------------


def member(stack: Stack, sub: str = "alice") -> dict[str, str]:
    return stack.auth(sub, ORG, Role.MEMBER)


def admin(stack: Stack) -> dict[str, str]:
    return stack.auth("root", ORG, Role.ADMIN)


def part(
    name: str,
    value: bytes,
    filename: str | None = None,
    content_type: str = "application/octet-stream",
) -> bytes:
    """One multipart part, byte for byte as given (no escaping, unlike httpx)."""
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    headers = f"Content-Disposition: {disposition}\r\n"
    if filename is not None:
        headers += f"Content-Type: {content_type}\r\n"
    return f"--{BOUNDARY}\r\n{headers}\r\n".encode() + value + b"\r\n"


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    if code is not None:
        assert body["code"] == code, body
    return body


async def stored_objects(stack: Stack) -> list[str]:
    """Every object and (local store) temporary file the stack holds."""
    keys = [info.key async for info in stack.state.blobs.list("")]
    blobs = stack.state.blobs
    if isinstance(blobs, LocalBlobStore) and blobs.tmp_root.exists():
        keys += [f".tmp/{p.name}" for p in blobs.tmp_root.iterdir()]
    return keys


async def row_counts(stack: Stack) -> tuple[int, int]:
    async with stack.state.sessions() as session:
        files = await session.scalar(select(func.count()).select_from(MediaFile))
        keys = await session.scalar(select(func.count()).select_from(IdempotencyKey))
    return int(files or 0), int(keys or 0)


async def assert_nothing_stored(client: httpx.AsyncClient, stack: Stack) -> None:
    listing = await client.get(FILES, headers=admin(stack))
    assert listing.status_code == 200, listing.text
    assert listing.json()["items"] == []
    assert await row_counts(stack) == (0, 0)
    assert await stored_objects(stack) == []


async def post_form(
    client: httpx.AsyncClient, headers: dict[str, str], body: bytes, **params: str
) -> httpx.Response:
    return await client.post(FILES, headers={**headers, **MULTIPART}, content=body, params=params)


async def post_raw(
    client: httpx.AsyncClient, headers: dict[str, str], body: object, **params: str
) -> httpx.Response:
    return await client.post(FILES, headers={**headers, **RAW}, content=body, params=params)


class CountingBody:
    """An async body that could go on for ``total`` bytes and counts what was pulled."""

    def __init__(self, head: bytes, total: int, chunk: int = 16 * 1024) -> None:
        self.head, self.total, self.chunk = head, total, chunk
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        piece = self.head
        while sent < self.total:
            self.pulled += len(piece)
            sent += len(piece)
            yield piece
            piece = b"\0" * self.chunk


def jpeg_of_size(make_jpeg: Callable[..., bytes], size: int) -> bytes:
    """A real JPEG padded after its end marker to exactly ``size`` bytes."""
    jpeg = make_jpeg(16, 16)
    assert len(jpeg) < size
    return jpeg + b"\0" * (size - len(jpeg))


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


@functools.cache
def png_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of ``side``×``side`` black pixels: ~50 KB that decodes to 50 MB+."""
    compressor = zlib.compressobj(9)
    rows = (b"\0" * (1 + (side + 7) // 8)) * 1000
    data = b"".join(compressor.compress(rows) for _ in range(side // 1000)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )


def jpeg_declaring(make_jpeg: Callable[..., bytes], width: int, height: int) -> bytes:
    """A real JPEG whose SOF0 header is rewritten to claim ``width``×``height``."""
    jpeg = bytearray(make_jpeg(8, 8))
    sof = jpeg.find(b"\xff\xc0")
    assert sof > 0
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(jpeg)


# -- size limits ----------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [SMALL_LIMITS], ids=["small-limits"])
@pytest.mark.parametrize("framing", ["raw", "multipart"])
async def test_oversized_stream_stops_near_the_limit(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes], framing: str
) -> None:
    total = 100 * 1024 * 1024
    head = make_jpeg(16, 16)
    if framing == "multipart":
        head = part("file", head, "big.jpg")[: -len(b"\r\n")]
    body = CountingBody(head, total)
    response = await client.post(
        FILES,
        headers={**member(stack), **(MULTIPART if framing == "multipart" else RAW)},
        content=body,
    )
    assert_problem(response, 413, "payload_too_large")
    # It stops within about one network chunk of the limit (plus the multipart framing).
    assert LIMIT < body.pulled <= LIMIT + 2 * body.chunk, body.pulled
    assert body.pulled < total / 50
    await assert_nothing_stored(client, stack)


@pytest.mark.parametrize("settings_overrides", [SMALL_LIMITS], ids=["small-limits"])
async def test_one_byte_over_the_limit_is_refused_and_the_limit_itself_accepted(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    response = await post_raw(client, member(stack), jpeg_of_size(make_jpeg, LIMIT + 1))
    assert_problem(response, 413, "payload_too_large")
    await assert_nothing_stored(client, stack)
    exact = jpeg_of_size(make_jpeg, LIMIT)
    response = await post_raw(client, member(stack), exact)
    assert response.status_code == 201, response.text
    assert response.json()["file_size"] == LIMIT
    content = await client.get(
        f"{FILES}/{response.json()['file_id']}/content", headers=member(stack)
    )
    assert content.content == exact


@pytest.mark.parametrize("settings_overrides", [SMALL_LIMITS], ids=["small-limits"])
@pytest.mark.parametrize("framing", ["raw", "multipart"])
async def test_declared_content_length_above_the_maximum_is_refused_before_reading(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes], framing: str
) -> None:
    body = CountingBody(make_jpeg(16, 16), 10 * 1024 * 1024)
    headers = {
        **member(stack),
        **(MULTIPART if framing == "multipart" else RAW),
        "Content-Length": str(10**12),
    }
    response = await client.post(FILES, headers=headers, content=body)
    assert_problem(response, 413, "payload_too_large")
    assert body.pulled == 0
    await assert_nothing_stored(client, stack)


# -- content that is not an allowed format ---------------------------------------------------

SEEDED = random.Random(20_000)

WRONG_TYPES: dict[str, tuple[str, bytes, str]] = {
    "html-as-png": ("x.png", b"<!DOCTYPE html><html><script>alert(1)</script></html>", "image/png"),
    "text-as-jpg": ("notes.jpg", b"just some text, not a JPEG at all\n" * 10, "image/jpeg"),
    "svg-with-script": (
        "logo.svg",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">'
        b"<script>alert(document.cookie)</script></svg>",
        "image/svg+xml",
    ),
    "svg-xxe": (
        "x.svg",
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>',
        "image/svg+xml",
    ),
    "zip": (
        "photos.zip",
        b"PK\x03\x04" + b"\x14\x00" * 20 + SEEDED.randbytes(200),
        "application/zip",
    ),
    "matroska": (
        "movie.webm",
        b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x88matroska" + b"\0" * 64,
        "video/webm",
    ),
    "html-as-pdf": ("doc.pdf", b"<html><body>not a pdf</body></html>", "application/pdf"),
    "random": ("noise.bin", SEEDED.randbytes(4096), "application/octet-stream"),
}


@pytest.mark.parametrize("case", list(WRONG_TYPES))
async def test_content_that_is_not_an_allowed_format_is_refused(
    client: httpx.AsyncClient, stack: Stack, case: str
) -> None:
    name, data, declared = WRONG_TYPES[case]
    response = await client.post(
        FILES, headers=member(stack), files={"file": (name, data, declared)}
    )
    assert_problem(response, 415, "unsupported_media_type")
    raw = await client.post(
        FILES, headers={**member(stack), "Content-Type": declared}, content=data
    )
    assert_problem(raw, 415, "unsupported_media_type")
    await assert_nothing_stored(client, stack)


async def test_polyglot_is_stored_and_served_only_as_what_it_starts_with(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    polyglot = make_jpeg() + b"<html><script>alert(document.cookie)</script></html>"
    response = await client.post(
        FILES, headers=member(stack), files={"file": ("page.html", polyglot, "text/html")}
    )
    assert response.status_code == 201, response.text
    assert response.json()["content_type"] == "image/jpeg"
    content = await client.get(
        f"{FILES}/{response.json()['file_id']}/content", headers=member(stack)
    )
    assert content.content == polyglot
    assert content.headers["content-type"] == "image/jpeg"
    assert content.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in content.headers["content-security-policy"]


async def test_empty_file_is_refused(client: httpx.AsyncClient, stack: Stack) -> None:
    response = await post_form(client, member(stack), form(part("file", b"", "empty.jpg")))
    assert_problem(response, 400, "empty_file")
    response = await post_raw(client, member(stack), b"")
    assert_problem(response, 400, "empty_file")
    await assert_nothing_stored(client, stack)


# -- broken multipart bodies -------------------------------------------------------------------


def broken_forms(jpeg: bytes) -> dict[str, bytes]:
    file_part = part("file", jpeg, "a.jpg")
    return {
        "ends-mid-file": file_part[: len(file_part) // 2],
        "no-closing-boundary": file_part,
        "field-after-file-cut": file_part + part("owner_type", b"User")[:40],
        "no-file-part": form(part("owner_type", b"User"), part("file_name", b"x.jpg")),
        "two-file-parts": form(file_part, part("file", jpeg[::-1], "b.jpg")),
        "no-boundary-at-all": b"this is not a multipart body at all" + jpeg,
        "part-without-name": form(
            f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\n".encode() + jpeg + b"\r\n"
        ),
        "part-not-form-data": form(
            f'--{BOUNDARY}\r\nContent-Disposition: attachment; name="file"\r\n\r\n'.encode()
            + jpeg
            + b"\r\n"
        ),
        "header-without-colon": form(
            f"--{BOUNDARY}\r\nthis header has no colon\r\n\r\n".encode() + jpeg + b"\r\n"
        ),
        "field-over-limit": form(part("owner_id", b"n" * 10_000), file_part),
        "file-name-over-limit": form(part("file_name", b"n" * 50_000), file_part),
        "field-over-limit-after-file": form(file_part, part("owner_id", b"x" * 100_000)),
        "too-many-fields": form(*(part(f"f{i}", b"v") for i in range(40)), file_part),
        "field-not-utf8": form(part("file_name", b"\xff\xfe\xfa.jpg"), file_part),
        "huge-part-header": form(
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
            f'name="file"; filename="{"a" * 40_000}"\r\n\r\n'.encode()
            + jpeg
            + b"\r\n"
        ),
    }


BROKEN_FORM_CASES = list(broken_forms(b"\xff\xd8\xff"))


@pytest.mark.parametrize("case", BROKEN_FORM_CASES)
async def test_broken_multipart_is_refused(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes], case: str
) -> None:
    body = broken_forms(make_jpeg(32, 32))[case]
    response = await post_form(client, member(stack), body)
    assert_problem(response, 400)
    await assert_nothing_stored(client, stack)


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; charset=utf-8",
        "multipart/form-data; boundary=" + "b" * 300,
    ],
    ids=["none", "empty", "other-parameter", "over-long"],
)
async def test_multipart_without_a_usable_boundary_is_refused(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes], content_type: str
) -> None:
    body = form(part("file", make_jpeg(), "a.jpg"))
    response = await client.post(
        FILES, headers={**member(stack), "Content-Type": content_type}, content=body
    )
    assert_problem(response, 400)
    await assert_nothing_stored(client, stack)


# -- checksums --------------------------------------------------------------------------------


async def test_checksum_mismatch_is_refused(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    jpeg = make_jpeg()
    wrong = hashlib.sha256(jpeg + b"x").digest()
    for header in (wrong.hex(), wrong.hex().upper(), base64.b64encode(wrong).decode()):
        response = await post_raw(client, {**member(stack), "X-Checksum-SHA256": header}, jpeg)
        assert_problem(response, 400, "checksum_mismatch")
    body = form(part("sha256", wrong.hex().encode()), part("file", jpeg, "a.jpg"))
    assert_problem(await post_form(client, member(stack), body), 400, "checksum_mismatch")
    body = form(part("file", jpeg, "a.jpg"), part("sha256", wrong.hex().encode()))
    assert_problem(await post_form(client, member(stack), body), 400, "checksum_mismatch")
    await assert_nothing_stored(client, stack)


@pytest.mark.parametrize(
    "checksum",
    [
        "abc",
        "g" * 64,
        "0" * 63,
        "0" * 65,
        "not base64 at all!!",
        base64.b64encode(b"x" * 31).decode(),
    ],
)
async def test_malformed_checksum_is_refused(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes], checksum: str
) -> None:
    jpeg = make_jpeg()
    body = CountingBody(jpeg, len(jpeg))
    response = await post_raw(client, {**member(stack), "X-Checksum-SHA256": checksum}, body)
    assert_problem(response, 400, "bad_request")
    assert body.pulled == 0  # refused from the header alone
    body_form = form(part("file", jpeg, "a.jpg"), part("sha256", checksum.encode()))
    assert_problem(await post_form(client, member(stack), body_form), 400, "bad_request")
    await assert_nothing_stored(client, stack)


async def test_correct_checksums_are_accepted(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    images = [make_jpeg(color=(i * 50, 0, 0)) for i in range(4)]
    digests = [hashlib.sha256(image).digest() for image in images]
    hex_header = {"X-Checksum-SHA256": digests[0].hex().upper()}
    b64_header = {"X-Checksum-SHA256": base64.b64encode(digests[1]).decode()}
    responses = [
        await post_raw(client, {**member(stack), **hex_header}, images[0]),
        await post_raw(client, {**member(stack), **b64_header}, images[1]),
        await post_form(
            client,
            member(stack),
            form(part("sha256", digests[2].hex().encode()), part("file", images[2], "c.jpg")),
        ),
        await post_form(
            client,
            member(stack),
            form(part("file", images[3], "d.jpg"), part("sha256", digests[3].hex().encode())),
        ),
    ]
    for response, digest in zip(responses, digests, strict=True):
        assert response.status_code == 201, response.text
        assert response.json()["sha256"] == digest.hex()


# -- file names --------------------------------------------------------------------------------

HOSTILE_NAMES: dict[str, tuple[str, str]] = {
    # case: (name sent, name expected back)
    "traversal": ("../../etc/passwd", "passwd"),
    "windows-traversal": ("..\\..\\windows\\system32\\evil.jpg", "evil.jpg"),
    "encoded-traversal": ("%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
    "encoded-nul": ("a.php%00.jpg", "a.php%00.jpg"),
    "real-nul": ("a.php\x00.jpg", "a.php.jpg"),
    "double-extension": ("photo.jpg.php", "photo.jpg.php"),
    "crlf-and-quotes": ('evil"\r\nX-Injected: yes; a=".jpg', "evil_X-Injected_ yes; a=_.jpg"),
    "right-to-left-override": ("invoice\u202egpj.exe", "invoicegpj.exe"),
    "nfd": ("Cafe\u0301.jpg", "Caf\u00e9.jpg"),
    "hidden": ("...  .htaccess", "htaccess"),
    "only-dots": ("../..", "file"),
    "html": ("<img src=x onerror=alert(1)>.jpg", "_img src=x onerror=alert(1)_.jpg"),
    "long": ("a" * 9_996 + ".jpg", "a" * 251 + ".jpg"),
}


def assert_safe_disposition(value: str, stored_name: str) -> None:
    assert "\r" not in value and "\n" not in value
    assert value.isascii()
    fallback = re.fullmatch(r'(inline|attachment); filename="([^"\\]*)"; filename\*=(.*)', value)
    assert fallback, value
    assert fallback.group(2).isprintable() and fallback.group(2)
    encoded = fallback.group(3)
    assert encoded.startswith("UTF-8''")
    assert unquote(encoded.removeprefix("UTF-8''")) == stored_name


@pytest.mark.parametrize("case", list(HOSTILE_NAMES))
async def test_hostile_file_names_are_sanitised_and_never_reach_storage(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes], case: str
) -> None:
    sent, expected = HOSTILE_NAMES[case]
    channels = {
        "field": lambda data: post_form(
            client, member(stack), form(part("file_name", sent.encode()), part("file", data, "x"))
        ),
        "query": lambda data: post_raw(client, member(stack), data, file_name=sent),
    }
    if "\r" not in sent and '"' not in sent:
        channels["part-filename"] = lambda data: post_form(
            client, member(stack), form(part("file", data, sent))
        )
    for index, (channel, send) in enumerate(channels.items()):
        data = make_jpeg(color=(index * 60, 90, 9))
        response = await send(data)
        assert response.status_code == 201, (channel, response.text)
        record = response.json()
        assert record["file_name"] == expected, channel
        assert len(record["file_name"]) <= 255
        match = STORAGE_PATH.match(record["storage_path"])
        assert match and match.group(1) == record["file_id"], record["storage_path"]
        content = await client.get(f"{FILES}/{record['file_id']}/content", headers=member(stack))
        assert content.status_code == 200 and content.content == data
        assert content.headers["content-type"] == "image/jpeg"
        assert "x-injected" not in content.headers
        assert_safe_disposition(content.headers["content-disposition"], expected)
    keys = [info.key async for info in stack.state.blobs.list("")]
    assert len(keys) == len(channels)
    assert all(STORAGE_PATH.match(key) for key in keys), keys


async def test_nfc_and_nfd_names_are_stored_alike(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    names = []
    for index, name in enumerate(("Se\u0301ance.jpg", "S\u00e9ance.jpg")):
        data = make_jpeg(color=(index * 200, 0, 0))
        response = await post_raw(client, member(stack), data, file_name=name)
        assert response.status_code == 201, response.text
        names.append(response.json()["file_name"])
    assert names == ["S\u00e9ance.jpg", "S\u00e9ance.jpg"]


# -- owner fields ------------------------------------------------------------------------------

BAD_OWNERS: dict[str, tuple[dict[str, str], int]] = {
    "unknown-owner-type": ({"owner_type": "Robot", "owner_id": "alice"}, 422),
    "lower-case-owner-type": ({"owner_type": "user", "owner_id": "alice"}, 422),
    "owner-id-with-newline": ({"owner_type": "User", "owner_id": "alice\nbob"}, 422),
    "owner-id-with-nul": ({"owner_type": "User", "owner_id": "alice\x00"}, 422),
    "owner-id-too-long": ({"owner_type": "User", "owner_id": "a" * 129}, 422),
    "empty-owner-id": ({"owner_type": "Student", "owner_id": ""}, 422),
    "someone-else": ({"owner_type": "User", "owner_id": "bob"}, 403),
    "a-class-session": ({"owner_type": "ClassSession", "owner_id": "cls_1"}, 403),
}


@pytest.mark.parametrize("case", list(BAD_OWNERS))
async def test_bad_owner_fields_are_refused(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes], case: str
) -> None:
    fields, status = BAD_OWNERS[case]
    jpeg = make_jpeg()
    assert_problem(await post_raw(client, member(stack), jpeg, **fields), status)
    before = form(*(part(k, v.encode()) for k, v in fields.items()), part("file", jpeg, "a.jpg"))
    assert_problem(await post_form(client, member(stack), before), status)
    after = form(part("file", jpeg, "a.jpg"), *(part(k, v.encode()) for k, v in fields.items()))
    assert_problem(await post_form(client, member(stack), after), status)
    await assert_nothing_stored(client, stack)


@pytest.mark.parametrize("settings_overrides", [SMALL_LIMITS], ids=["small-limits"])
async def test_forbidden_owner_in_the_query_is_refused_before_the_body_is_stored(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    body = CountingBody(make_jpeg(), 50 * 1024 * 1024)
    response = await post_raw(client, member(stack), body, owner_type="User", owner_id="bob")
    assert_problem(response, 403, "forbidden")
    assert body.pulled < LIMIT
    await assert_nothing_stored(client, stack)


# -- authentication ----------------------------------------------------------------------------


def bad_authorizations(stack: Stack) -> dict[str, dict[str, str]]:
    good = stack.token("alice", ORG, Role.MEMBER)
    header, payload, signature = good.split(".")
    claims = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    forged = base64.urlsafe_b64encode(claims.replace(b'"member"', b'"admin"')).rstrip(b"=")
    other = TokenService("another-secret-that-is-long-enough-0123456789", issuer="media-service")
    expired = stack.state.tokens.mint("alice", ORG, [Role.MEMBER], ttl=timedelta(seconds=-60))
    unsigned = (
        base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        + f".{payload}."
    )
    return {
        "missing": {},
        "basic-scheme": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        "bearer-without-token": {"Authorization": "Bearer "},
        "not-a-jwt": {"Authorization": "Bearer not.a.jwt"},
        "garbage": {"Authorization": "Bearer \x01\x02"},
        "expired": {"Authorization": f"Bearer {expired}"},
        "other-secret": {"Authorization": f"Bearer {other.mint('alice', ORG, [Role.ADMIN])}"},
        "tampered-payload": {"Authorization": f"Bearer {header}.{forged.decode()}.{signature}"},
        "alg-none": {"Authorization": f"Bearer {unsigned}"},
        "huge": {"Authorization": "Bearer " + "a" * 20_000},
    }


AUTH_CASES = [
    "missing",
    "basic-scheme",
    "bearer-without-token",
    "not-a-jwt",
    "garbage",
    "expired",
    "other-secret",
    "tampered-payload",
    "alg-none",
    "huge",
]


@pytest.mark.parametrize("case", AUTH_CASES)
async def test_bad_tokens_are_refused_with_401(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes], case: str
) -> None:
    headers = bad_authorizations(stack)[case]
    jpeg = make_jpeg()
    body = CountingBody(jpeg, len(jpeg))
    response = await post_raw(client, headers, body)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert body.pulled == 0
    listing = await client.get(FILES, headers=headers)
    assert_problem(listing, 401, "unauthorized")
    await assert_nothing_stored(client, stack)


# -- images that are too large or unreadable ---------------------------------------------------


async def test_png_declaring_20000_by_20000_is_refused(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    bomb = png_bomb()
    assert len(bomb) < 200_000
    # It really is a PNG of that size: its pixel data inflates to 20000 rows of 2501 bytes.
    assert struct.unpack(">II", bomb[16:24]) == (20_000, 20_000)
    assert len(zlib.decompress(bomb[41:-16])) == 20_000 * 2501
    response = await post_form(client, member(stack), form(part("file", bomb, "bomb.png")))
    body = assert_problem(response, 422, "image_too_large")
    assert "20000" in body["detail"]
    await assert_nothing_stored(client, stack)


@pytest.mark.parametrize(
    ("width", "height"), [(100_000_000, 1), (1, 70_000)], ids=["a-line", "a-column"]
)
async def test_a_png_with_a_side_no_decoder_takes_is_refused(
    client: httpx.AsyncClient, stack: Stack, width: int, height: int
) -> None:
    """Within the pixel limit, but no rendition of it can be made: it was stored, then
    every rendition was 422 and its preprocessing a dead letter (found by fuzzing)."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # 1-bit black
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data)
    response = await post_raw(client, member(stack), png + png_chunk(b"IEND", b""))
    body = assert_problem(response, 422, "image_too_large")
    assert "65500" in body["detail"]
    await assert_nothing_stored(client, stack)


@pytest.mark.parametrize("size", [(65_000, 65_000), (60_000, 2_000)], ids=["square", "wide"])
async def test_jpeg_declaring_a_huge_size_is_refused(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes], size: tuple[int, int]
) -> None:
    response = await post_raw(client, member(stack), jpeg_declaring(make_jpeg, *size))
    assert_problem(response, 422, "image_too_large")
    await assert_nothing_stored(client, stack)


CORRUPT_IMAGES: dict[str, bytes] = {
    "png-signature-then-garbage": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "png-bad-ihdr-crc": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 17,
    "jpeg-marker-then-garbage": b"\xff\xd8\xff\xe0" + b"\x13\x37" * 500,
    "gif-header-only": b"GIF89a",
    "webp-header-only": b"RIFF\x10\x00\x00\x00WEBPVP8 ",
    "tiff-header-only": b"II*\x00\x08\x00\x00\x00",
}


@pytest.mark.parametrize("case", list(CORRUPT_IMAGES))
async def test_complete_but_unreadable_image_is_refused(
    client: httpx.AsyncClient, stack: Stack, case: str
) -> None:
    response = await post_raw(client, member(stack), CORRUPT_IMAGES[case])
    assert_problem(response, 422, "corrupt_image")
    await assert_nothing_stored(client, stack)


async def test_zero_sized_png_is_refused(client: httpx.AsyncClient, stack: Stack) -> None:
    png = bytearray(png_bomb(1000))
    png[16:24] = struct.pack(">II", 0, 0)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    response = await post_raw(client, member(stack), bytes(png))
    assert_problem(response, 422)
    await assert_nothing_stored(client, stack)


# -- idempotency keys --------------------------------------------------------------------------


async def test_idempotency_key_reused_with_another_body_is_refused(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    key = {"Idempotency-Key": "order-1234"}
    first = await post_raw(client, {**member(stack), **key}, make_jpeg(color=(1, 1, 1)))
    assert first.status_code == 201, first.text
    reused = await post_raw(client, {**member(stack), **key}, make_jpeg(color=(250, 1, 1)))
    assert_problem(reused, 422, "idempotency_key_reused")
    renamed = await post_raw(
        client, {**member(stack), **key}, make_jpeg(color=(1, 1, 1)), file_name="other.jpg"
    )
    assert_problem(renamed, 422, "idempotency_key_reused")
    assert await row_counts(stack) == (1, 1)
    assert len(await stored_objects(stack)) == 1


async def test_idempotency_key_replay_returns_the_same_file(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    jpeg = make_jpeg()
    headers = {**member(stack), "Idempotency-Key": "same-key"}
    first = await post_raw(client, headers, jpeg)
    second = await post_raw(client, headers, jpeg)
    assert first.status_code == second.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json()["file_id"] == first.json()["file_id"]
    # The key belongs to its caller: bob using alice's key is a new request.
    bob = await post_raw(client, {**member(stack, "bob"), "Idempotency-Key": "same-key"}, jpeg)
    assert bob.status_code == 201 and bob.json()["file_id"] != first.json()["file_id"]
    assert await row_counts(stack) == (2, 2)
    assert len(await stored_objects(stack)) == 2


async def test_twenty_concurrent_requests_with_one_key_store_one_file(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    jpeg = make_jpeg(320, 240)
    headers = {**member(stack), "Idempotency-Key": "burst-1"}
    responses = await asyncio.gather(*(post_raw(client, headers, jpeg) for _ in range(20)))
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses]
    assert len({r.json()["file_id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19
    assert await row_counts(stack) == (1, 1)
    assert len(await stored_objects(stack)) == 1


@pytest.mark.parametrize(
    "key",
    [b"", b"k" * 256, "ключ".encode(), b"tab\there", b"bell\x07"],
    ids=["empty", "too-long", "non-ascii", "tab", "control"],
)
async def test_malformed_idempotency_key_is_refused(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes], key: bytes
) -> None:
    jpeg = make_jpeg()
    body = CountingBody(jpeg, len(jpeg))
    headers = [(k.encode(), v.encode()) for k, v in {**member(stack), **RAW}.items()]
    headers.append((b"Idempotency-Key", key))
    response = await client.post(FILES, headers=headers, content=body)
    assert_problem(response, 400, "bad_request")
    assert body.pulled == 0
    await assert_nothing_stored(client, stack)


# -- a client that goes away --------------------------------------------------------------------


async def test_client_disconnecting_half_way_leaves_nothing(
    stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    jpeg = make_jpeg(400, 300)
    messages = [
        {"type": "http.request", "body": jpeg[:1000], "more_body": True},
        {"type": "http.request", "body": jpeg[1000:2000], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    token = stack.token("alice", ORG, Role.MEMBER)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": FILES,
        "raw_path": FILES.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"media.test"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(len(jpeg)).encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("media.test", 80),
    }
    app = create_app(stack.settings, stack.state)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        await manager.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        assert 400 <= start["status"] < 500, sent
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://media.test") as client:
            await assert_nothing_stored(client, stack)


async def post_then_stall(
    app: Any, path_and_query: str, headers: dict[str, str], first: bytes
) -> list[dict[str, Any]]:
    """POST ``first`` as the start of a longer body, then neither send more nor disconnect
    (a client gone quiet); the ASGI messages the app answered with."""
    sent: list[dict[str, Any]] = []
    delivered = False
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": first, "more_body": True}
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path, _, query = path_and_query.partition("?")
    raw_headers = [(b"host", b"media.test"), (b"content-length", str(len(first) + 5000).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(), "headers": raw_headers,
        "client": ("127.0.0.1", 5000), "server": ("media.test", 80),
    }  # fmt: skip
    async with asyncio.timeout(20):
        await app(scope, receive, send)
    return sent


def assert_request_timeout(sent: list[dict[str, Any]]) -> None:
    """The app answered 408 ``request_timeout`` and closes the connection."""
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 408, sent
    assert (b"connection", b"close") in [(k.lower(), v) for k, v in start["headers"]]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert orjson.loads(body)["code"] == "request_timeout"


@pytest.mark.parametrize(
    "settings_overrides", [{"upload_idle_timeout_seconds": 0.5}], ids=["idle-0.5s"]
)
@pytest.mark.parametrize("content_type", ["application/octet-stream", "multipart/form-data"])
async def test_a_body_that_stops_arriving_is_408_and_leaves_nothing(
    stack: Stack, make_jpeg: Callable[..., bytes], content_type: str
) -> None:
    """A client that keeps its connection open but sends no more (a body shorter than its
    Content-Length) used to hold the upload open forever."""
    jpeg = make_jpeg(400, 300)
    if content_type.startswith("multipart"):
        head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
        content_type, first = "multipart/form-data; boundary=b", head + jpeg[:1000]
    else:
        first = jpeg[:1000]
    token = stack.token("alice", ORG, Role.MEMBER)
    query = b"owner_type=User&owner_id=alice" if "octet" in content_type else b""
    headers = {"authorization": f"Bearer {token}", "content-type": content_type}
    app = create_app(stack.settings, stack.state)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        sent = await post_then_stall(manager.app, FILES + "?" + query.decode(), headers, first)
        assert_request_timeout(sent)
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://media.test") as client:
            await assert_nothing_stored(client, stack)


@pytest.mark.parametrize(
    "settings_overrides", [{"max_image_pixels": 300_000_000}], ids=["300-megapixels"]
)
async def test_pixel_limit_is_ours_not_pillows(client: httpx.AsyncClient, stack: Stack) -> None:
    """225 MP is above Pillow's built-in bomb limit (179 MP) but below the configured one."""
    response = await post_raw(client, member(stack), png_bomb(15_000))
    assert response.status_code == 201, response.text
    assert (response.json()["width"], response.json()["height"]) == (15_000, 15_000)
    too_large = await post_raw(client, member(stack), png_bomb())
    assert_problem(too_large, 422, "image_too_large")
