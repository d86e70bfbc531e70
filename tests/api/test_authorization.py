"""The authorisation matrix (DESIGN.md §5): who may do what to which file, over HTTP.

Seven files in two organizations, fourteen callers, every endpoint that takes a file id.
The expectations are written out as a table (what each caller may read, write, and whether
it may report processing); a small function turns a table row into the status each
endpoint must answer. A caller that cannot see a file always gets 404, never 403, so ids
cannot be probed; a caller that can see a file but not change it gets 403.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select

from media_service.auth.principal import Role
from media_service.ids import new_id
from media_service.media.models import MediaFile

from conftest import Stack

ORG_A, ORG_B = "org-a", "org-b"
API = "/api/v1/media/files"


@dataclass(frozen=True)
class Caller:
    """Who sends a request: a token's claims, or (``sub`` None) no token at all."""

    sub: str | None
    org: str = ORG_A
    roles: tuple[Role, ...] = ()
    frame_id: str | None = None
    internal_header: bool = False  # also send the spec's X-Internal-Call header


CALLERS: dict[str, Caller] = {
    "admin_a": Caller("admin-a", ORG_A, (Role.ADMIN,)),
    "admin_b": Caller("admin-b", ORG_B, (Role.ADMIN,)),
    "service_a": Caller("svc-a", ORG_A, (Role.SERVICE,)),
    "teacher_t1": Caller("t1", ORG_A, (Role.TEACHER,)),
    "teacher_t2": Caller("t2", ORG_A, (Role.TEACHER,)),
    "student_s1": Caller("s1", ORG_A, (Role.STUDENT,)),
    "student_s2": Caller("s2", ORG_A, (Role.STUDENT,)),
    "member_m1": Caller("m1", ORG_A, (Role.MEMBER,)),
    "member_m2": Caller("m2", ORG_A, (Role.MEMBER,)),
    "frame": Caller("frame-device-1", ORG_A, (Role.FRAME,), frame_id="frame-1"),
    "no_roles": Caller("nobody", ORG_A, ()),
    "internal_header_only": Caller(None, internal_header=True),
    "student_s1_with_internal_header": Caller("s1", ORG_A, (Role.STUDENT,), internal_header=True),
    "teacher_t1_also_service": Caller("t1", ORG_A, (Role.TEACHER, Role.SERVICE)),
}


def headers_for(stack: Stack, name: str) -> dict[str, str]:
    caller = CALLERS[name]
    headers = {"X-Internal-Call": "true", "X-User-Id": "admin-a"} if caller.internal_header else {}
    if caller.sub is not None:
        token = stack.token(caller.sub, caller.org, *caller.roles, frame_id=caller.frame_id)
        headers["Authorization"] = f"Bearer {token}"
    return headers


@dataclass(frozen=True)
class Fixture:
    uploader: str
    owner_type: str
    owner_id: str


# The files of the matrix, and who uploads them (through the API, so uploads are exercised too).
FILES: dict[str, Fixture] = {
    "s1": Fixture("student_s1", "Student", "s1"),
    "s2": Fixture("service_a", "Student", "s2"),  # uploaded by a service for the student
    "t1": Fixture("teacher_t1", "Teacher", "t1"),
    "cs1": Fixture("teacher_t1", "ClassSession", "cs1"),
    "cs_b": Fixture("admin_b", "ClassSession", "cs-b"),  # in the other organization
    "m1": Fixture("member_m1", "User", "m1"),
    "other": Fixture("teacher_t1", "Other", "other-1"),
}
ALL_IN_A = "s1 s2 t1 cs1 m1 other"


@dataclass(frozen=True)
class Grants:
    reads: frozenset[str]
    writes: frozenset[str]
    marks_processed: bool


def grants(reads: str, writes: str, marks_processed: bool) -> Grants:
    return Grants(frozenset(reads.split()), frozenset(writes.split()), marks_processed)


# What each caller may do: grants(files it may read, files it may change or delete, whether it
# may report processing). None: no valid token, so 401 everywhere.
EXPECTED: dict[str, Grants | None] = {
    "admin_a": grants(ALL_IN_A, ALL_IN_A, True),
    "admin_b": grants("cs_b", "cs_b", True),
    "service_a": grants(ALL_IN_A, "", True),
    "teacher_t1": grants("t1 cs1 other", "t1 cs1 other", False),
    "teacher_t2": grants("cs1", "cs1", False),
    "student_s1": grants("s1", "s1", False),
    "student_s2": grants("s2", "s2", False),
    "member_m1": grants("m1", "m1", False),
    "member_m2": grants("", "", False),
    "frame": grants("", "", False),
    "no_roles": grants("", "", False),
    "internal_header_only": None,
    "student_s1_with_internal_header": grants("s1", "s1", False),
    "teacher_t1_also_service": grants(ALL_IN_A, "t1 cs1 other", True),
}
assert EXPECTED.keys() == CALLERS.keys()

READ_ENDPOINTS = ("get_record", "get_content", "head_content", "signed_url")
WRITE_SUCCESS = {"patch_processed": 200, "patch_name": 200, "delete": 204}


def expected_status(granted: Grants | None, endpoint: str, label: str) -> int:
    """The status ``endpoint`` must answer for file ``label`` given a caller's grants."""
    if granted is None:
        return 401
    if label not in granted.reads:
        return 404  # never 403: the caller must not learn that the id exists
    if endpoint in READ_ENDPOINTS:
        return 200
    allowed = granted.marks_processed if endpoint == "patch_processed" else label in granted.writes
    return WRITE_SUCCESS[endpoint] if allowed else 403


@dataclass
class Stored:
    file_id: str
    name: str
    data: bytes


async def upload(
    client: httpx.AsyncClient, headers: dict[str, str], data: bytes, name: str, **fields: str
) -> httpx.Response:
    return await client.post(
        API, headers=headers, files={"file": (name, data, "image/jpeg")}, data=fields
    )


async def store_fixtures(
    client: httpx.AsyncClient,
    stack: Stack,
    make_jpeg: Callable[..., bytes],
    only: str | None = None,
) -> dict[str, Stored]:
    """Upload the files of :data:`FILES` (or just ``only``) as their uploaders."""
    stored: dict[str, Stored] = {}
    for index, (label, fixture) in enumerate(FILES.items()):
        if only is not None and label != only:
            continue
        data = make_jpeg(32, 24, (index * 30, 100, 200 - index * 20))
        name = f"{label}.jpg"
        response = await upload(
            client,
            headers_for(stack, fixture.uploader),
            data,
            name,
            owner_type=fixture.owner_type,
            owner_id=fixture.owner_id,
        )
        assert response.status_code == 201, (label, response.text)
        stored[label] = Stored(response.json()["file_id"], name, data)
    return stored


async def call(
    client: httpx.AsyncClient, headers: dict[str, str], endpoint: str, stored: Stored
) -> httpx.Response:
    url = f"{API}/{stored.file_id}"
    if endpoint == "get_record":
        return await client.get(url, headers=headers)
    if endpoint == "get_content":
        return await client.get(f"{url}/content", headers=headers)
    if endpoint == "head_content":
        return await client.head(f"{url}/content", headers=headers)
    if endpoint == "signed_url":
        return await client.post(f"{url}/signed-url", headers=headers, json={"expires_in": 60})
    if endpoint == "patch_processed":
        return await client.patch(url, headers=headers, json={"processed": True})
    if endpoint == "patch_name":
        return await client.patch(url, headers=headers, json={"file_name": "renamed.jpg"})
    assert endpoint == "delete"
    return await client.delete(url, headers=headers)


async def check_success_body(
    client: httpx.AsyncClient, endpoint: str, stored: Stored, response: httpx.Response
) -> str | None:
    """What a successful answer must contain; a description of the problem, or None."""
    if endpoint == "get_record" and response.json()["file_id"] != stored.file_id:
        return "wrong record"
    if endpoint == "get_content" and response.content != stored.data:
        return "wrong bytes"
    if endpoint == "head_content" and (
        response.content or int(response.headers["content-length"]) != len(stored.data)
    ):
        return "HEAD body or length wrong"
    if endpoint == "signed_url":
        download = await client.get(response.json()["url"])  # no token: the URL is the grant
        if download.status_code != 200 or download.content != stored.data:
            return f"signed URL answered {download.status_code}"
    if endpoint == "patch_processed" and response.json()["processed"] is not True:
        return "processed not set"
    if endpoint == "patch_name" and response.json()["file_name"] != "renamed.jpg":
        return "not renamed"
    return None


@pytest.mark.parametrize("caller", list(CALLERS))
async def test_matrix(
    caller: str, client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    stored = await store_fixtures(client, stack, make_jpeg)
    granted = EXPECTED[caller]
    headers = headers_for(stack, caller)
    wrong: list[str] = []

    async def check(endpoint: str, label: str) -> None:
        response = await call(client, headers, endpoint, stored[label])
        want = expected_status(granted, endpoint, label)
        if response.status_code != want:
            wrong.append(f"{endpoint} {label}: {response.status_code}, expected {want}")
        elif response.status_code < 300:
            problem = await check_success_body(client, endpoint, stored[label], response)
            if problem:
                wrong.append(f"{endpoint} {label}: {problem}")

    # Reads and non-destructive writes first, then the listing, then deletes.
    for label in FILES:
        for endpoint in (*READ_ENDPOINTS, "patch_processed", "patch_name"):
            await check(endpoint, label)
    listing = await client.get(API, params={"limit": 500}, headers=headers)
    if granted is None:
        assert listing.status_code == 401, listing.text
    else:
        assert listing.status_code == 200, listing.text
        listed = {item["file_id"] for item in listing.json()["items"]}
        assert listed == {stored[label].file_id for label in granted.reads}, caller
    for label in FILES:
        await check("delete", label)
    assert wrong == [], f"{caller}:\n" + "\n".join(wrong)
    await assert_final_state(stack, stored, granted)


async def assert_final_state(
    stack: Stack, stored: dict[str, Stored], granted: Grants | None
) -> None:
    """Refused requests changed nothing; allowed ones did exactly what they said."""
    async with stack.state.sessions() as session:
        rows = {row.file_id: row for row in (await session.execute(select(MediaFile))).scalars()}
    blobs = {info.key async for info in stack.state.blobs.list("files/")}
    for label, item in stored.items():
        deleted = granted is not None and label in granted.writes
        assert (item.file_id in rows) is not deleted, label
        if deleted:
            continue
        row = rows[item.file_id]
        assert row.storage_path in blobs, label
        assert row.file_name == item.name, label  # only writers (all deleted since) renamed
        marked = granted is not None and granted.marks_processed and label in granted.reads
        assert row.processed is marked, label


async def test_refusals_of_invisible_files_look_like_missing_files(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    """A teacher probing a colleague's file, another organization's file and an id that
    never existed gets the same answer on every endpoint, up to the id in the detail."""
    stored = await store_fixtures(client, stack, make_jpeg)
    missing = Stored(new_id("file"), "missing.jpg", b"")
    headers = headers_for(stack, "teacher_t2")
    for endpoint in (*READ_ENDPOINTS, "patch_processed", "patch_name", "delete"):
        answers = []
        for target in (stored["t1"], stored["cs_b"], stored["other"], missing):
            response = await call(client, headers, endpoint, target)
            body = response.text.replace(target.file_id, "<id>")
            answers.append((response.status_code, body, response.headers.get("content-type")))
        assert answers[0][0] == 404, (endpoint, answers[0])
        assert all(answer == answers[0] for answer in answers), (endpoint, answers)


async def test_read_only_caller_gets_403_on_visible_but_404_on_invisible(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    """The service may see the file, so refusing its delete with 403 reveals nothing; a
    file of the other organization stays a 404."""
    stored = await store_fixtures(client, stack, make_jpeg)
    service = headers_for(stack, "service_a")
    visible = await client.delete(f"{API}/{stored['s1'].file_id}", headers=service)
    assert visible.status_code == 403, visible.text
    assert visible.json()["code"] == "forbidden"
    invisible = await client.delete(f"{API}/{stored['cs_b'].file_id}", headers=service)
    assert invisible.status_code == 404, invisible.text
    owner = await client.patch(
        f"{API}/{stored['s1'].file_id}",
        headers=service,
        json={"owner_type": "Student", "owner_id": "s2"},
    )
    assert owner.status_code == 403, owner.text
    # processed and a refused change in one request: nothing of it is kept
    mixed = await client.patch(
        f"{API}/{stored['s1'].file_id}",
        headers=service,
        json={"processed": True, "file_name": "x.jpg"},
    )
    assert mixed.status_code == 403, mixed.text
    record = await client.get(f"{API}/{stored['s1'].file_id}", headers=service)
    assert record.json()["processed"] is False
    assert (record.json()["owner_id"], record.json()["file_name"]) == ("s1", "s1.jpg")


async def test_list_filters_cannot_widen_visibility(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    stored = await store_fixtures(client, stack, make_jpeg)
    cases = [
        ("student_s1", {"owner_id": "s2"}, set()),
        ("student_s1", {"owner_type": "Student"}, {"s1"}),
        ("teacher_t2", {"owner_type": "Teacher"}, set()),
        ("teacher_t2", {"owner_type": "Other"}, set()),
        ("teacher_t1", {"owner_type": "Other"}, {"other"}),
        ("admin_a", {"owner_type": "ClassSession"}, {"cs1"}),
        ("admin_b", {"owner_id": "s1"}, set()),
        ("member_m2", {"owner_id": "m1"}, set()),
    ]
    for caller, params, labels in cases:
        response = await client.get(API, params=params, headers=headers_for(stack, caller))
        assert response.status_code == 200, response.text
        got = {item["file_id"] for item in response.json()["items"]}
        assert got == {stored[label].file_id for label in labels}, (caller, params)


# -- uploads -------------------------------------------------------------------------------

# caller, form fields, expected status, expected (owner_type, owner_id) when stored
UPLOADS: list[tuple[str, dict[str, str], int, tuple[str, str] | None]] = [
    ("student_s1", {"owner_type": "Student", "owner_id": "s1"}, 201, ("Student", "s1")),
    ("student_s1", {}, 201, ("Student", "s1")),  # default: the caller's personal owner
    ("student_s1", {"owner_type": "Student"}, 201, ("Student", "s1")),
    ("student_s1", {"owner_type": "Student", "owner_id": "s2"}, 403, None),
    ("student_s1", {"owner_id": "s2"}, 403, None),  # type defaults to Student: still s2's
    ("student_s1", {"owner_type": "ClassSession", "owner_id": "cs1"}, 403, None),
    ("student_s1", {"owner_type": "Teacher", "owner_id": "s1"}, 403, None),
    ("student_s1", {"owner_type": "User", "owner_id": "s1"}, 403, None),
    ("student_s1", {"owner_type": "Other", "owner_id": "x"}, 403, None),
    ("teacher_t1", {"owner_type": "ClassSession", "owner_id": "cs1"}, 201, ("ClassSession", "cs1")),
    ("teacher_t1", {"owner_type": "Teacher", "owner_id": "t1"}, 201, ("Teacher", "t1")),
    ("teacher_t1", {}, 201, ("Teacher", "t1")),
    ("teacher_t1", {"owner_type": "Other", "owner_id": "report-1"}, 201, ("Other", "report-1")),
    ("teacher_t1", {"owner_type": "Teacher", "owner_id": "t2"}, 403, None),
    ("teacher_t1", {"owner_type": "Student", "owner_id": "s1"}, 403, None),
    ("teacher_t1", {"owner_type": "User", "owner_id": "t1"}, 403, None),
    ("teacher_t1", {"owner_type": "ClassSession"}, 422, None),  # which session?
    ("member_m1", {"owner_type": "User", "owner_id": "m1"}, 201, ("User", "m1")),
    ("member_m1", {}, 201, ("User", "m1")),
    ("member_m1", {"owner_type": "User", "owner_id": "m2"}, 403, None),
    ("member_m1", {"owner_type": "Other", "owner_id": "x"}, 403, None),
    ("member_m1", {"owner_type": "Student", "owner_id": "m1"}, 403, None),
    ("member_m1", {"owner_type": "ClassSession", "owner_id": "cs1"}, 403, None),
    ("service_a", {"owner_type": "Student", "owner_id": "s1"}, 201, ("Student", "s1")),
    ("service_a", {"owner_type": "Teacher", "owner_id": "t1"}, 201, ("Teacher", "t1")),
    ("service_a", {"owner_type": "ClassSession", "owner_id": "cs1"}, 201, ("ClassSession", "cs1")),
    ("service_a", {"owner_type": "User", "owner_id": "m1"}, 201, ("User", "m1")),
    ("service_a", {"owner_type": "Other", "owner_id": "x"}, 201, ("Other", "x")),
    ("service_a", {}, 422, None),  # a service has no personal owner: it must name one
    ("admin_a", {"owner_type": "Student", "owner_id": "s2"}, 201, ("Student", "s2")),
    ("admin_a", {"owner_type": "User", "owner_id": "m2"}, 201, ("User", "m2")),
    ("admin_a", {}, 422, None),
    ("admin_b", {"owner_type": "Student", "owner_id": "s1"}, 201, ("Student", "s1")),
    ("frame", {"owner_type": "User", "owner_id": "frame-device-1"}, 403, None),
    ("frame", {"owner_type": "Other", "owner_id": "x"}, 403, None),
    ("frame", {}, 422, None),
    ("no_roles", {"owner_type": "User", "owner_id": "nobody"}, 403, None),
    ("no_roles", {}, 422, None),
    ("internal_header_only", {"owner_type": "Student", "owner_id": "s1"}, 401, None),
    ("student_s1_with_internal_header", {"owner_type": "Student", "owner_id": "s2"}, 403, None),
]


async def test_upload_matrix(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    wrong: list[str] = []
    stored = 0
    for index, (caller, fields, want, owner) in enumerate(UPLOADS):
        data = make_jpeg(16, 16, (index * 5, 255 - index * 5, 90))  # distinct: no dedupe
        response = await upload(client, headers_for(stack, caller), data, "up.jpg", **fields)
        row = f"{caller} {fields}"
        if response.status_code != want:
            wrong.append(f"{row}: {response.status_code}, expected {want}: {response.text}")
            continue
        if want != 201:
            continue
        stored += 1
        record = response.json()
        caller_claims = CALLERS[caller]
        got = (record["owner_type"], record["owner_id"])
        if got != owner:
            wrong.append(f"{row}: stored for {got}, expected {owner}")
        if (record["organization_id"], record["uploaded_by"]) != (
            caller_claims.org,
            caller_claims.sub,
        ):
            wrong.append(f"{row}: org/uploader {record['organization_id']}/{record['uploaded_by']}")
        readable = await client.get(
            f"{API}/{record['file_id']}", headers=headers_for(stack, caller)
        )
        if readable.status_code != 200:  # whoever stores a file can read it back
            wrong.append(f"{row}: uploader cannot read it back ({readable.status_code})")
    assert wrong == [], "\n".join(wrong)
    blobs = [info async for info in stack.state.blobs.list("files/")]
    assert len(blobs) == stored  # refused uploads left no bytes behind


async def test_upload_for_an_id_of_another_organization_stays_in_the_callers(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    """Organization comes from the token, never from the form: admin B storing a file "for
    s1" creates a file in org B that org A cannot see."""
    response = await upload(
        client,
        headers_for(stack, "admin_b"),
        make_jpeg(),
        "x.jpg",
        owner_type="Student",
        owner_id="s1",
        organization_id=ORG_A,
    )
    assert response.status_code == 201, response.text
    file_id = response.json()["file_id"]
    assert response.json()["organization_id"] == ORG_B
    for caller in ("student_s1", "admin_a", "service_a"):
        got = await client.get(f"{API}/{file_id}", headers=headers_for(stack, caller))
        assert got.status_code == 404, caller


# -- changes of owner ----------------------------------------------------------------------

# caller, file (from FILES), new owner, expected status
OWNER_CHANGES: list[tuple[str, str, dict[str, str], int]] = [
    ("admin_a", "s1", {"owner_type": "Student", "owner_id": "s2"}, 200),
    ("admin_a", "m1", {"owner_type": "Other", "owner_id": "archive"}, 200),
    ("admin_b", "s1", {"owner_type": "Student", "owner_id": "s2"}, 404),
    ("service_a", "s1", {"owner_type": "Student", "owner_id": "s2"}, 403),
    ("student_s1", "s1", {"owner_type": "Student", "owner_id": "s2"}, 403),
    ("student_s1", "s1", {"owner_id": "s1"}, 200),  # unchanged owner: allowed
    ("student_s2", "s1", {"owner_id": "s2"}, 404),  # cannot claim a file it cannot see
    ("teacher_t1", "other", {"owner_type": "ClassSession", "owner_id": "cs2"}, 200),
    ("teacher_t1", "t1", {"owner_type": "Student", "owner_id": "s1"}, 403),
    ("teacher_t1", "t1", {"owner_type": "Teacher", "owner_id": "t2"}, 403),
    ("teacher_t2", "cs1", {"owner_type": "ClassSession", "owner_id": "cs2"}, 200),
    ("teacher_t2", "other", {"owner_type": "Teacher", "owner_id": "t2"}, 404),
    ("teacher_t2", "t1", {"owner_type": "Teacher", "owner_id": "t2"}, 404),
    ("member_m1", "m1", {"owner_type": "User", "owner_id": "m2"}, 403),
    ("member_m1", "m1", {"owner_type": "Other", "owner_id": "x"}, 403),
    ("member_m2", "m1", {"owner_type": "User", "owner_id": "m2"}, 404),
    ("frame", "m1", {"owner_type": "User", "owner_id": "m2"}, 404),
]


async def test_owner_changes(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    wrong: list[str] = []
    for caller, label, new_owner, want in OWNER_CHANGES:
        stored = await store_fixtures(client, stack, make_jpeg, only=label)
        url = f"{API}/{stored[label].file_id}"
        response = await client.patch(url, headers=headers_for(stack, caller), json=new_owner)
        after = (await client.get(url, headers=headers_for(stack, "admin_a"))).json()
        fixture = FILES[label]
        moved = (after["owner_type"], after["owner_id"]) != (fixture.owner_type, fixture.owner_id)
        if response.status_code != want:
            wrong.append(f"{caller} {label} {new_owner}: {response.status_code}, expected {want}")
        elif moved != (want == 200 and new_owner.get("owner_id") != fixture.owner_id):
            wrong.append(f"{caller} {label} {new_owner}: owner now {after['owner_id']}")
        await clear(stack)
    assert wrong == [], "\n".join(wrong)


async def clear(stack: Stack) -> None:
    async with stack.state.sessions() as session:
        for row in (await session.execute(select(MediaFile))).scalars():
            await session.delete(row)
        await session.commit()


async def test_moving_a_students_file_away_takes_the_uploaders_access_with_it(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    """Students see their own Student media only. When an admin reassigns a file that s1
    uploaded to s2, s1 must lose it (only teachers keep what they uploaded)."""
    stored = await store_fixtures(client, stack, make_jpeg)
    url = f"{API}/{stored['s1'].file_id}"
    moved = await client.patch(url, headers=headers_for(stack, "admin_a"), json={"owner_id": "s2"})
    assert moved.status_code == 200, moved.text
    s1, s2 = headers_for(stack, "student_s1"), headers_for(stack, "student_s2")
    assert (await client.get(url, headers=s2)).status_code == 200
    assert (await client.get(url, headers=s1)).status_code == 404
    assert (await client.patch(url, headers=s1, json={"owner_id": "s1"})).status_code == 404
    assert (await client.delete(url, headers=s1)).status_code == 404
    listed = (await client.get(API, headers=s1)).json()["items"]
    assert [item["file_id"] for item in listed] == []
    assert (await client.get(url, headers=s2)).status_code == 200


async def test_teacher_keeps_what_they_uploaded_after_it_moves(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    """The counterpart: a teacher's uploads stay visible to them wherever they go."""
    stored = await store_fixtures(client, stack, make_jpeg)
    url = f"{API}/{stored['cs1'].file_id}"
    moved = await client.patch(
        url, headers=headers_for(stack, "admin_a"), json={"owner_type": "Other", "owner_id": "z"}
    )
    assert moved.status_code == 200, moved.text
    assert (await client.get(url, headers=headers_for(stack, "teacher_t1"))).status_code == 200
    assert (await client.get(url, headers=headers_for(stack, "teacher_t2"))).status_code == 404


async def test_duplicate_upload_does_not_reveal_a_file_the_caller_cannot_see(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    """The same bytes for the same owner are one file (dedupe). Teacher t2 cannot see the
    Other file t1 uploaded; uploading identical bytes for the same Other owner must not
    hand t2 that file's record (its id, name, uploader)."""
    stored = await store_fixtures(client, stack, make_jpeg)
    response = await upload(
        client,
        headers_for(stack, "teacher_t2"),
        stored["other"].data,
        "probe.jpg",
        owner_type="Other",
        owner_id="other-1",
    )
    assert stored["other"].file_id not in response.text, response.text
    assert "other.jpg" not in response.text, response.text


async def test_idempotent_replay_does_not_reveal_a_file_the_caller_lost(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    """A replay with the same Idempotency-Key answers from the stored key; once the file
    belongs to someone else the student may no longer see it, replay or not."""
    data = make_jpeg(20, 20, (1, 2, 3))
    s1 = {**headers_for(stack, "student_s1"), "Idempotency-Key": "k-1"}
    first = await upload(client, s1, data, "mine.jpg", owner_type="Student", owner_id="s1")
    assert first.status_code == 201, first.text
    file_id = first.json()["file_id"]
    moved = await client.patch(
        f"{API}/{file_id}", headers=headers_for(stack, "admin_a"), json={"owner_id": "s2"}
    )
    assert moved.status_code == 200, moved.text
    replay = await upload(client, s1, data, "mine.jpg", owner_type="Student", owner_id="s1")
    assert file_id not in replay.text, replay.text
    assert '"s2"' not in replay.text, replay.text
