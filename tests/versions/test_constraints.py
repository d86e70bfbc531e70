"""What the database itself guarantees about versions, on SQLite and PostgreSQL: at most
one current version per photo, one original (version 1), none without its photo."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from media_service.db.uow import unit_of_work
from media_service.ids import new_id
from media_service.media.models import FileType, MediaFile, OwnerType
from media_service.versions.models import PhotoVersion, VersionType

from conftest import Stack


def a_photo() -> MediaFile:
    file_id = new_id("file")
    return MediaFile(
        file_id=file_id,
        organization_id="org",
        owner_id="u",
        owner_type=OwnerType.USER,
        uploaded_by="u",
        file_name="p.jpg",
        file_type=FileType.IMAGE,
        content_type="image/jpeg",
        file_size=1,
        sha256="0" * 64,
        storage_path=f"files/xx/{file_id}/original",
    )


def a_version(photo: MediaFile, number: int, current: bool, kind: VersionType) -> PhotoVersion:
    return PhotoVersion(
        version_id=new_id("ver"),
        photo_id=photo.file_id,
        user_id="u",
        organization_id="org",
        version_name=f"v{number}",
        version_type=kind,
        file_id=photo.file_id,
        storage_path=photo.storage_path,
        file_size=1,
        content_type="image/jpeg",
        sha256="0" * 64,
        is_current=current,
        version_number=number,
    )


async def test_the_schema_refuses_what_the_rules_forbid(stack: Stack) -> None:
    photo = a_photo()
    async with unit_of_work(stack.state.sessions) as session:
        session.add(photo)
        await session.flush()
        session.add(a_version(photo, 1, True, VersionType.ORIGINAL))
        session.add(a_version(photo, 2, False, VersionType.STYLED))
    forbidden = [
        a_version(photo, 3, True, VersionType.STYLED),  # a second current version
        a_version(photo, 2, False, VersionType.EDITED),  # a number given twice
        a_version(photo, 4, False, VersionType.ORIGINAL),  # an original that is not first
        a_version(a_photo(), 1, True, VersionType.ORIGINAL),  # a photo that does not exist
    ]
    for row in forbidden:
        with pytest.raises(IntegrityError):
            async with unit_of_work(stack.state.sessions) as session:
                session.add(row)
    async with unit_of_work(stack.state.sessions) as session:
        # Switching is fine in one transaction: clear first, then set.
        rows = (await session.scalars(select(PhotoVersion).order_by("version_number"))).all()
        rows[0].is_current = False
        await session.flush()
        rows[1].is_current = True
    async with unit_of_work(stack.state.sessions) as session:
        await session.delete(await session.get(MediaFile, photo.file_id))
    async with unit_of_work(stack.state.sessions) as session:
        assert await session.scalar(select(func.count()).select_from(PhotoVersion)) == 0
