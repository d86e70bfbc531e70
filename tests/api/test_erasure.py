"""Erasure of a person on both stacks: a person with photos, versions, renditions, face
crops, metadata, playlists, a frame with a schedule and cached photos is erased; then every
row of every table, every stored object and (on NATS) every stream message is read, and
none names them or holds one of their files. Also: resuming after a crash, one unfinished
erasure per person, who may ask, and bad input."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from media_service.auth.principal import Principal, Role
from media_service.db.base import utcnow
from media_service.db.models import metadata
from media_service.db.uow import unit_of_work
from media_service.events.models import OutboxMessage
from media_service.events.nats import EVENTS_STREAM, JOBS_STREAM
from media_service.frames.cache_jobs import Precache
from media_service.ids import new_id
from media_service.preprocessing.sources import read_all
from media_service.privacy.erasure import ErasureOptions, ErasureRun
from media_service.privacy.models import Erasure, ErasureStatus
from media_service.privacy.repository import ErasureRepository
from media_service.privacy.service import STALLED_AFTER, ErasureService
from media_service.versions.models import PhotoVersion

from conftest import Stack
from harness.nats import stored_messages

ORG = "org_era"
PERSON = "person-q7xz"  # distinctive: found only where the person is named
OTHER = "other-k2mw"
FILES = "/api/v1/media/files"
PLAYLISTS = "/api/v1/media/playlists"
FRAMES = "/api/v1/media/frames"
SCHEDULES = "/api/v1/media/schedules"
META = "/api/v1/media/metadata"
ERASURES = "/api/v1/media/erasures"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"preprocess_uploads": True}  # renditions, analysis and faces, as in production


def person(stack: Stack) -> dict[str, str]:
    return stack.auth(PERSON, ORG, Role.TEACHER)


def other(stack: Stack) -> dict[str, str]:
    return stack.auth(OTHER, ORG, Role.ADMIN)


def admin(stack: Stack) -> dict[str, str]:
    return stack.auth("admin-era", ORG, Role.ADMIN)


def service(stack: Stack) -> dict[str, str]:
    return stack.auth("vision", ORG, Role.SERVICE)


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320 + seed, 240), ((seed * 67) % 256, 80, 150)).save(buffer, "JPEG")
    return buffer.getvalue()


def face_photo() -> bytes:
    from skimage import data as samples  # a real photo with a face (NASA, public domain)

    buffer = io.BytesIO()
    Image.fromarray(samples.astronaut()).save(buffer, "PNG")
    return buffer.getvalue()


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    data: bytes,
    owner: tuple[str, str] = ("Teacher", PERSON),
    name: str = "p.jpg",
) -> str:
    response = await client.post(
        FILES,
        headers=headers,
        files={"file": (name, data, "image/png" if name.endswith(".png") else "image/jpeg")},
        data={"owner_type": owner[0], "owner_id": owner[1]},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["file_id"])


async def processed(client: httpx.AsyncClient, stack: Stack, file_id: str) -> None:
    """Renditions made and the photo analysed: no background work left on it."""
    async with asyncio.timeout(90):
        while True:
            renditions = await client.get(f"{FILES}/{file_id}/renditions", headers=admin(stack))
            described = await client.get(f"{META}/{file_id}", headers=admin(stack))
            if (
                renditions.json()["processed"]
                and described.status_code == 200
                and described.json()["analysed_at"]
            ):
                return
            await asyncio.sleep(0.1)


ID_OF = {PLAYLISTS: "playlist_id", FRAMES: "frame_id", SCHEDULES: "schedule_id"}


async def create(client: httpx.AsyncClient, path: str, headers: dict[str, str], **body: Any) -> str:
    """POST a playlist, frame or schedule; its id."""
    response = await client.post(path, headers=headers, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()[ID_OF[path]])


async def erase(client: httpx.AsyncClient, stack: Stack, user_id: str) -> dict[str, Any]:
    """Ask for the erasure as an admin and wait for its report."""
    response = await client.delete(f"/api/v1/media/users/{user_id}/data", headers=admin(stack))
    assert response.status_code == 202, response.text
    return await finished(client, stack, response.json())


async def finished(
    client: httpx.AsyncClient, stack: Stack, accepted: Mapping[str, Any]
) -> dict[str, Any]:
    assert accepted["erasure_id"].startswith("era_")
    assert accepted["status"] in {"queued", "running", "done"}
    assert accepted["status_url"].endswith(f"{ERASURES}/{accepted['erasure_id']}")
    async with asyncio.timeout(120):
        while True:
            report = await client.get(accepted["status_url"], headers=admin(stack))
            assert report.status_code == 200, report.text
            body: dict[str, Any] = report.json()
            if body["status"] == "done":
                return body
            await asyncio.sleep(0.2)


# -- what is left afterwards --------------------------------------------------------------


def as_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def own_file_deleted(row: Mapping[str, Any], erasure_id: str) -> bool:
    """A file.deleted event the erasure published: allowed to name the file it deleted."""
    payload = row.get("payload")
    if isinstance(payload, bytes):
        payload = json.loads(payload)
    return (
        row.get("subject") == "file.deleted"
        and isinstance(payload, dict)
        and payload.get("user_id") == erasure_id
    )


async def rows_naming(stack: Stack, needles: list[str], erasure_id: str) -> list[str]:
    """``table.column`` of every value, in every row of every table, that contains one of
    ``needles`` (the person's id first: never allowed; their file ids: allowed only in the
    erasure's own file.deleted events)."""
    found = []
    async with stack.state.sessions() as session:
        for table in metadata.sorted_tables:
            for row in (await session.execute(select(table))).mappings().all():
                spared = own_file_deleted(row, erasure_id)
                for column, value in row.items():
                    text = as_text(value)
                    for needle in needles:
                        if needle in text and not (spared and needle != PERSON):
                            found.append(f"{table.name}.{column} has {needle}: {text[:200]}")
    return found


async def objects_naming(stack: Stack, needles: list[str]) -> list[str]:
    found = []
    async for info in stack.state.blobs.list(""):
        data = await read_all(stack.state.blobs, info.key)
        for needle in needles:
            if needle in info.key or needle.encode() in data:
                found.append(f"{info.key} has {needle}")
    return found


async def stream_messages_naming(stack: Stack, needles: list[str], erasure_id: str) -> list[str]:
    """Every message of both streams that names one of ``needles``."""
    found = []
    streams = (EVENTS_STREAM.name, JOBS_STREAM.name)
    for stream, seq, message in await stored_messages(stack.settings.events_url, streams):
        data = message.data or b""
        stored = data + json.dumps(message.headers or {}).encode()
        spared = message.subject == "file.deleted" and erasure_id.encode() in data
        found += [
            f"{stream}#{seq} has {needle}"
            for needle in needles
            if needle.encode() in stored and not (spared and needle != PERSON)
        ]
    return found


# -- the check ---------------------------------------------------------------------


async def test_nothing_of_an_erased_person_is_left_anywhere(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    # Their photos, processed: renditions, analysis, faces and a stored face crop.
    face = await upload(client, person(stack), face_photo(), name="face.png")
    beach, third = (
        await upload(client, person(stack), jpeg(1)),
        await upload(client, person(stack), jpeg(2)),
    )
    theirs = [face, beach, third]
    for file_id in theirs:
        await processed(client, stack, file_id)
    faces = (await client.get(f"{FILES}/{face}/faces", headers=person(stack))).json()
    assert faces["count"] >= 1
    crop = await client.get(faces["faces"][0]["crop_url"], headers=person(stack))
    assert crop.status_code == 200
    # A version, metadata from an AI service, a manual and a smart playlist.
    edited = await client.post(
        f"/api/v1/media/photos/{face}/versions",
        headers=person(stack),
        files={"file": ("edit.jpg", jpeg(3), "image/jpeg")},
        data={"version_name": "Retouched"},
    )
    assert edited.status_code == 201, edited.text
    scenes = {"ai_scenes": ["beach"], "source": "vision"}
    described = await client.put(f"{META}/{beach}", headers=service(stack), json=scenes)
    assert described.status_code == 200, described.text
    manual = await create(
        client, PLAYLISTS, person(stack), name="Mine", playlist_type="MANUAL", photo_ids=theirs
    )
    smart = {"scenes": {"any": ["beach"]}}
    await create(
        client, PLAYLISTS, person(stack), name="Beach", playlist_type="SMART", smart_criteria=smart
    )
    # A frame showing the manual playlist, with its photos cached.
    screen = {"name": "Hall", "time_zone": "UTC", "screen_width": 320, "screen_height": 240}
    frame_id = await create(client, FRAMES, person(stack), **screen)
    schedule = {"frame_id": frame_id, "playlist_id": manual, "schedule_type": "CONTINUOUS"}
    await create(client, SCHEDULES, person(stack), **schedule)
    cached = await Precache(stack.state).run(frame_id)
    assert len(cached.cached) == 3, cached
    # Someone else's file the person uploaded (and made a version of), and someone else's
    # playlist holding one of the person's photos.
    kept = await upload(client, person(stack), jpeg(4), owner=("Other", OTHER))
    await processed(client, stack, kept)
    version = await client.post(
        f"/api/v1/media/photos/{kept}/versions",
        headers=person(stack),
        json={"version_type": "STYLED", "processing_mode": "sepia"},
    )
    assert version.status_code == 201, version.text
    others = await create(
        client, PLAYLISTS, other(stack), name="Theirs", playlist_type="MANUAL",
        photo_ids=[face, kept],
    )  # fmt: skip
    signed = await client.post(f"{FILES}/{face}/signed-url", headers=person(stack))
    assert (await client.get(signed.json()["url"])).status_code == 200

    report = await erase(client, stack, PERSON)

    counts = report["counts"]
    assert counts["files"] == 3 and counts["playlists"] == 2 and counts["frames"] == 1
    assert counts["schedules"] == 1 and counts["cache_entries"] == 3
    assert counts["versions"] >= 4 and counts["renditions"] >= 6 and counts["metadata_rows"] == 3
    assert counts["objects"] >= 3 + 6 + 3 + 1  # originals, renditions, cached photos, a crop
    assert counts["playlist_entries"] >= 3 + 1  # their manual playlist, and the other's
    # uploaded_by and a version's user_id on the kept file, at least
    assert counts["pseudonymised_references"] >= 2
    assert counts["event_rows"] >= 1 and counts["stream_messages"] >= 1
    assert PERSON not in json.dumps(report) and report["subject"].startswith("erased_")

    erasure_id = report["erasure_id"]
    needles = [PERSON, *theirs]
    assert await rows_naming(stack, needles, erasure_id) == []
    assert await objects_naming(stack, needles) == []
    if stack.name == "postgres-s3":
        assert await stream_messages_naming(stack, needles, erasure_id) == []

    # What was someone else's stays, no longer naming the person.
    kept_file = await client.get(f"{FILES}/{kept}", headers=other(stack))
    assert kept_file.status_code == 200 and kept_file.json()["uploaded_by"] == report["subject"]
    content = await client.get(f"{FILES}/{kept}/content", headers=other(stack))
    assert content.status_code == 200
    playlist = (await client.get(f"{PLAYLISTS}/{others}", headers=other(stack))).json()
    assert playlist["photo_ids"] == [kept]
    # Links handed out before the erasure lead nowhere.
    assert (await client.get(signed.json()["url"])).status_code == 404
    assert (await client.get(f"{FILES}/{face}", headers=admin(stack))).status_code == 404


async def test_an_erased_students_audit_trail_stays_without_naming_them(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """The AI service read and shared a student's photo (audited); after the student's erasure
    the trail still shows those reads, under pseudonyms for the student and the file."""
    student, reader = "student-v8rw", service(stack)  # the AI service reads profile images
    photo = await upload(client, admin(stack), jpeg(5), owner=("Student", student))
    assert (await client.get(f"{FILES}/{photo}/content", headers=reader)).status_code == 200
    assert (await client.post(f"{FILES}/{photo}/signed-url", headers=reader)).status_code == 200
    before = await client.get(
        "/api/v1/media/audit", headers=admin(stack), params={"owner_id": student}
    )
    assert {row["action"] for row in before.json()["items"]} >= {"read", "share"}

    report = await erase(client, stack, student)

    assert await rows_naming(stack, [student, photo], report["erasure_id"]) == []
    trail = await client.get(
        "/api/v1/media/audit", headers=admin(stack), params={"owner_id": report["subject"]}
    )
    rows = trail.json()["items"]
    assert {row["action"] for row in rows} >= {"read", "share", "delete"}
    assert {row["actor_id"] for row in rows} >= {"vision"}
    assert len({row["file_id"] for row in rows}) == 1  # one file, still told apart


async def test_an_admin_erased_later_is_no_longer_named_by_the_erasures_they_asked_for(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    await upload(client, person(stack), jpeg(7))
    await erase(client, stack, PERSON)  # asked for by admin-era

    second = await erase(client, stack, "admin-era")

    assert await rows_naming(stack, ["admin-era"], second["erasure_id"]) == []
    async with stack.state.sessions() as session:
        asked = (await session.execute(select(Erasure.requested_by))).scalars().all()
    assert sorted(asked) == [second["subject"]] * 2


# -- resuming ------------------------------------------------------------------------------


class Crash(Exception):
    pass


async def queued_erasure(stack: Stack, user_id: str) -> str:
    """An erasure row as a request makes it, without its job (the test runs it)."""
    async with unit_of_work(stack.state.sessions) as session:
        digest = await ErasureService(session, stack.state).pseudonym(ORG, user_id)
        erasure_id = new_id("era")
        erasure = Erasure(
            erasure_id=erasure_id,
            organization_id=ORG,
            user_id=user_id,
            subject_digest=digest,
            requested_by="admin-era",
            status=ErasureStatus.QUEUED,
            counts={},
        )
        assert await ErasureRepository(session).add(erasure)
    return erasure_id


async def person_files(client: httpx.AsyncClient, stack: Stack) -> list[str]:
    response = await client.get(FILES, headers=admin(stack), params={"owner_id": PERSON})
    assert response.status_code == 200, response.text
    return [item["file_id"] for item in response.json()["items"]]


async def test_an_erasure_cut_short_finishes_when_run_again(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    photos = [await upload(client, person(stack), jpeg(seed)) for seed in range(3)]
    for file_id in photos:
        await processed(client, stack, file_id)
    await create(
        client, PLAYLISTS, person(stack), name="Mine", playlist_type="MANUAL", photo_ids=photos
    )
    screen = {"name": "Desk", "time_zone": "UTC", "screen_width": 320, "screen_height": 240}
    await create(client, FRAMES, person(stack), **screen)
    erasure_id = await queued_erasure(stack, PERSON)
    batches = []

    def crash_in_second_batch_of_files(step: str, _counts: Mapping[str, int]) -> None:
        if step == "files":
            batches.append(step)
            if len(batches) == 2:
                raise Crash  # inside the batch's transaction: it rolls back

    options = ErasureOptions(batch_size=1, purge_wait=10)
    crashing = ErasureRun(stack.state, options, progress=crash_in_second_batch_of_files)
    with pytest.raises(Crash):
        await crashing.run(erasure_id)
    async with stack.state.sessions() as session:
        cut_short = await ErasureRepository(session).get(erasure_id)
    assert cut_short is not None and cut_short.status is ErasureStatus.RUNNING
    assert cut_short.counts["files"] == 1 and cut_short.counts["playlists"] == 1
    assert len(await person_files(client, stack)) == 2  # the rolled-back batch kept its file

    # The first steps once more (finding nothing new), then everything.
    again = ErasureRun(stack.state, options)
    await again.run(erasure_id, steps=("playlists", "frames", "files"))
    done = await again.run(erasure_id)
    assert done is not None and done.status is ErasureStatus.DONE and done.finished_at
    counts = done.counts
    assert (counts["files"], counts["playlists"], counts["frames"]) == (3, 1, 1)
    assert counts["renditions"] >= 6 and counts["objects"] >= 9
    assert await person_files(client, stack) == []
    assert done.user_id == done.subject_digest != PERSON
    # Done is done: a redelivered job changes nothing.
    redelivered = await ErasureRun(stack.state, options).run(erasure_id)
    assert redelivered is not None and redelivered.counts == counts
    assert await rows_naming(stack, [PERSON, *photos], erasure_id) == []


async def test_two_runs_of_one_erasure_at_once_count_each_thing_once(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """``erase --wait`` while a worker has the job, or a redelivery: both finish, and the
    report counts what went, not what each run saw."""
    photos = [await upload(client, person(stack), jpeg(seed)) for seed in range(4)]
    for file_id in photos:
        await processed(client, stack, file_id)
        # processed() does not wait for the original version (file.uploaded's consumer):
        # asking for the versions records it now, before the count below.
        versions = await client.get(
            f"/api/v1/media/photos/{file_id}/versions", headers=admin(stack)
        )
        assert versions.status_code == 200 and versions.json()["current_version_id"]
    screen = {"time_zone": "UTC", "screen_width": 320, "screen_height": 240}
    for name in ("Desk", "Hall"):
        await create(client, FRAMES, person(stack), name=name, **screen)
        await create(
            client, PLAYLISTS, person(stack), name=name, playlist_type="MANUAL", photo_ids=photos
        )
    stored = [info.key async for info in stack.state.blobs.list("files/")]
    async with stack.state.sessions() as session:
        versions = await session.scalar(select(func.count()).select_from(PhotoVersion))
    erasure_id = await queued_erasure(stack, PERSON)
    options = ErasureOptions(batch_size=1, purge_wait=0)

    await asyncio.gather(*(ErasureRun(stack.state, options).run(erasure_id) for _ in range(2)))

    async with stack.state.sessions() as session:
        done = await ErasureRepository(session).get(erasure_id)
    assert done is not None and done.status is ErasureStatus.DONE
    assert done.counts["files"] == 4 and done.counts["versions"] == versions
    assert done.counts["frames"] == 2 and done.counts["playlists"] == 2
    assert done.counts["objects"] == len(stored)
    assert await person_files(client, stack) == []


# -- requests ------------------------------------------------------------------------------


async def test_a_second_request_while_one_is_unfinished_returns_it(stack: Stack) -> None:
    operator = Principal("admin-era", ORG, frozenset({Role.ADMIN}))
    ids = []
    for _ in range(2):
        async with unit_of_work(stack.state.sessions) as session:
            ids.append(
                (await ErasureService(session, stack.state).request(operator, PERSON)).erasure_id
            )
    assert ids[0] == ids[1]
    async with stack.state.sessions() as session:
        jobs = (
            (
                await session.execute(
                    select(OutboxMessage.payload).where(
                        OutboxMessage.subject == "jobs.media.erase-person"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert len(jobs) == 1 and jobs[0]["payload"]["erasure_id"] == ids[0]
    assert PERSON not in json.dumps(jobs[0])  # the job names the erasure, never the person

    # Stalled (its job dead-lettered, say): asking again queues it once more.
    async with unit_of_work(stack.state.sessions) as session:
        stalled = await ErasureRepository(session).get(ids[0], for_update=True)
        assert stalled is not None
        stalled.updated_at = utcnow() - STALLED_AFTER - timedelta(seconds=1)
    async with unit_of_work(stack.state.sessions) as session:
        again = await ErasureService(session, stack.state).request(operator, PERSON)
    assert again.erasure_id == ids[0]
    async with unit_of_work(stack.state.sessions) as session:  # and again, at once
        await ErasureService(session, stack.state).request(operator, PERSON)
    async with stack.state.sessions() as session:
        queued = await session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.subject == "jobs.media.erase-person")
        )
        assert len(queued.all()) == 2  # one more job per stalled period, however often asked


async def test_only_an_admin_or_the_person_may_erase(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    def path(user_id: str) -> str:
        return f"/api/v1/media/users/{user_id}/data"

    member = stack.auth("m1", ORG, Role.MEMBER)
    teacher = stack.auth("t1", ORG, Role.TEACHER)
    for headers in (member, teacher):
        refused = await client.delete(path("m9"), headers=headers)
        assert refused.status_code == 404, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert (await client.delete(path("m9"))).status_code == 401

    # (an id with a "-": generated ids and timestamps never hold one by chance)
    mine = stack.auth("member-2", ORG, Role.MEMBER)
    themself = await client.delete(path("member-2"), headers=mine)
    assert themself.status_code == 202, themself.text
    by_admin = await client.delete(path("m3"), headers=admin(stack))
    assert by_admin.status_code == 202, by_admin.text
    own = themself.json()
    report = await finished(client, stack, own)
    assert report["subject"].startswith("erased_") and "member-2" not in json.dumps(report)
    # Others never see a report; the person no longer, once it no longer names them.
    url = own["status_url"]
    stranger = stack.auth("admin-x", "org_other", Role.ADMIN)
    for headers in (member, stranger, mine):
        assert (await client.get(url, headers=headers)).status_code == 404
    # An admin finds it again by the id the person had.
    found = await client.get(ERASURES, headers=admin(stack), params={"user_id": "member-2"})
    assert [item["erasure_id"] for item in found.json()["items"]] == [own["erasure_id"]]
    hidden = await client.get(ERASURES, headers=member, params={"user_id": "member-2"})
    assert hidden.status_code == 404


@pytest.mark.parametrize("bad", ["%00", "x" * 500, "a%0Ab"])
async def test_a_bad_user_id_is_a_problem_not_a_crash(
    client: httpx.AsyncClient, stack: Stack, bad: str
) -> None:
    response = await client.delete(f"/api/v1/media/users/{bad}/data", headers=admin(stack))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    search = await client.get(f"{ERASURES}?user_id={bad}", headers=admin(stack))
    assert search.status_code == 422, search.text


@pytest.mark.parametrize("bad", ["%00", "era_" + "z" * 400, "era_01jd3k00000000000000000000"])
async def test_an_unknown_erasure_is_not_found(
    client: httpx.AsyncClient, stack: Stack, bad: str
) -> None:
    response = await client.get(f"{ERASURES}/{bad}", headers=admin(stack))
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
