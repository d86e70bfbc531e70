"""Biometric data on both stacks: the per-person consent to face processing, and the
erasure of a person's biometric data alone (profile images, face crops, face metadata)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from media_service.auth.principal import Role
from media_service.biometrics.models import BiometricConsent
from media_service.biometrics.service import forget_person
from media_service.db.uow import unit_of_work

from conftest import Stack

ORG = "org_bio"
FILES = "/api/v1/media/files"
META = "/api/v1/media/metadata"
USERS = "/api/v1/media/users"
PROBLEM = "application/problem+json"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"preprocess_uploads": True}  # renditions, then analysis (EXIF, faces, labels)


def admin(stack: Stack) -> dict[str, str]:
    return stack.auth("admin-1", ORG, Role.ADMIN)


def student(stack: Stack, name: str) -> dict[str, str]:
    return stack.auth(name, ORG, Role.STUDENT)


def face_photo(fmt: str = "PNG", tint: int = 0) -> bytes:
    """A real photo with a face (NASA's astronaut, public domain); ``tint`` makes copies
    with other bytes."""
    from skimage import data as samples

    image = Image.fromarray(samples.astronaut())
    if tint:
        image.putpixel((0, 0), (tint, tint, tint))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def pdf_document() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 400), (250, 200, 0)).save(buffer, "PDF")
    return buffer.getvalue()


async def upload(
    client: httpx.AsyncClient,
    stack: Stack,
    data: bytes,
    owner: str,
    *,
    owner_type: str = "Student",
    name: str = "face.png",
    content_type: str = "image/png",
) -> str:
    response = await client.post(
        FILES,
        headers=admin(stack),
        files={"file": (name, data, content_type)},
        data={"owner_type": owner_type, "owner_id": owner},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["file_id"])


async def processed(client: httpx.AsyncClient, stack: Stack, file_id: str) -> None:
    async with asyncio.timeout(90):
        while not (await client.get(f"{FILES}/{file_id}", headers=admin(stack))).json()[
            "processed"
        ]:
            await asyncio.sleep(0.1)


async def metadata(client: httpx.AsyncClient, stack: Stack, file_id: str) -> dict[str, Any]:
    response = await client.get(f"{META}/{file_id}", headers=admin(stack))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def set_consent(
    client: httpx.AsyncClient, headers: dict[str, str], user_id: str, allowed: bool
) -> dict[str, Any]:
    response = await client.put(
        f"{USERS}/{user_id}/consent", headers=headers, json={"face_processing": allowed}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def crops(stack: Stack, file_id: str) -> list[str]:
    folder = f"files/{file_id[-2:]}/{file_id}/faces/"
    return [info.key async for info in stack.state.blobs.list(folder)]


async def a_crop(client: httpx.AsyncClient, stack: Stack, file_id: str) -> None:
    """Detect (or read) the faces of ``file_id`` and have the first one's crop stored."""
    faces = await client.get(f"{FILES}/{file_id}/faces", headers=admin(stack))
    assert faces.status_code == 200, faces.text
    assert faces.json()["count"] >= 1
    crop = await client.get(f"{FILES}/{file_id}/faces/0", headers=admin(stack))
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    assert await crops(stack, file_id)


def assert_no_face_data(body: dict[str, Any]) -> None:
    assert body["face_count"] is None and body["face_detection"] is None
    assert "person" not in body["ai_labels"]
    assert "person" not in body["label_sources"].get("labels", {})


def assert_refused_for_consent(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "biometric_consent_withdrawn"


async def test_without_consent_no_faces_are_detected_or_served_until_it_is_given_again(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    default = (await client.get(f"{USERS}/student-1/consent", headers=admin(stack))).json()
    assert default["face_processing"] is True and default["explicit"] is False
    withdrawn = await set_consent(client, student(stack, "student-1"), "student-1", False)
    assert withdrawn["face_processing"] is False and withdrawn["explicit"] is True
    assert withdrawn["updated_by"] == "student-1"
    assert withdrawn["cleared"]["face_records_cleared"] == 0

    file_id = await upload(client, stack, face_photo(), "student-1")
    await processed(client, stack, file_id)
    body = await metadata(client, stack, file_id)
    assert body["analysed_at"] is not None and body["quality_score"] is not None
    assert_no_face_data(body)  # detection was not run: no count at all, not zero
    assert_refused_for_consent(await client.get(f"{FILES}/{file_id}/faces", headers=admin(stack)))
    assert_refused_for_consent(await client.get(f"{FILES}/{file_id}/faces/0", headers=admin(stack)))
    assert await crops(stack, file_id) == []

    given = await set_consent(client, admin(stack), "student-1", True)
    assert given["face_processing"] is True and given["updated_by"] == "admin-1"
    await a_crop(client, stack, file_id)


async def test_withdrawing_consent_clears_faces_already_detected_and_their_crops(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    file_id = await upload(client, stack, face_photo(), "student-2")
    await processed(client, stack, file_id)
    before = await metadata(client, stack, file_id)
    assert before["face_count"] >= 1 and before["label_sources"]["labels"]["person"] == "faces"
    await a_crop(client, stack, file_id)

    withdrawn = await set_consent(client, student(stack, "student-2"), "student-2", False)
    cleared = withdrawn["cleared"]
    assert cleared["face_records_cleared"] == 2  # media_analysis and photo_metadata
    assert cleared["crops_deleted"] == 1 and cleared["profile_images_deleted"] == 0
    assert await crops(stack, file_id) == []
    after = await metadata(client, stack, file_id)
    assert_no_face_data(after)
    assert after["quality_score"] == before["quality_score"]  # the rest stays
    assert_refused_for_consent(await client.get(f"{FILES}/{file_id}/faces", headers=admin(stack)))
    again = await set_consent(client, admin(stack), "student-2", False)
    assert again["cleared"]["face_records_cleared"] == 0
    assert (await client.get(f"{FILES}/{file_id}", headers=admin(stack))).status_code == 200


async def test_biometric_erasure_removes_profile_images_and_face_data_but_keeps_other_media(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    deleted_events = await stack.tap("test-biometrics-tap", "file.deleted")
    profile = await upload(client, stack, face_photo(), "student-3")
    document = await upload(
        client,
        stack,
        pdf_document(),
        "student-3",
        name="report.pdf",
        content_type="application/pdf",
    )
    # The same person's photo kept under another owner type, and someone else's profile image.
    personal = await upload(
        client, stack, face_photo("JPEG"), "student-3", owner_type="User", name="me.jpg"
    )
    other = await upload(client, stack, face_photo(tint=9), "student-4")
    for file_id in (profile, document, personal, other):
        await processed(client, stack, file_id)
    for file_id in (profile, personal, other):
        await a_crop(client, stack, file_id)

    response = await client.delete(
        f"{USERS}/student-3/biometrics", headers=student(stack, "student-3")
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "user_id": "student-3",
        "profile_images_deleted": 1,
        "face_records_cleared": 2,  # the kept photo's analysis and metadata
        "crops_deleted": 1,  # the kept photo's (the profile image's go with its folder)
        "files_kept": 2,
    }
    assert (await client.get(f"{FILES}/{profile}", headers=admin(stack))).status_code == 404
    trail = await client.get(
        "/api/v1/media/audit", headers=admin(stack), params={"file_id": profile}
    )
    deletes = [row for row in trail.json()["items"] if row["action"] == "delete"]
    assert [row["actor_id"] for row in deletes] == ["student-3"]  # a student's media: audited
    for kept in (document, personal, other):
        assert (await client.get(f"{FILES}/{kept}", headers=admin(stack))).status_code == 200
    assert_no_face_data(await metadata(client, stack, personal))
    assert await crops(stack, personal) == []
    assert (await metadata(client, stack, other))["face_count"] >= 1  # not theirs: untouched
    assert await crops(stack, other)
    async with asyncio.timeout(30):
        while not [event for event in deleted_events if event["file_id"] == profile]:
            await asyncio.sleep(0.05)
        folder = f"files/{profile[-2:]}/{profile}/"
        while [info async for info in stack.state.blobs.list(folder)]:
            await asyncio.sleep(0.1)

    again = await client.delete(f"{USERS}/student-3/biometrics", headers=admin(stack))
    assert again.status_code == 200
    assert again.json() == {
        "user_id": "student-3",
        "profile_images_deleted": 0,
        "face_records_cleared": 0,
        "crops_deleted": 0,
        "files_kept": 2,
    }


async def test_who_may_read_change_and_erase_a_persons_biometric_data(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    consent, erase = f"{USERS}/student-5/consent", f"{USERS}/student-5/biometrics"
    body = {"face_processing": False}
    for outsider in (
        student(stack, "student-6"),
        stack.auth("member-1", ORG, Role.MEMBER),
        stack.auth("student-5", ORG, Role.FRAME),  # a frame device is not the person
    ):
        assert (await client.get(consent, headers=outsider)).status_code == 404
        assert (await client.put(consent, headers=outsider, json=body)).status_code == 404
        refused = await client.delete(erase, headers=outsider)
        assert refused.status_code == 404 and refused.headers["content-type"] == PROBLEM
    teacher = stack.auth("teacher-1", ORG, Role.TEACHER)
    assert (await client.get(consent, headers=teacher)).status_code == 200
    assert (await client.put(consent, headers=teacher, json=body)).status_code == 403
    assert (await client.delete(erase, headers=teacher)).status_code == 403
    service = stack.auth("vision", ORG, Role.SERVICE)
    assert (await client.get(consent, headers=service)).status_code == 200
    assert (await client.put(consent, headers=service, json=body)).status_code == 403

    myself = student(stack, "student-5")
    assert (await set_consent(client, myself, "student-5", False))["face_processing"] is False
    assert (await client.delete(erase, headers=myself)).status_code == 200
    assert (await client.delete(erase, headers=admin(stack))).status_code == 200
    # Another organization's admin sees their own organization's student-5 (no choice made).
    elsewhere = stack.auth("admin-9", "org_other", Role.ADMIN)
    assert (await client.get(consent, headers=elsewhere)).json()["explicit"] is False
    assert (await client.get(consent, headers=myself)).json()["face_processing"] is False
    assert (await client.get(consent)).status_code == 401


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (f"{USERS}/bad%00id/consent", {"face_processing": False}),
        (f"{USERS}/{'x' * 129}/consent", {"face_processing": False}),
        (f"{USERS}/student-7/consent", {"face_processing": "no"}),
        (f"{USERS}/student-7/consent", {}),
        (f"{USERS}/student-7/consent", {"face_processing": False, "extra": 1}),
    ],
)
async def test_bad_ids_and_bodies_are_json_problems(
    client: httpx.AsyncClient, stack: Stack, path: str, body: dict[str, Any]
) -> None:
    response = await client.put(path, headers=admin(stack), json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "validation_error"
    erase = await client.delete(f"{USERS}/bad%01id/biometrics", headers=admin(stack))
    assert erase.status_code == 422 and erase.headers["content-type"] == PROBLEM


async def test_forgetting_a_person_removes_their_consent_and_their_id_as_its_author(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    await set_consent(client, stack.auth("admin-2", ORG, Role.ADMIN), "student-8", False)
    await set_consent(client, stack.auth("admin-2", ORG, Role.ADMIN), "admin-2", False)
    async with unit_of_work(stack.state.sessions) as session:
        assert await forget_person(session, ORG, "admin-2", "erased_0123") == 2
    async with unit_of_work(stack.state.sessions) as session:
        rows = (await session.execute(select(BiometricConsent))).scalars().all()
        assert [(row.owner_id, row.updated_by) for row in rows] == [("student-8", "erased_0123")]
        assert await forget_person(session, ORG, "admin-2", "erased_0123") == 0
