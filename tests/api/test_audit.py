"""The audit trail on both stacks: who read, changed, shared or deleted student and class
media, as admins query it; nothing for other media, for failed or rolled-back requests,
and no secrets or contents in the rows; erasure pseudonymises it, retention trims it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import select

from media_service.audit.models import AuditAction, AuditEvent
from media_service.audit.repository import id_pseudonym
from media_service.audit.service import forget_person, purge_audit_events
from media_service.auth.principal import Principal, Role
from media_service.db.uow import unit_of_work
from media_service.media.schemas import MediaFilePatch
from media_service.media.service import MediaService

from conftest import Stack

ORG, OTHER_ORG = "org_audit", "org_audit_other"
FILES = "/api/v1/media/files"
AUDIT = "/api/v1/media/audit"


def admin(stack: Stack, org: str = ORG) -> dict[str, str]:
    return stack.auth("admin-1", org, Role.ADMIN)


def teacher(stack: Stack) -> dict[str, str]:
    return stack.auth("t1", ORG, Role.TEACHER)


def student(stack: Stack, sub: str = "s1") -> dict[str, str]:
    return stack.auth(sub, ORG, Role.STUDENT)


async def upload(
    client: httpx.AsyncClient, headers: dict[str, str], data: bytes, **fields: str
) -> dict[str, Any]:
    response = await client.post(
        FILES, headers=headers, files={"file": ("p.jpg", data, "image/jpeg")}, data=fields
    )
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()
    return record


async def trail(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(AUDIT, headers=headers, params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def stored_rows(stack: Stack) -> list[AuditEvent]:
    async with unit_of_work(stack.state.sessions) as session:
        return list((await session.execute(select(AuditEvent))).scalars().all())


async def test_a_teachers_reads_share_change_and_delete_are_audited_newest_first(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    # The teacher uploaded it; the admin then gave it to student s1. The teacher, as
    # its uploader, still reads and changes it.
    file_id = (
        await upload(client, teacher(stack), make_jpeg(), owner_type="Other", owner_id="lab")
    )["file_id"]
    moved = await client.patch(
        f"{FILES}/{file_id}",
        headers=admin(stack),
        json={"owner_type": "Student", "owner_id": "s1"},
    )
    assert moved.status_code == 200, moved.text

    url = f"{FILES}/{file_id}"
    steps = [
        await client.get(url, headers=teacher(stack)),
        await client.get(f"{url}/content", headers=teacher(stack)),
    ]
    signed = await client.post(
        f"{url}/signed-url", headers=teacher(stack), json={"expires_in": 120}
    )
    steps += [signed, await client.get(signed.json()["url"])]
    steps += [
        await client.patch(url, headers=teacher(stack), json={"file_name": "renamed.jpg"}),
        await client.delete(url, headers=teacher(stack)),
    ]
    assert [r.status_code for r in steps] == [200, 200, 200, 200, 200, 204]

    items = await trail(client, admin(stack), file_id=file_id)
    seen = [(e["actor_id"], e["action"], e["resource_type"]) for e in items]
    assert seen == [
        ("t1", "delete", "file"),
        ("t1", "change", "file"),
        ("signed-url", "read", "content"),
        ("t1", "share", "content"),
        ("t1", "read", "content"),
        ("t1", "read", "file"),
        ("admin-1", "change", "file"),  # moved to the student: now audited media
    ]
    times = [datetime.fromisoformat(e["occurred_at"]) for e in items]
    assert times == sorted(times, reverse=True)
    assert all(e["owner_type"] == "Student" and e["owner_id"] == "s1" for e in items)
    assert all(e["file_id"] == file_id == e["resource_id"] for e in items)
    assert items[0]["actor_roles"] == ["teacher"] and items[2]["actor_roles"] == []
    # Each row names the request it came from (the X-Request-ID the caller saw).
    request_ids = [r.headers["x-request-id"] for r in reversed(steps)]
    assert [e["request_id"] for e in items[:6]] == request_ids
    assert items[2]["detail"]["key_id"]  # which signing key authorised the download
    assert items[3]["detail"]["expires_at"] == signed.json()["expires_at"].replace("Z", "+00:00")
    assert items[1]["detail"] == {"fields": "file_name"}

    # A member's own photo is not audited, however often it is read.
    own = await upload(client, stack.auth("alice", ORG, Role.MEMBER), make_jpeg(color=(1, 2, 3)))
    for path in ("", "/content"):
        read = await client.get(f"{FILES}/{own['file_id']}{path}", headers=admin(stack))
        assert read.status_code == 200
    assert await trail(client, admin(stack), file_id=own["file_id"]) == []


async def test_versions_renditions_and_metadata_are_audited(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    photo = await upload(
        client, teacher(stack), make_jpeg(), owner_type="ClassSession", owner_id="class-7a"
    )
    photo_id = photo["file_id"]
    versions_url = f"/api/v1/media/photos/{photo_id}/versions"
    created = await client.post(
        versions_url,
        headers=teacher(stack),
        json={"version_type": "STYLED", "processing_mode": "black_and_white"},
    )
    assert created.status_code == 201, created.text
    version_id = created.json()["version_id"]
    assert (await client.get(versions_url, headers=teacher(stack))).status_code == 200
    deleted = await client.delete(f"{versions_url}/{version_id}", headers=teacher(stack))
    assert deleted.status_code == 204

    signed = await client.post(
        f"{FILES}/{photo_id}/rendition/signed-url",
        headers=teacher(stack),
        json={"width": 40, "format": "png", "expires_in": 60},
    )
    assert signed.status_code == 200, signed.text
    rendition = await client.get(httpx.URL(signed.json()["url"]).raw_path.decode())
    assert rendition.status_code == 200
    again = await client.get(
        httpx.URL(signed.json()["url"]).raw_path.decode(),
        headers={"If-None-Match": rendition.headers["etag"]},
    )
    assert again.status_code == 304  # no image sent: not a read

    items = await trail(client, admin(stack), file_id=photo_id)
    seen = [(e["actor_id"], e["action"], e["resource_type"], e["resource_id"]) for e in items]
    assert seen == [
        ("signed-url", "read", "rendition", photo_id),
        ("t1", "share", "rendition", photo_id),
        ("t1", "change", "version", version_id),
        ("t1", "read", "version", photo_id),
        ("t1", "change", "version", version_id),
    ]
    assert [e["detail"].get("operation") for e in items[2:]] == ["delete", "list", "create"]
    assert items[0]["detail"]["width"] == 40 and items[0]["detail"]["format"] == "png"
    assert all(e["owner_type"] == "ClassSession" for e in items)


async def test_filters_pagination_access_and_no_secrets_in_rows(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    jpegs = [make_jpeg(color=(40 * n, 9, 9)) for n in range(3)]
    own = [
        (await upload(client, student(stack), data, owner_type="Student", owner_id="s1"))
        for data in jpegs
    ]
    lesson = await upload(
        client,
        teacher(stack),
        make_jpeg(color=(7, 7, 7)),
        owner_type="ClassSession",
        owner_id="class-7a",
    )
    for record in own:
        assert (await client.get(f"{FILES}/{record['file_id']}", headers=student(stack))).is_success
    started = datetime.now(UTC)
    token = stack.token("t1", ORG, Role.TEACHER)
    bearer = {"Authorization": f"Bearer {token}"}
    signed = await client.post(f"{FILES}/{lesson['file_id']}/signed-url", headers=bearer)
    download = await client.get(signed.json()["url"])
    assert download.status_code == 200 and download.content.startswith(b"\xff\xd8")
    everything = await trail(client, admin(stack), limit=500)
    assert len(everything) == 5

    assert {e["file_id"] for e in await trail(client, admin(stack), owner_id="s1")} == {
        r["file_id"] for r in own
    }
    by_type = await trail(client, admin(stack), owner_type="ClassSession")
    assert [e["action"] for e in by_type] == ["read", "share"]
    assert [e["actor_id"] for e in await trail(client, admin(stack), action="share")] == ["t1"]
    assert len(await trail(client, admin(stack), actor_id="s1")) == 3
    assert len(await trail(client, admin(stack), file_id=own[0]["file_id"])) == 1
    assert len(await trail(client, admin(stack), since=started.isoformat())) == 2
    assert len(await trail(client, admin(stack), until=started.isoformat())) == 3

    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get(AUDIT, headers=admin(stack), params=params)
        assert response.status_code == 200, response.text
        pages.append([e["audit_id"] for e in response.json()["items"]])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [i for page in pages for i in page] == [e["audit_id"] for e in everything]

    for headers in (teacher(stack), student(stack), stack.auth("svc", ORG, Role.SERVICE)):
        denied = await client.get(AUDIT, headers=headers)
        assert denied.status_code == 403
        assert denied.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(AUDIT)).status_code == 401
    assert await trail(client, admin(stack, OTHER_ORG)) == []  # another organization's admin
    bad = await client.get(AUDIT, headers=admin(stack), params={"cursor": "aud_x"})
    assert bad.status_code == 422
    naive = await client.get(AUDIT, headers=admin(stack), params={"since": "2026-01-01T00:00"})
    assert naive.status_code == 422
    nul = await client.get(AUDIT, headers=admin(stack), params={"owner_id": "s\x001"})
    assert nul.status_code == 422
    for edge in (  # each overflows once moved to UTC: a 422, not a 500
        {"since": "0001-01-01T00:00:00+01:00"},
        {"until": "9999-12-31T23:59:59-01:00"},
        {"since": "9999-12-31T23:59:59-14:00"},
    ):
        refused = await client.get(AUDIT, headers=admin(stack), params=edge)
        assert refused.status_code == 422, (edge, refused.text)

    query = httpx.URL(signed.json()["url"]).params
    secrets = [token, query["sig"], "sig=", "exp=", "?", "http", "Bearer"]
    for row in await stored_rows(stack):
        stored = orjson.dumps(
            {c.name: getattr(row, c.name) for c in AuditEvent.__table__.columns}, default=str
        )
        assert len(stored) < 1000
        assert not any(secret.encode() in stored for secret in secrets), stored
        assert not any(data[200:232] in stored for data in jpegs)


async def test_failed_and_rolled_back_requests_leave_no_row(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    file_id = (
        await upload(client, student(stack), make_jpeg(), owner_type="Student", owner_id="s1")
    )["file_id"]
    service = stack.auth("svc", ORG, Role.SERVICE)
    # The processed flag is set, then the rename is refused: the whole change rolls back.
    refused = await client.patch(
        f"{FILES}/{file_id}", headers=service, json={"processed": True, "file_name": "x.jpg"}
    )
    assert refused.status_code == 403
    missing = f"{FILES}/file_01jd3k0000000000000000000a"
    assert (await client.delete(missing, headers=admin(stack))).status_code == 404
    assert (await client.get(missing, headers=admin(stack))).status_code == 404
    hidden = await client.get(f"{FILES}/{file_id}/content", headers=student(stack, "s2"))
    assert hidden.status_code == 404  # not visible to another student: not a read either
    assert await stored_rows(stack) == []
    record = await client.get(f"{FILES}/{file_id}", headers=admin(stack))
    assert record.json()["processed"] is False  # the change really was rolled back
    assert [row.action for row in await stored_rows(stack)] == [AuditAction.READ]

    # A change that succeeded in its transaction, which then rolls back: no row either.
    principal = Principal("admin-1", ORG, frozenset({Role.ADMIN}))
    try:
        async with unit_of_work(stack.state.sessions) as session:
            media = MediaService(session, stack.state)
            await media.update(principal, file_id, MediaFilePatch(file_name="later.jpg"))
            await session.flush()
            changes = select(AuditEvent).where(AuditEvent.action == AuditAction.CHANGE)
            assert len((await session.execute(changes)).scalars().all()) == 1
            raise RuntimeError("the request fails after the change")
    except RuntimeError:
        pass
    assert [row.action for row in await stored_rows(stack)] == [AuditAction.READ]
    renamed = await client.patch(
        f"{FILES}/{file_id}", headers=admin(stack), json={"file_name": "kept.jpg"}
    )
    assert renamed.status_code == 200
    actions = sorted(row.action for row in await stored_rows(stack))
    assert actions == [AuditAction.CHANGE, AuditAction.READ]


async def test_forget_person_replaces_their_ids_and_retention_trims_old_rows(
    client: httpx.AsyncClient, stack: Stack, make_jpeg: Callable[..., bytes]
) -> None:
    own = await upload(client, student(stack), make_jpeg(), owner_type="Student", owner_id="s1")
    assert (await client.get(f"{FILES}/{own['file_id']}", headers=student(stack))).is_success
    assert (await client.get(f"{FILES}/{own['file_id']}", headers=admin(stack))).is_success
    other = await upload(client, student(stack, "s2"), make_jpeg(color=(5, 5, 5)))
    assert (
        await client.get(f"{FILES}/{other['file_id']}", headers=student(stack, "s2"))
    ).is_success
    # The same person id in another organization is another person.
    elsewhere = await upload(
        client, stack.auth("s1", OTHER_ORG, Role.STUDENT), make_jpeg(color=(6, 6, 6))
    )
    read = await client.get(
        f"{FILES}/{elsewhere['file_id']}", headers=stack.auth("s1", OTHER_ORG, Role.STUDENT)
    )
    assert read.is_success

    async with unit_of_work(stack.state.sessions) as session:
        changed = await forget_person(session, ORG, "s1", "erased-7f3a")
    assert changed == 2
    rows = await stored_rows(stack)
    mine = [r for r in rows if r.organization_id == ORG and r.owner_id == "erased-7f3a"]
    # Their file's id is theirs too: one stable stand-in for it, in place of the id.
    assert {r.file_id for r in mine} == {id_pseudonym("erased-7f3a", own["file_id"])}
    assert not any(own["file_id"] in (r.file_id, r.resource_id) for r in rows)
    assert {(r.actor_id, r.owner_id) for r in mine} == {
        ("erased-7f3a", "erased-7f3a"),
        ("admin-1", "erased-7f3a"),
    }
    assert not any(r.organization_id == ORG and "s1" in (r.actor_id, r.owner_id) for r in rows)
    untouched = [r for r in rows if r.organization_id == OTHER_ORG]
    assert [(r.actor_id, r.owner_id) for r in untouched] == [("s1", "s1")]
    assert any(r.owner_id == "s2" for r in rows)

    async with unit_of_work(stack.state.sessions) as session:
        oldest = (await session.execute(select(AuditEvent).order_by(AuditEvent.audit_id))).scalar()
        assert oldest is not None
        oldest.occurred_at = datetime.now(UTC) - timedelta(days=400)
    assert await purge_audit_events(stack.state.sessions, timedelta(days=365)) == 1
    remaining = await stored_rows(stack)
    assert len(remaining) == len(rows) - 1 and oldest.audit_id not in {
        r.audit_id for r in remaining
    }
