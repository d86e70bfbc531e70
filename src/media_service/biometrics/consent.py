"""Whether a file's faces may be processed: the check every face-processing path makes.

Kept apart from :mod:`media_service.biometrics.service` so that the domains that detect
faces (preprocessing, metadata) can ask without importing what erasure needs from them.

Consent belongs to a person, so it governs the files a person owns (owner types Student,
Teacher and User, whose ``owner_id`` is a user id). Class-session and other files have no
single person to ask and are not governed by it. Without a recorded choice, face
processing is allowed (the behaviour before consent existed).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from media_service.biometrics.repository import ConsentRepository
from media_service.errors import Forbidden
from media_service.media.models import MediaFile, OwnerType

PERSON_OWNER_TYPES = frozenset({OwnerType.STUDENT, OwnerType.TEACHER, OwnerType.USER})
DEFAULT_FACE_PROCESSING = True


class FaceProcessingNotAllowed(Forbidden):
    """403, not 409: the refusal does not depend on the moment (retrying will not help,
    unlike this route's 409 "not processed yet"), only the person can lift it, and the
    file is visible to the caller, so 404 would be untrue."""

    code = "biometric_consent_withdrawn"
    title = "The owner of this file does not allow face processing"


def governed(file: MediaFile) -> bool:
    """Whether ``file`` belongs to a person, whose consent then applies."""
    return file.owner_type in PERSON_OWNER_TYPES


async def face_processing_allowed(session: AsyncSession, file: MediaFile) -> bool:
    """Whether faces of ``file`` may be detected, kept and served (at most one
    primary-key lookup)."""
    if not governed(file):
        return True
    row = await ConsentRepository(session).get(file.organization_id, file.owner_id)
    return DEFAULT_FACE_PROCESSING if row is None else row.face_processing


async def require_face_processing(session: AsyncSession, file: MediaFile) -> None:
    """Raise :class:`FaceProcessingNotAllowed` unless ``file``'s faces may be processed."""
    if not await face_processing_allowed(session, file):
        raise FaceProcessingNotAllowed(
            f"the owner of {file.file_id} has withdrawn consent to face processing; "
            "its faces are neither detected nor served"
        )
