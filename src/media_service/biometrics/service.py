"""Rules of the biometrics domain: a person's consent to face processing, and the erasure
of their biometric data alone.

Works inside the request's unit of work and never commits. The person's files are looked
up in a short read-only session and their stored face crops deleted before the request's
session writes anything (on SQLite its first statement takes the write lock until the
commit); the rows are then changed in the request's session, and the crops' folders are
swept once more after the commit, for a crop a concurrent request rendered meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Principal
from media_service.biometrics import policy
from media_service.biometrics.consent import DEFAULT_FACE_PROCESSING, PERSON_OWNER_TYPES
from media_service.biometrics.models import BiometricConsent
from media_service.biometrics.repository import ConsentRepository
from media_service.biometrics.schemas import BiometricReport, ConsentOut, ConsentUpdate
from media_service.db.base import utcnow
from media_service.db.uow import after_commit, unit_of_work
from media_service.errors import Conflict, Forbidden, NotFound
from media_service.media.models import FileType, MediaFile, OwnerType
from media_service.media.service import MediaService
from media_service.metadata.service import MetadataService
from media_service.preprocessing.service import PreprocessingService
from media_service.state import ServiceState

log = structlog.get_logger(__name__)


def is_profile_image(file: MediaFile) -> bool:
    """Spec 000: "Students: profile images for AI embeddings" — an Image a person owns as
    a Student (docs/decisions.md)."""
    return file.file_type is FileType.IMAGE and file.owner_type is OwnerType.STUDENT


@dataclass(frozen=True, slots=True)
class _PersonsFiles:
    """A person's files, split by what an erasure does with them."""

    profile_images: list[MediaFile]
    kept: list[MediaFile]


class BiometricsService:
    """Consent and biometric erasure for the API."""

    def __init__(self, session: AsyncSession, state: ServiceState) -> None:
        self.session = session
        self.state = state
        self.repository = ConsentRepository(session)
        self.media = MediaService(session, state)
        self.metadata = MetadataService(session, state)
        self.preprocessing = PreprocessingService(state)

    # -- consent -------------------------------------------------------------------------------

    async def consent(self, principal: Principal, user_id: str) -> ConsentOut:
        """The person's consent as it applies now (the default when they made no choice)."""
        _require(principal, user_id, policy.may_read(principal, user_id))
        row = await self.repository.get(principal.organization_id, user_id)
        return _consent_out(user_id, row)

    async def set_consent(
        self, principal: Principal, user_id: str, update: ConsentUpdate
    ) -> ConsentOut:
        """Record the person's choice; withdrawing it also removes the face data held."""
        _require(principal, user_id, policy.may_change(principal, user_id))
        cleared = None
        if not update.face_processing:
            cleared = await self._forget(principal, user_id, delete_profile_images=False)
        row = await self._record_choice(principal, user_id, update.face_processing)
        log.info(
            "biometric_consent_changed",
            face_processing=update.face_processing,
            by_self=policy.is_self(principal, user_id),
        )
        return _consent_out(user_id, row, cleared)

    # -- erasure -------------------------------------------------------------------------------

    async def erase(self, principal: Principal, user_id: str) -> BiometricReport:
        """Delete the person's profile images and the face data of their other files,
        keeping those files. Idempotent: a second call reports zeros."""
        _require(principal, user_id, policy.may_change(principal, user_id))
        report = await self._forget(principal, user_id, delete_profile_images=True)
        log.info("biometric_data_erased", **report.model_dump(exclude={"user_id"}))
        return report

    async def _forget(
        self, principal: Principal, user_id: str, *, delete_profile_images: bool
    ) -> BiometricReport:
        files = await self._files_of(principal.organization_id, user_id, delete_profile_images)
        images = [file.file_id for file in files.kept if file.file_type is FileType.IMAGE]
        crops = 0
        for file_id in images:  # before any write: see the module's docstring
            crops += await self.preprocessing.delete_face_crops(file_id)
        deleted = 0
        for file in files.profile_images:
            if await self.media.remove(principal, file.file_id):
                deleted += 1  # (not if a concurrent request deleted it first)
        kept_ids = [file.file_id for file in files.kept]
        records = await self.preprocessing.forget_faces(self.session, kept_ids)
        records += await self.metadata.forget_faces(kept_ids)
        after_commit(self.session, lambda: self._sweep_crops(images))
        return BiometricReport(
            user_id=user_id,
            profile_images_deleted=deleted,
            face_records_cleared=records,
            crops_deleted=crops,
            files_kept=len(files.kept),
        )

    async def _files_of(
        self, organization_id: str, user_id: str, split_profile_images: bool
    ) -> _PersonsFiles:
        async with unit_of_work(self.state.read_sessions) as session:
            media = MediaService(session, self.state)
            files = await media.files_of_person(organization_id, user_id, PERSON_OWNER_TYPES)
        if not split_profile_images:
            return _PersonsFiles([], list(files))
        return _PersonsFiles(
            [file for file in files if is_profile_image(file)],
            [file for file in files if not is_profile_image(file)],
        )

    async def _sweep_crops(self, file_ids: list[str]) -> None:
        swept = 0
        for file_id in file_ids:
            swept += await self.preprocessing.delete_face_crops(file_id)
        if swept:
            log.info("face_crops_swept", count=swept)

    async def _record_choice(
        self, principal: Principal, user_id: str, allowed: bool
    ) -> BiometricConsent:
        organization_id = principal.organization_id
        row = await self.repository.get(organization_id, user_id, for_update=True)
        if row is None:
            row = BiometricConsent(
                organization_id=organization_id,
                owner_id=user_id,
                face_processing=allowed,
                updated_at=utcnow(),
                updated_by=principal.subject,
            )
            if await self.repository.add(row):
                return row
            row = await self.repository.get(organization_id, user_id, for_update=True)
            if row is None:  # inserted and erased again meanwhile
                raise Conflict("the consent was changed concurrently; try again")
        row.face_processing = allowed
        row.updated_by = principal.subject
        row.updated_at = utcnow()
        await self.session.flush()
        return row


async def forget_person(
    session: AsyncSession, organization_id: str, user_id: str, pseudonym: str
) -> int:
    """For the erasure of a person: delete their consent row and put ``pseudonym`` where
    they recorded someone else's choice (as an admin). How many rows changed."""
    repository = ConsentRepository(session)
    removed = await repository.delete_person(organization_id, user_id)
    return removed + await repository.replace_updater(organization_id, user_id, pseudonym)


def _require(principal: Principal, user_id: str, allowed: bool) -> None:
    """404 for whoever may not even read the person's consent (ids cannot be probed),
    403 for those who may read it but not do this."""
    if allowed:
        return
    if policy.may_read(principal, user_id):
        raise Forbidden("only the person themself or an admin may do this")
    raise NotFound(f"no person {user_id[:60]!r}")


def _consent_out(
    user_id: str, row: BiometricConsent | None, cleared: BiometricReport | None = None
) -> ConsentOut:
    if row is None:
        return ConsentOut(
            user_id=user_id,
            face_processing=DEFAULT_FACE_PROCESSING,
            explicit=False,
            updated_at=None,
            updated_by=None,
            cleared=cleared,
        )
    return ConsentOut(
        user_id=user_id,
        face_processing=row.face_processing,
        explicit=True,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
        cleared=cleared,
    )
