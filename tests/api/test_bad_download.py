"""Hostile reads and changes: forged signed URLs, bad ranges, traversal, bad queries.

Each one must get a clear 4xx problem body, serve no bytes it should not, and change
nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from media_service.auth.principal import Role
from media_service.media.signing import SigningKey, UrlSigner, derive_signing_key
from media_service.media.storage_keys import file_folder

from conftest import Stack

FILES = "/api/v1/media/files"
ORG = "org_bad"
SEVEN_DAYS = 7 * 24 * 3600


def member(stack: Stack, sub: str = "alice") -> dict[str, str]:
    return stack.auth(sub, ORG, Role.MEMBER)


def admin(stack: Stack, org: str = ORG) -> dict[str, str]:
    return stack.auth("root", org, Role.ADMIN)


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body


async def upload(client: httpx.AsyncClient, stack: Stack, data: bytes, sub: str = "alice") -> dict:
    response = await client.post(
        FILES,
        headers={**member(stack, sub), "Content-Type": "application/octet-stream"},
        content=data,
        params={"file_name": "photo.jpg"},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def signed_url(client: httpx.AsyncClient, stack: Stack, file_id: str) -> str:
    response = await client.post(
        f"{FILES}/{file_id}/signed-url", headers=member(stack), json={"expires_in": 600}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["url"])


def split_signed(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


def content_path(file_id: str) -> str:
    return f"{FILES}/{file_id}/content"


# -- signed URLs ---------------------------------------------------------------------------------


def flip(text: str) -> str:
    return ("A" if text[0] != "A" else "B") + text[1:]


TAMPERED: dict[str, Callable[[str, dict[str, str], str], tuple[str, dict[str, str]]]] = {
    "sig-altered": lambda p, q, o: (p, {**q, "sig": flip(q["sig"])}),
    "sig-truncated": lambda p, q, o: (p, {**q, "sig": q["sig"][:-2]}),
    "sig-empty": lambda p, q, o: (p, {**q, "sig": ""}),
    "sig-over-long": lambda p, q, o: (p, {**q, "sig": q["sig"] * 10}),
    "exp-extended": lambda p, q, o: (p, {**q, "exp": str(int(q["exp"]) + 3600)}),
    "exp-not-a-number": lambda p, q, o: (p, {**q, "exp": "tomorrow"}),
    "exp-negative": lambda p, q, o: (p, {**q, "exp": "-" + q["exp"]}),
    "exp-huge": lambda p, q, o: (p, {**q, "exp": "9" * 400}),
    "exp-missing": lambda p, q, o: (p, {k: v for k, v in q.items() if k != "exp"}),
    "kid-altered": lambda p, q, o: (p, {**q, "kid": "k9"}),
    "kid-empty": lambda p, q, o: (p, {**q, "kid": ""}),
    "kid-missing": lambda p, q, o: (p, {k: v for k, v in q.items() if k != "kid"}),
    "other-file": lambda p, q, o: (content_path(o), q),
    "other-endpoint": lambda p, q, o: (p.removesuffix("/content"), q),
}


@pytest.mark.parametrize("case", list(TAMPERED))
async def test_tampered_signed_url_is_refused(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes], case: str
) -> None:
    mine = await upload(client, stack, make_jpeg(color=(10, 10, 10)))
    other = await upload(client, stack, make_jpeg(color=(240, 240, 240)), sub="bob")
    path, query = split_signed(await signed_url(client, stack, mine["file_id"]))
    assert (await client.get(path, params=query)).status_code == 200  # the untouched URL works
    path, query = TAMPERED[case](path, query, other["file_id"])
    for method in ("GET", "HEAD"):
        response = await client.request(method, path, params=query)
        allowed = {401, 403} | ({405} if method == "HEAD" and case == "other-endpoint" else set())
        assert response.status_code in allowed, (method, response.status_code)
        if method == "GET":
            status = response.status_code
            assert_problem(response, status, "invalid_signature" if status == 403 else None)
            assert response.content != make_jpeg(color=(10, 10, 10))


async def test_signed_url_without_sig_is_not_authorised(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    record = await upload(client, stack, make_jpeg())
    path, query = split_signed(await signed_url(client, stack, record["file_id"]))
    del query["sig"]
    response = await client.get(path, params=query)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_expired_signed_url_is_refused(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    record = await upload(client, stack, make_jpeg())
    path = content_path(record["file_id"])
    past = stack.state.signer.sign("GET", path, int(time.time()) - 5)
    response = await client.get(f"{path}?{past.as_query()}")
    body = assert_problem(response, 403, "invalid_signature")
    assert "expired" in body["detail"]
    current = stack.state.signer.sign("GET", path, int(time.time()) + 60)
    assert (await client.get(f"{path}?{current.as_query()}")).status_code == 200


async def test_signed_url_expiring_in_two_seconds_stops_working(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    record = await upload(client, stack, make_jpeg())
    before = time.time()
    response = await client.post(
        f"{FILES}/{record['file_id']}/signed-url", headers=member(stack), json={"expires_in": 2}
    )
    assert response.status_code == 200, response.text
    url = response.json()["url"]
    expires = int(split_signed(url)[1]["exp"])
    assert expires >= before + 2  # at least the lifetime asked for, never a fraction less
    assert (await client.get(url)).status_code == 200
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.05)
    assert_problem(await client.get(url), 403, "invalid_signature")


async def test_signed_url_with_an_unknown_key_is_refused(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    record = await upload(client, stack, make_jpeg())
    path = content_path(record["file_id"])
    stranger = UrlSigner([SigningKey("k0", b"a-secret-we-never-configured-0123")])
    unknown = UrlSigner([SigningKey("k-unknown", b"a-secret-we-never-configured-0123")])
    expires = int(time.time()) + 600
    for signer in (stranger, unknown):
        response = await client.get(f"{path}?{signer.sign('GET', path, expires).as_query()}")
        assert_problem(response, 403, "invalid_signature")


NEW_KEY = SigningKey("k2", b"the-new-signing-secret-0123456789")
OLD_KEY = SigningKey("k1", b"the-old-signing-secret-0123456789")
ROTATED = {"signing_keys": f"k2:{NEW_KEY.secret.decode()},k1:{OLD_KEY.secret.decode()}"}


@pytest.mark.parametrize("settings_overrides", [ROTATED], ids=["rotated-keys"])
async def test_retired_signing_key_no_longer_verifies(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    record = await upload(client, stack, make_jpeg())
    path = content_path(record["file_id"])
    expires = int(time.time()) + 600
    issued = split_signed(await signed_url(client, stack, record["file_id"]))[1]
    assert issued["kid"] == "k2"  # the first key signs
    old = UrlSigner([OLD_KEY]).sign("GET", path, expires)
    assert (await client.get(f"{path}?{old.as_query()}")).status_code == 200  # still listed
    retired = UrlSigner([derive_signing_key("whatever")]).sign("GET", path, expires)
    assert_problem(await client.get(f"{path}?{retired.as_query()}"), 403, "invalid_signature")
    forged_kid = UrlSigner([SigningKey("k1", NEW_KEY.secret)]).sign("GET", path, expires)
    assert_problem(await client.get(f"{path}?{forged_kid.as_query()}"), 403, "invalid_signature")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"expires_in": SEVEN_DAYS + 1}, 422),
        ({"expires_in": 10**30}, 422),
        ({"expires_in": 0}, 422),
        ({"expires_in": -60}, 422),
        ({"expires_in": "soon"}, 422),
        ({"expires_in": 1.5}, 422),
        ({"expires_in": 60, "method": "PUT"}, 422),
        ({"expires_in": SEVEN_DAYS}, 200),
    ],
    ids=["week-plus-one", "huge", "zero", "negative", "text", "fraction", "extra-field", "week"],
)
async def test_signed_url_lifetime_is_bounded(
    client: httpx.AsyncClient,
    stack: Stack,
    make_jpeg: Callable[..., bytes],
    body: dict[str, object],
    status: int,
) -> None:
    record = await upload(client, stack, make_jpeg())
    response = await client.post(
        f"{FILES}/{record['file_id']}/signed-url", headers=member(stack), json=body
    )
    if status == 200:
        assert response.status_code == 200, response.text
        assert (await client.get(response.json()["url"])).status_code == 200
    else:
        assert_problem(response, 422)


async def test_signed_url_of_a_deleted_file_is_gone(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    record = await upload(client, stack, make_jpeg())
    url = await signed_url(client, stack, record["file_id"])
    assert (await client.get(url)).status_code == 200
    deleted = await client.delete(f"{FILES}/{record['file_id']}", headers=member(stack))
    assert deleted.status_code == 204
    assert_problem(await client.get(url), 404, "not_found")
    assert (await client.head(url)).status_code == 404


async def test_file_whose_bytes_vanished_is_not_found_rather_than_an_error(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    """A download that finds the row just before a delete removes the bytes (or bytes lost
    by the store) answers 404, not 500."""
    record = await upload(client, stack, make_jpeg())
    folder = file_folder(record["file_id"])
    keys = [info.key async for info in stack.state.blobs.list(folder)]
    assert keys
    for key in keys:
        await stack.state.blobs.delete(key)
    response = await client.get(f"{FILES}/{record['file_id']}/content", headers=member(stack))
    assert_problem(response, 404, "not_found")


# -- ranges ----------------------------------------------------------------------------------------


async def test_unsatisfiable_ranges_get_416(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    jpeg = make_jpeg(300, 200)
    record = await upload(client, stack, jpeg)
    url = content_path(record["file_id"])
    signed = await signed_url(client, stack, record["file_id"])
    size = len(jpeg)
    for header in ("bytes=999999999-", "bytes=-0", f"bytes={size}-", f"bytes={size}-{size + 5}"):
        for target, headers in ((url, member(stack)), (signed, {})):
            response = await client.get(target, headers={**headers, "Range": header})
            assert_problem(response, 416, "range_not_satisfiable")
            assert response.headers["content-range"] == f"bytes */{size}"
        head = await client.head(url, headers={**member(stack), "Range": header})
        assert head.status_code == 416 and head.headers["content-range"] == f"bytes */{size}"


async def test_ranges_that_are_ignored_serve_the_whole_file(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    jpeg = make_jpeg(300, 200)
    record = await upload(client, stack, jpeg)
    url = content_path(record["file_id"])
    ignored = [
        "bytes=" + ",".join(f"{i}-{i + 100}" for i in range(1000)),  # a thousand overlapping
        "bytes=0-10,5-15",
        "bytes=abc",
        "bytes=10-5",
        "bytes=--1",
        "bytes=0-1-2",
        "items=0-10",
        "bytes 0-10",
        "bytes=",
        "bytes=-",
        "bytes=" + "9" * 2000 + "-",
        "bytes=0\u00a0-10",  # a latin-1 no-break space is not HTTP whitespace
    ]
    for header in ignored:
        response = await client.get(
            url, headers=httpx.Headers({**member(stack), "Range": header}, encoding="latin-1")
        )
        assert response.status_code == 200, (header[:40], response.status_code)
        assert response.content == jpeg
        assert "content-range" not in response.headers


# -- traversal and odd ids ----------------------------------------------------------------------

TRAVERSALS = [
    "/api/v1/media/files/..%2F..%2Fetc%2Fpasswd/content",
    "/api/v1/media/files/%2e%2e/content",
    "/api/v1/media/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd/content",
    "/api/v1/media/files/%2E%2E%5C%2E%2E%5Cetc%5Cpasswd/content",
    "/api/v1/media/files/%252e%252e%252fetc%252fpasswd/content",
    "/api/v1/media/files/..%2F..%2F..%2F..%2Fpyproject.toml/content",
    "/api/v1/media/files/file_%2F..%2Foriginal/content",
    "/api/v1/media/files/..%2Fblobs%2Ffiles/content",
    "/api/v1/media/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
async def test_encoded_traversal_in_the_path_is_not_found(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes], path: str
) -> None:
    await upload(client, stack, make_jpeg())
    for headers in (member(stack), admin(stack)):
        response = await client.get(path, headers=headers)
        assert_problem(response, 404, "not_found")
        assert b"root:" not in response.content and b"[project]" not in response.content
    forged_query = {"exp": str(int(time.time()) + 60), "kid": "k0", "sig": "x" * 43}
    forged = await client.get(path, params=forged_query)
    assert 400 <= forged.status_code < 500
    assert forged.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "file_id",
    ["%00", "file_%00", "file_01m7yay2crynrxptvs0b5pver8%00", "a%0Ab", "%C0%AE", "x" * 5000],
    ids=["nul", "prefix-nul", "valid-then-nul", "newline", "overlong-utf8", "long"],
)
async def test_malformed_ids_are_not_found_on_every_endpoint(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes], file_id: str
) -> None:
    await upload(client, stack, make_jpeg())
    url = f"{FILES}/{file_id}"
    attempts = [
        await client.get(url, headers=admin(stack)),
        await client.get(f"{url}/content", headers=admin(stack)),
        await client.post(f"{url}/signed-url", headers=admin(stack), json={}),
        await client.patch(url, headers=admin(stack), json={"file_name": "x.jpg"}),
        await client.delete(url, headers=admin(stack)),
    ]
    for response in attempts:
        assert_problem(response, 404, "not_found")


# -- another organization's ids ------------------------------------------------------------------


async def test_another_organizations_file_is_not_found_everywhere(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    record = await upload(client, stack, make_jpeg())
    url = f"{FILES}/{record['file_id']}"
    strangers = [
        admin(stack, "org_other"),
        stack.auth("x", "org_other", Role.SERVICE),
        member(stack, "bob"),
    ]
    for stranger in strangers:
        attempts = [
            await client.get(url, headers=stranger),
            await client.get(f"{url}/content", headers=stranger),
            await client.post(f"{url}/signed-url", headers=stranger, json={}),
            await client.patch(url, headers=stranger, json={"file_name": "mine.jpg"}),
            await client.delete(url, headers=stranger),
        ]
        for response in attempts:
            assert_problem(response, 404, "not_found")
        head = await client.head(f"{url}/content", headers=stranger)
        assert head.status_code == 404
    unchanged = await client.get(url, headers=member(stack))
    assert unchanged.status_code == 200 and unchanged.json()["file_name"] == "photo.jpg"


# -- list queries -------------------------------------------------------------------------------

BAD_QUERIES: dict[str, str] = {
    "limit-zero": "limit=0",
    "limit-negative": "limit=-1",
    "limit-huge": "limit=1000000000",
    "limit-text": "limit=ten",
    "cursor-abc": "cursor=abc",
    "cursor-sql": "cursor=" + "%27%20OR%201%3D1%20--",
    "cursor-nul": "cursor=file_%00%00%00",
    "cursor-long": "cursor=" + "file_" + "0" * 500,
    "cursor-other-prefix": "cursor=ver_01m7yay2crynrxptvs0b5pver8",
    "inverted-dates": "uploaded_after=2026-02-01T00:00:00Z&uploaded_before=2026-01-01T00:00:00Z",
    "naive-date": "uploaded_after=2026-01-01T00:00:00",
    "not-a-date": "uploaded_before=yesterday",
    "absurd-date": "uploaded_after=99999-01-01T00:00:00Z",
    "overflowing-date": "uploaded_after=0001-01-01T00:00:00%2B01:00",
    "overflowing-date-2": "uploaded_before=9999-12-31T23:59:59-01:00",
    "unknown-field": "sort=file_name",
    "unknown-field-2": "owner=alice",
    "unknown-owner-type": "owner_type=Robot",
    "unknown-file-type": "file_type=Executable",
    "processed-maybe": "processed=maybe",
    "owner-id-nul": "owner_id=alice%00",
    "owner-id-huge": "owner_id=" + "a" * 60_000,  # httpx caps URLs at 64 KiB
}


@pytest.mark.parametrize("case", list(BAD_QUERIES))
async def test_bad_list_queries_are_refused(
    client: httpx.AsyncClient, stack: Stack, case: str
) -> None:
    response = await client.get(f"{FILES}?{BAD_QUERIES[case]}", headers=member(stack))
    body = assert_problem(response, 422)
    assert body["code"] in {"validation_error", "unprocessable"}


async def test_sql_looking_filters_match_nothing(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    await upload(client, stack, make_jpeg())
    for owner_id in ("alice' OR '1'='1", 'alice" OR 1=1 --', "%", "_", "alice%", "*"):
        response = await client.get(FILES, params={"owner_id": owner_id}, headers=admin(stack))
        assert response.status_code == 200, response.text
        assert response.json()["items"] == []
    # A lone surrogate, percent-encoded: decoded leniently, never a 500.
    response = await client.get(f"{FILES}?owner_id=%ED%A0%80", headers=admin(stack))
    assert response.status_code in {200, 422}
    if response.status_code == 200:
        assert response.json()["items"] == []


# -- PATCH ---------------------------------------------------------------------------------------

BAD_PATCHES: dict[str, object] = {
    "storage-path": {"storage_path": "files/aa/file_x/original"},
    "organization": {"organization_id": "org_other"},
    "sha256": {"sha256": "0" * 64},
    "uploaded-by": {"uploaded_by": "mallory"},
    "file-id": {"file_id": "file_01m7yay2crynrxptvs0b5pver8"},
    "known-and-unknown": {"file_name": "ok.jpg", "size": 1},
    "empty-name": {"file_name": ""},
    "unknown-owner-type": {"owner_type": "Robot"},
    "owner-id-control": {"owner_id": "bob\r\n"},
    "processed-text": {"processed": "maybe"},
    "not-an-object": ["file_name", "x.jpg"],
    "null-body": None,
}


@pytest.mark.parametrize("case", list(BAD_PATCHES))
async def test_bad_patches_are_refused_and_change_nothing(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes], case: str
) -> None:
    record = await upload(client, stack, make_jpeg())
    url = f"{FILES}/{record['file_id']}"
    response = await client.patch(url, headers=admin(stack), json=BAD_PATCHES[case])
    assert_problem(response, 422)
    assert (await client.get(url, headers=member(stack))).json() == record


async def test_patch_that_is_not_json_is_refused(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    record = await upload(client, stack, make_jpeg())
    url = f"{FILES}/{record['file_id']}"
    lone_surrogates = [b'{"owner_id": "\\ud800"}', b'{"file_name": "a\\udfff.jpg"}']
    for content in (b"{not json", b"\xff\xfe", b"", *lone_surrogates):
        response = await client.patch(
            url, headers={**admin(stack), "Content-Type": "application/json"}, content=content
        )
        assert_problem(response, 422)
    assert (await client.get(url, headers=member(stack))).json() == record


async def test_patches_beyond_the_callers_role_are_forbidden(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    record = await upload(client, stack, make_jpeg())
    url = f"{FILES}/{record['file_id']}"
    service = stack.auth("ai", ORG, Role.SERVICE)
    for patch in (
        {"owner_type": "Other", "owner_id": "x"},
        {"owner_id": "bob"},
        {"file_name": "renamed.jpg"},
    ):
        assert_problem(await client.patch(url, headers=service, json=patch), 403, "forbidden")
    assert_problem(
        await client.patch(url, headers=member(stack), json={"processed": True}), 403, "forbidden"
    )
    assert_problem(
        await client.patch(url, headers=member(stack), json={"owner_id": "bob"}), 403, "forbidden"
    )
    assert_problem(await client.delete(url, headers=service), 403, "forbidden")
    assert (await client.get(url, headers=member(stack))).json() == record
