"""Playlists over HTTP on both stacks: manual editing, smart playlists kept current by
metadata events, curated ones, paging, the authorisation matrix and bad input.

Photos get their metadata from an AI service's PUT here (quick and exact); the end-to-end
path through upload and analysis is tests/playlists/test_end_to_end.py.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from PIL import Image

from media_service.auth.principal import Role
from media_service.events import Delivery
from media_service.ids import new_id

from conftest import Stack

ORG, ORG_B = "org_pl", "org_pl_b"
FILES = "/api/v1/media/files"
META = "/api/v1/media/metadata"
PL = "/api/v1/media/playlists"
QUIET = 1.0  # how long "no further event arrives" is watched


def teacher(stack: Stack, name: str = "t1") -> dict[str, str]:
    return stack.auth(name, ORG, Role.TEACHER)


def admin(stack: Stack) -> dict[str, str]:
    return stack.auth("adm", ORG, Role.ADMIN)


def service(stack: Stack) -> dict[str, str]:
    return stack.auth("vision", ORG, Role.SERVICE)


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    colour = ((seed * 53) % 256, (seed * 97) % 256, (seed * 31 + 7) % 256)
    Image.new("RGB", (48 + seed % 7, 32), colour).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def pdf() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (60, 80), (250, 200, 0)).save(buffer, "PDF")
    return buffer.getvalue()


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    data: bytes,
    owner: tuple[str, str] = ("ClassSession", "cs-1"),
    name: str = "p.jpg",
    content_type: str = "image/jpeg",
) -> str:
    response = await client.post(
        FILES,
        headers=headers,
        files={"file": (name, data, content_type)},
        data={"owner_type": owner[0], "owner_id": owner[1]},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["file_id"])


async def has_metadata(client: httpx.AsyncClient, stack: Stack, file_id: str) -> None:
    async def found() -> bool:
        response = await client.get(f"{META}/{file_id}", headers=service(stack))
        return response.status_code == 200

    await eventually(found)


async def describe(
    client: httpx.AsyncClient, stack: Stack, file_id: str, **lists: list[str]
) -> None:
    """An AI service reports scenes/labels for a photo (replacing its earlier answer)."""
    # The file.uploaded consumer makes the record; a PUT racing it can collide with it (a
    # metadata-domain race this module does not test), so wait for it.
    await has_metadata(client, stack, file_id)
    response = await client.put(
        f"{META}/{file_id}", headers=service(stack), json={**lists, "source": "vision"}
    )
    assert response.status_code == 200, response.text


async def create(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post(PL, headers=headers, json={"name": "A playlist", **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def playlist(
    client: httpx.AsyncClient, headers: dict[str, str], playlist_id: str
) -> dict[str, Any]:
    response = await client.get(f"{PL}/{playlist_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


@dataclass
class Tap:
    """Every media.playlist.updated seen on the bus since the tap opened (by event id)."""

    seen: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of(self, playlist_id: str) -> list[dict[str, Any]]:
        return sorted(
            (e for e in self.seen.values() if e["playlist_id"] == playlist_id),
            key=lambda e: str(e["event_id"]),
        )

    async def counts(self, playlist_id: str, events: int) -> list[int]:
        """The photo counts of the playlist's events, once ``events`` of them arrived."""

        async def arrived() -> bool:
            return len(self.of(playlist_id)) >= events

        await eventually(arrived)
        return [e["photo_count"] for e in self.of(playlist_id)]


@pytest.fixture
async def tap(stack: Stack, client: httpx.AsyncClient) -> Tap:
    found = Tap()

    async def on_delivery(delivery: Delivery) -> None:
        event = orjson.loads(delivery.payload)
        found.seen[event["event_id"]] = event

    async def no_dead_letters(_letter: object) -> None:
        raise AssertionError("the tap never fails")

    await stack.state.bus.subscribe(
        "test-playlist-tap", ["media.playlist.updated"], on_delivery, on_dead_letter=no_dead_letters
    )
    return found


# -- smart playlists -----------------------------------------------------------------------------


async def test_a_smart_playlist_is_filled_at_once_and_follows_metadata_changes(
    client: httpx.AsyncClient, stack: Stack, tap: Tap
) -> None:
    owner = teacher(stack)
    first, second, unrelated = [await upload(client, owner, jpeg(n)) for n in (1, 2, 3)]
    await describe(client, stack, first, ai_scenes=["beach"], ai_labels=["sea"])
    criteria = {"scenes": {"any": ["beach"]}, "sort": {"field": "file_id", "direction": "asc"}}
    created = await create(client, owner, playlist_type="SMART", smart_criteria=criteria)
    pid = created["playlist_id"]
    assert pid.startswith("pl_") and created["photo_ids"] == [first]
    assert created["photo_count"] == 1 and created["playlist_type"] == "SMART"
    assert created["smart_criteria"]["scenes"]["any"] == ["beach"]

    # The second photo's metadata changes: the playlist gains it and says so.
    await describe(client, stack, second, ai_scenes=["Beach"])
    assert await tap.counts(pid, 2) == [1, 2]
    assert (await playlist(client, owner, pid))["photo_ids"] == sorted([first, second])
    # The first photo no longer matches: it leaves.
    await describe(client, stack, first, ai_scenes=["forest"])
    assert await tap.counts(pid, 3) == [1, 2, 1]
    assert (await playlist(client, owner, pid))["photo_ids"] == [second]
    # A photo that matches nothing changes no playlist and publishes nothing.
    await describe(client, stack, unrelated, ai_scenes=["city"])
    # Each item says why it is there.
    items = (await client.get(f"{PL}/{pid}/photos", headers=owner)).json()["items"]
    assert items == [
        {
            "photo_id": second,
            "position": None,
            "added_at": items[0]["added_at"],
            "reason": {"matched": {"scenes": ["beach"]}, "score": None},
        }
    ]
    # A deleted photo leaves every playlist.
    assert (await client.delete(f"{FILES}/{second}", headers=admin(stack))).status_code == 204
    assert await tap.counts(pid, 4) == [1, 2, 1, 0]  # created, gained, lost, deleted
    assert (await playlist(client, owner, pid))["photo_ids"] == []
    await asyncio.sleep(QUIET)
    assert len(tap.of(pid)) == 4  # and nothing else
    assert all(
        (e["user_id"], e["playlist_type"], e["organization_id"]) == ("t1", "SMART", ORG)
        for e in tap.of(pid)
    )


async def test_a_smart_playlist_shows_only_what_its_owner_may_see(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    class_photo = await upload(client, teacher(stack), jpeg(10))
    private = await upload(client, teacher(stack, "t2"), jpeg(11), owner=("Teacher", "t2"))
    for photo_id in (class_photo, private):
        await describe(client, stack, photo_id, ai_scenes=["beach"])
    smart = {"playlist_type": "SMART", "smart_criteria": {"scenes": {"all": ["beach"]}}}
    shared = await create(client, teacher(stack), shared=True, **smart)
    everything = await create(client, admin(stack), **smart)
    assert shared["photo_ids"] == [class_photo]  # t1 cannot see t2's own photos
    assert set(everything["photo_ids"]) == {class_photo, private}
    # A student reads the shared playlist: its photos as its owner sees them.
    student = stack.auth("s1", ORG, Role.STUDENT)
    assert (await playlist(client, student, shared["playlist_id"]))["photo_ids"] == [class_photo]
    # New criteria are evaluated again at once, through the owner's eyes.
    response = await client.put(
        f"{PL}/{shared['playlist_id']}",
        headers=teacher(stack),
        json={"smart_criteria": {"scenes": {"none": ["beach"]}}},
    )
    assert response.status_code == 200 and response.json()["photo_ids"] == []


# -- manual playlists ------------------------------------------------------------------------------


async def test_a_manual_playlist_is_edited_by_hand(
    client: httpx.AsyncClient, stack: Stack, tap: Tap
) -> None:
    owner = teacher(stack)
    a, b, c = [await upload(client, owner, jpeg(n)) for n in (20, 21, 22)]
    created = await create(client, owner, photo_ids=[a, b], shuffle=True, transition_duration=9)
    pid = created["playlist_id"]
    assert created["photo_ids"] == [a, b] and created["photo_count"] == 2
    assert (created["shuffle"], created["loop"], created["transition_duration"]) == (True, True, 9)

    added = await client.post(f"{PL}/{pid}/photos", headers=owner, json={"photo_ids": [c, a]})
    assert added.status_code == 200 and added.json()["photo_ids"] == [a, b, c]
    again = await client.post(f"{PL}/{pid}/photos", headers=owner, json={"photo_ids": [a]})
    assert again.json()["photo_ids"] == [a, b, c]  # already there: nothing changes
    order = await client.put(f"{PL}/{pid}/photos", headers=owner, json={"photo_ids": [c, a, b]})
    assert order.status_code == 200 and order.json()["photo_ids"] == [c, a, b]
    for bad in ([a, b], [c, a, b, b], [c, a, new_id("file")]):
        refused = await client.put(f"{PL}/{pid}/photos", headers=owner, json={"photo_ids": bad})
        assert refused.status_code == 422, bad
        assert refused.headers["content-type"] == "application/problem+json"
    assert (await client.delete(f"{PL}/{pid}/photos/{a}", headers=owner)).status_code == 204
    assert (await client.delete(f"{PL}/{pid}/photos/{a}", headers=owner)).status_code == 404
    body = await playlist(client, owner, pid)
    assert body["photo_ids"] == [c, b] and body["photo_count"] == 2
    positions = (await client.get(f"{PL}/{pid}/photos", headers=owner)).json()["items"]
    assert [item["photo_id"] for item in positions] == [c, b]
    assert positions[0]["position"] < positions[1]["position"]

    # created (2), added (3), reordered (3), removed (2); the no-op add published nothing
    assert await tap.counts(pid, 4) == [2, 3, 3, 2]
    await asyncio.sleep(QUIET)
    assert len(tap.of(pid)) == 4


async def test_only_photos_the_caller_and_the_owner_can_see_are_added(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    mine = await upload(client, teacher(stack), jpeg(30))
    theirs = await upload(client, teacher(stack, "t2"), jpeg(31), owner=("Teacher", "t2"))
    document = await upload(
        client, teacher(stack), pdf(), name="d.pdf", content_type="application/pdf"
    )
    pid = (await create(client, teacher(stack)))["playlist_id"]
    for photo_id in (theirs, document, new_id("file"), "not-an-id", "x\x00y"):
        response = await client.post(
            f"{PL}/{pid}/photos", headers=teacher(stack), json={"photo_ids": [mine, photo_id]}
        )
        assert response.status_code == 422, photo_id
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["errors"][0]["loc"] == ["body", "photo_ids", 1]
    # An admin sees the teacher's own photo, but the playlist's owner (t1) does not.
    response = await client.post(
        f"{PL}/{pid}/photos", headers=admin(stack), json={"photo_ids": [theirs]}
    )
    assert response.status_code == 422
    assert "owner cannot see" in response.json()["errors"][0]["msg"]
    assert (await playlist(client, teacher(stack), pid))["photo_ids"] == []


# -- curated playlists -----------------------------------------------------------------------------


async def test_a_curated_playlist_picks_its_photos_with_reasons_and_deterministically(
    client: httpx.AsyncClient, stack: Stack, tap: Tap
) -> None:
    photos = [await upload(client, teacher(stack), jpeg(n)) for n in (40, 41, 42)]
    for photo_id in photos:
        await describe(client, stack, photo_id, ai_labels=["party"])
    goal = {"goal": "party pictures", "count": 2, "criteria": {"labels": {"any": ["party"]}}}
    created = await create(client, teacher(stack), playlist_type="AI_CURATED", curation=goal)
    pid = created["playlist_id"]
    assert created["curation"]["count"] == 2 and created["curated_at"]
    assert len(created["photo_ids"]) == 2 and set(created["photo_ids"]) <= set(photos)
    items = (await client.get(f"{PL}/{pid}/photos", headers=teacher(stack))).json()["items"]
    assert [item["reason"]["rank"] for item in items] == [1, 2]
    assert all("score" in item["reason"] and item["reason"]["why"] for item in items)
    refreshed = await client.post(f"{PL}/{pid}/refresh", headers=teacher(stack))
    assert refreshed.status_code == 200
    assert refreshed.json()["photo_ids"] == created["photo_ids"]  # same inputs, same picks
    assert refreshed.json()["curated_at"] >= created["curated_at"]
    assert await tap.counts(pid, 1) == [2]
    await asyncio.sleep(QUIET)
    assert len(tap.of(pid)) == 1  # the refresh changed nothing


# -- listing and paging ----------------------------------------------------------------------------


async def test_lists_and_photos_are_paged(client: httpx.AsyncClient, stack: Stack) -> None:
    photos = [await upload(client, teacher(stack), jpeg(n)) for n in (50, 51, 52)]
    for photo_id in photos:  # a smart playlist holds photos with a metadata record
        await has_metadata(client, stack, photo_id)
    manual = await create(client, teacher(stack), name="Manual", photo_ids=photos)
    smart = await create(
        client,
        teacher(stack),
        name="Smart",
        playlist_type="SMART",
        smart_criteria={"sort": {"field": "file_id", "direction": "desc"}},
    )
    await create(client, teacher(stack, "t2"), name="Not mine")
    seen, cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(PL, headers=teacher(stack), params=params)).json()
        seen += page["items"]
        if (cursor := page["next_cursor"]) is None:
            break
    assert [p["name"] for p in seen] == ["Smart", "Manual"]  # newest first, only t1's
    assert seen[1]["photo_count"] == 3 and "photo_ids" not in seen[1]
    smart_only = await client.get(PL, headers=teacher(stack), params={"playlist_type": "SMART"})
    assert [p["name"] for p in smart_only.json()["items"]] == ["Smart"]
    for body, expected in ((manual, photos), (smart, sorted(photos, reverse=True))):
        found, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            url = f"{PL}/{body['playlist_id']}/photos"
            page = (await client.get(url, headers=teacher(stack), params=params)).json()
            found += [item["photo_id"] for item in page["items"]]
            if (cursor := page["next_cursor"]) is None:
                break
        assert found == expected


# -- authorisation --------------------------------------------------------------------------------

CALLERS: dict[str, tuple[str, str, tuple[Role, ...]] | None] = {
    "owner": ("t1", ORG, (Role.TEACHER,)),
    "admin": ("adm", ORG, (Role.ADMIN,)),
    "service": ("svc", ORG, (Role.SERVICE,)),
    "teacher": ("t2", ORG, (Role.TEACHER,)),
    "student": ("s1", ORG, (Role.STUDENT,)),
    "member": ("m1", ORG, (Role.MEMBER,)),
    "frame": ("frame-1", ORG, (Role.FRAME,)),
    "no_roles": ("nobody", ORG, ()),
    "other_org_admin": ("adm-b", ORG_B, (Role.ADMIN,)),
    "anonymous": None,
}
READERS = {
    "private": {"owner", "admin", "service"},
    "shared": {"owner", "admin", "service", "teacher", "student", "member"},
}
WRITERS = {"owner", "admin"}
CREATORS = {"owner", "admin", "teacher", "student", "member", "other_org_admin"}


def headers(stack: Stack, caller: str) -> dict[str, str]:
    claims = CALLERS[caller]
    return {} if claims is None else stack.auth(claims[0], claims[1], *claims[2])


def expected(caller: str, kind: str, success: int, writes: bool) -> int:
    if CALLERS[caller] is None:
        return 401
    if caller not in READERS[kind]:
        return 404
    if writes and caller not in WRITERS:
        return 403
    return success


async def test_the_authorisation_matrix(client: httpx.AsyncClient, stack: Stack) -> None:
    owner = headers(stack, "owner")
    photo = await upload(client, owner, jpeg(60))
    lists = {
        kind: await create(client, owner, name=kind, shared=kind == "shared", photo_ids=[photo])
        for kind in READERS
    }

    async def restore(pid: str) -> None:  # after a caller removed the photo
        await client.post(f"{PL}/{pid}/photos", headers=owner, json={"photo_ids": [photo]})

    for caller in CALLERS:
        auth = headers(stack, caller)
        for kind, body in lists.items():
            pid = body["playlist_id"]
            calls: list[tuple[str, str, dict[str, Any] | None, int, bool]] = [
                ("GET", f"{PL}/{pid}", None, 200, False),
                ("GET", f"{PL}/{pid}/photos", None, 200, False),
                ("PUT", f"{PL}/{pid}", {"description": f"seen by {caller}"}, 200, True),
                ("POST", f"{PL}/{pid}/photos", {"photo_ids": [photo]}, 200, True),
                ("PUT", f"{PL}/{pid}/photos", {"photo_ids": [photo]}, 200, True),
                ("POST", f"{PL}/{pid}/refresh", None, 409, True),  # manual: nothing to refresh
                ("DELETE", f"{PL}/{pid}/photos/{photo}", None, 204, True),
            ]
            for method, url, json, success, writes in calls:
                response = await client.request(method, url, headers=auth, json=json)
                want = expected(caller, kind, success, writes)
                assert response.status_code == want, (caller, kind, method, url, response.text)
                if response.status_code >= 400:
                    assert response.headers["content-type"] == "application/problem+json"
            await restore(pid)
            doomed = await create(client, owner, shared=kind == "shared")
            response = await client.delete(f"{PL}/{doomed['playlist_id']}", headers=auth)
            assert response.status_code == expected(caller, kind, 204, True), (caller, kind)
        listed = await client.get(PL, headers=auth)
        if CALLERS[caller] is None:
            assert listed.status_code == 401
            continue
        names = {p["name"] for p in listed.json()["items"] if p["name"] in READERS}
        assert names == {kind for kind in READERS if caller in READERS[kind]}, caller
        created = await client.post(PL, headers=auth, json={"name": "own"})
        assert created.status_code == (201 if caller in CREATORS else 403), caller
        unknown = await client.get(f"{PL}/{new_id('pl')}", headers=auth)
        assert unknown.status_code == 404


# -- bad input ------------------------------------------------------------------------------------


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


async def test_bad_input_gets_a_4xx_problem(client: httpx.AsyncClient, stack: Stack) -> None:
    owner = teacher(stack)
    manual = (await create(client, owner))["playlist_id"]
    smart = (await create(client, owner, playlist_type="SMART", smart_criteria={}))["playlist_id"]
    long = "x" * 256
    # Cursors whose file id has a NUL (which PostgreSQL refuses in text): never sent to SQL.
    nul_cursor = _b64(["photo_taken_at", "desc", None, "file_\u0000"])
    nul_position = _b64([1, "file_\u0000"])
    cases: list[tuple[str, str, Any, int]] = [
        ("POST", PL, {}, 422),  # no name
        ("POST", PL, {"name": "  "}, 422),
        ("POST", PL, {"name": long}, 422),
        ("POST", PL, {"name": "a\x00b"}, 422),
        ("POST", PL, {"name": "a", "bogus": 1}, 422),
        ("POST", PL, {"name": "a", "playlist_type": "RANDOM"}, 422),
        ("POST", PL, {"name": "a", "playlist_type": "SMART"}, 422),  # no criteria
        ("POST", PL, {"name": "a", "smart_criteria": {}}, 422),  # criteria on a manual one
        ("POST", PL, {"name": "a", "playlist_type": "SMART", "smart_criteria": {"x": 1}}, 422),
        (
            "POST",
            PL,
            {"name": "a", "playlist_type": "SMART", "smart_criteria": {"quality": {"min": 2}}},
            422,
        ),
        ("POST", PL, {"name": "a", "curation": {"count": 3}}, 422),  # curation on a manual one
        ("POST", PL, {"name": "a", "playlist_type": "AI_CURATED", "curation": {"count": 0}}, 422),
        (
            "POST",
            PL,
            {
                "name": "a",
                "playlist_type": "AI_CURATED",
                "curation": {"last_days": 5, "since": "2024-01-01T00:00:00Z"},
            },
            422,
        ),
        ("POST", PL, {"name": "a", "transition_duration": 0}, 422),
        ("POST", PL, {"name": "a", "photo_ids": "file_x"}, 422),
        ("POST", PL, [1, 2], 422),
        ("GET", f"{PL}?limit=0", None, 422),
        ("GET", f"{PL}?limit=-1", None, 422),
        ("GET", f"{PL}?limit=1000000000", None, 422),
        ("GET", f"{PL}?cursor={'x' * 60_000}", None, 422),
        ("GET", f"{PL}?cursor=nonsense", None, 422),
        ("GET", f"{PL}?playlist_type=RANDOM", None, 422),
        ("GET", f"{PL}/not-an-id", None, 404),
        ("GET", f"{PL}/{new_id('pl')}", None, 404),
        ("GET", f"{PL}/{manual}/photos?cursor=nonsense", None, 422),
        ("GET", f"{PL}/{smart}/photos?cursor=p.WzEsImZpbGVfeCJd", None, 422),
        ("GET", f"{PL}/{manual}/photos?cursor=s.abc", None, 422),
        ("GET", f"{PL}/{smart}/photos?cursor=s.{nul_cursor}", None, 422),
        ("GET", f"{PL}/{manual}/photos?cursor=p.{nul_position}", None, 422),
        ("GET", f"{PL}/{manual}/photos?limit=501", None, 422),
        ("PUT", f"{PL}/{manual}", {"playlist_type": "SMART"}, 422),
        ("PUT", f"{PL}/{manual}", {"smart_criteria": {}}, 422),
        ("PUT", f"{PL}/{manual}", {"name": None}, 422),
        ("PUT", f"{PL}/{manual}", {"photo_ids": []}, 422),
        ("PUT", f"{PL}/{smart}", {"curation": {"count": 2}}, 422),
        ("POST", f"{PL}/{manual}/photos", {"photo_ids": []}, 422),
        ("POST", f"{PL}/{smart}/photos", {"photo_ids": [new_id("file")]}, 409),
        ("PUT", f"{PL}/{smart}/photos", {"photo_ids": []}, 409),
        ("DELETE", f"{PL}/{smart}/photos/{new_id('file')}", None, 409),
        ("DELETE", f"{PL}/{manual}/photos/not-an-id", None, 404),
        ("POST", f"{PL}/{manual}/refresh", None, 409),
    ]
    for method, url, body, status in cases:
        response = await client.request(method, url, headers=owner, json=body)
        assert response.status_code == status, (method, url, body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == status
    lone_surrogates = [
        b'{"name": "\\ud800"}',
        b'{"name": "a", "description": "x\\udfff"}',
        b'{"name": "a", "playlist_type": "SMART", "smart_criteria": {"location": "\\ud800"}}',
    ]
    for content in (b"{not json", b"\xff\xfe", b"", *lone_surrogates):
        garbled = await client.post(
            PL, headers={**owner, "content-type": "application/json"}, content=content
        )
        assert garbled.status_code == 422, (content, garbled.text)
        assert garbled.headers["content-type"] == "application/problem+json"
