"""Rules of the media files domain once a file is stored: read, list, change, delete,
share. (Storing a file is :mod:`media_service.media.uploads`.)

The service works inside the caller's unit of work and never commits. A delete removes the
row and records ``file.deleted``; the stored bytes go when a consumer handles that event.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import ColumnElement
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.audit.models import AuditAction, AuditResource
from media_service.audit.service import Actor, AuditTrail, DetailValue
from media_service.auth.principal import Principal
from media_service.db.base import utcnow
from media_service.errors import (
    AlreadyStored,
    Forbidden,
    NotFound,
    Unprocessable,
)
from media_service.events import FileDeleted, record_event
from media_service.ids import is_valid_id
from media_service.media import policy
from media_service.media.filenames import sanitize_file_name
from media_service.media.models import MediaFile, OwnerType
from media_service.media.remembered import forget_file_after_commit
from media_service.media.repository import MediaFileRepository, visible_clause
from media_service.media.schemas import ListFilters, MediaFilePatch
from media_service.media.signing import UrlSigner
from media_service.storage import ByteRange

if TYPE_CHECKING:
    from media_service.state import ServiceState

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SignedUrl:
    path_and_query: str
    expires_at: datetime


class MediaService:
    """Media files as the API and the CLI see them."""

    def __init__(self, session: AsyncSession, state: ServiceState) -> None:
        self.session = session
        self.repository = MediaFileRepository(session)
        self.blobs = state.blobs
        self.settings = state.settings
        self.signer = state.signer
        self.recent_files = state.recent_files
        self.audit = AuditTrail(session)

    # -- read --------------------------------------------------------------------------------

    async def get(self, principal: Principal, file_id: str) -> MediaFile:
        """The file if ``principal`` may see it; :class:`NotFound` otherwise."""
        _require_file_id(file_id)
        file = await self.repository.get_visible(file_id, policy.read_visibility(principal))
        if file is None:
            raise NotFound(f"no file {file_id}")
        return file

    async def get_signed(
        self, file_id: str, method: str, path: str, query: dict[str, str]
    ) -> MediaFile:
        """The file a signed URL points to; the signature is the authorisation."""
        self.signer.verify(method, path, query.get("exp"), query.get("kid"), query.get("sig"))
        _require_file_id(file_id)
        file = await self.repository.get(file_id)
        if file is None:
            raise NotFound(f"no file {file_id}")
        return file

    async def list(
        self, principal: Principal, filters: ListFilters
    ) -> tuple[list[MediaFile], str | None]:
        """A page of visible files, newest first, and the cursor of the next page."""
        if filters.cursor and not is_valid_id(filters.cursor, "file"):
            raise Unprocessable(
                "invalid cursor", errors=[{"loc": ["query", "cursor"], "msg": "not a cursor"}]
            )
        rows = list(await self.repository.list(policy.read_visibility(principal), filters))
        has_more = len(rows) > filters.limit
        rows = rows[: filters.limit]
        return rows, rows[-1].file_id if has_more and rows else None

    def read_visibility(self, principal: Principal) -> policy.Visibility:
        """The files ``principal`` may read, as a value (hashable: queries of other domains
        can build their statement once per visibility, see ``visible_clause``)."""
        return policy.read_visibility(principal)

    def readable_clause(self, principal: Principal) -> ColumnElement[bool]:
        """SQL over ``media_files`` for the files ``principal`` may read (for other domains'
        queries that join to files)."""
        return visible_clause(policy.read_visibility(principal))

    def private_clause(self, principal: Principal) -> ColumnElement[bool]:
        """SQL over ``media_files`` for the files whose private details (location, faces)
        ``principal`` may see: their own, or everything for admins."""
        return visible_clause(policy.private_visibility(principal))

    def may_report_results(self, principal: Principal) -> bool:
        """Whether ``principal`` may report processing results (services and admins)."""
        return policy.can_mark_processed(principal)

    def reads_only_own(self, principal: Principal) -> bool:
        """Whether ``principal`` reads only files it owns (students, members)."""
        return policy.reads_only_own(principal)

    def private_implied(self, principal: Principal) -> bool:
        """Whether every file ``principal`` may read is one whose private details it may
        see too (admins; students and members, who read only their own)."""
        return policy.private_implied(principal)

    def may_see_private(self, principal: Principal, file: MediaFile) -> bool:
        """Whether ``principal`` may see ``file``'s location and faces."""
        return policy.private_visibility(principal).allows(file)

    async def find(self, file_id: str, *, hold: bool = False) -> MediaFile | None:
        """The file whoever asks (for background work; callers check access themselves).
        ``hold`` keeps it from being deleted until the transaction ends: for consumers that
        then insert rows referring to it (a delete in between broke their foreign key)."""
        if not is_valid_id(file_id, "file"):
            return None
        return await self.repository.get(file_id, hold=hold)

    def content(self, file: MediaFile, byte_range: ByteRange | None) -> AsyncIterator[bytes]:
        """The file's bytes (or one range of them), streamed from storage."""
        return self.blobs.get(file.storage_path, byte_range)

    # -- change --------------------------------------------------------------------------------

    async def update(self, principal: Principal, file_id: str, patch: MediaFilePatch) -> MediaFile:
        """Apply ``patch``: processed flag (services, admins), owner and name (writers)."""
        file = await self.get(principal, file_id)
        previous_owner = (file.owner_type, file.owner_id)
        if patch.processed is not None:
            if not policy.can_mark_processed(principal):
                raise Forbidden("only services may report processing")
            file.processed = patch.processed
            file.processed_at = utcnow() if patch.processed else None
        if patch.owner_type or patch.owner_id or patch.file_name:
            self._ensure_writable(principal, file)
            self._apply_owner_and_name(principal, file, patch)
        moved = previous_owner != (file.owner_type, file.owner_id)
        if moved:
            await self._ensure_new_owner_lacks_these_bytes(principal, file)
        try:
            await self.session.flush()
        except IntegrityError:
            if not moved:
                raise
            # The one unique key a move can break: the same bytes given to that owner
            # since the check above. (The failed flush leaves ``file`` unreadable.)
            raise AlreadyStored("the new owner has a file with these bytes") from None
        self._audit_change(principal, file, patch, previous_owner)
        forget_file_after_commit(self.session, self.recent_files, file.file_id)
        return file

    async def mark_processed(self, file_id: str) -> MediaFile | None:
        """Record that background processing finished; ``None`` if the file is gone."""
        file = await self.repository.get(file_id)
        if file is None:
            return None
        file.processed = True
        file.processed_at = utcnow()
        await self.session.flush()
        return file

    async def set_dimensions(self, file_id: str, width: int, height: int) -> None:
        """Fill in the size that upload could not read from the header (videos, PDFs)."""
        file = await self.repository.get(file_id)
        if file is not None and file.width is None and width and height:
            file.width, file.height = width, height
            await self.session.flush()

    async def _ensure_new_owner_lacks_these_bytes(
        self, principal: Principal, file: MediaFile
    ) -> None:
        """One file per owner and content: moving a file to an owner who holds the same
        bytes is a conflict (naming that file only to who may see it)."""
        with self.session.no_autoflush:  # the move is not written yet
            twin = await self.repository.find_duplicate(
                file.organization_id, file.owner_type, file.owner_id, file.sha256
            )
        if twin is None or twin.file_id == file.file_id:
            return
        if policy.read_visibility(principal).allows(twin):
            raise AlreadyStored(
                f"the new owner has these bytes as {twin.file_id}", file_id=twin.file_id
            )
        raise AlreadyStored("the new owner has a file with these bytes")

    def _apply_owner_and_name(
        self, principal: Principal, file: MediaFile, patch: MediaFilePatch
    ) -> None:
        owner_type = patch.owner_type or file.owner_type
        owner_id = patch.owner_id or file.owner_id
        if (owner_type, owner_id) != (file.owner_type, file.owner_id):
            if not policy.can_upload_for(principal, owner_type, owner_id):
                raise Forbidden(f"you may not assign files to this {owner_type.value}")
            file.owner_type, file.owner_id = owner_type, owner_id
        if patch.file_name:
            file.file_name = sanitize_file_name(
                patch.file_name, max_length=self.settings.max_file_name_length
            )

    def _audit_change(
        self,
        principal: Principal,
        file: MediaFile,
        patch: MediaFilePatch,
        previous_owner: tuple[OwnerType, str],
    ) -> None:
        """Audit the change in its own transaction; a file moved between owners is a
        change to the media of both."""
        fields = ",".join(sorted(patch.model_dump(exclude_none=True)))
        if not fields:
            return
        actor, detail = Actor.of(principal), {"fields": fields}
        self.audit.record(actor, AuditAction.CHANGE, file, AuditResource.FILE, detail=detail)
        if previous_owner != (file.owner_type, file.owner_id):
            self.audit.record(
                actor,
                AuditAction.CHANGE,
                file,
                AuditResource.FILE,
                detail=detail,
                owner=previous_owner,
            )

    def _ensure_writable(self, principal: Principal, file: MediaFile) -> None:
        if not policy.write_visibility(principal).allows(file):
            raise Forbidden("you may read this file but not change it")

    async def delete(self, principal: Principal, file_id: str) -> None:
        """Remove the row now; ``file.deleted``, published after the commit, has the
        consumer in ``media.consumers`` remove the stored bytes (retried until done)."""
        file = await self.get(principal, file_id)
        self._ensure_writable(principal, file)
        self.audit.record(Actor.of(principal), AuditAction.DELETE, file, AuditResource.FILE)
        await self._delete(file, actor=principal.subject)

    async def remove(self, principal: Principal, file_id: str) -> bool:
        """:meth:`delete` for callers authorised otherwise (an erasure of biometric data
        the person or an admin asked for): audited and announced as ``principal``'s, with
        no check of the file's visibility; False if already gone."""
        file = await self.find(file_id)
        if file is None:
            return False
        self.audit.record(Actor.of(principal), AuditAction.DELETE, file, AuditResource.FILE)
        await self._delete(file, actor=principal.subject)
        return True

    async def files_of_person(
        self, organization_id: str, person_id: str, owner_types: frozenset[OwnerType]
    ) -> Sequence[MediaFile]:
        """Every file owned by ``person_id`` under one of ``owner_types`` (for background
        work about a person; callers check access themselves)."""
        return await self.repository.owned_by(organization_id, person_id, owner_types)

    async def _delete(self, file: MediaFile, actor: str) -> None:
        await self.repository.delete(file)
        forget_file_after_commit(self.session, self.recent_files, file.file_id)
        deleted = FileDeleted(
            file_id=file.file_id, user_id=actor, organization_id=file.organization_id
        )
        record_event(self.session, deleted)
        log.info("file_deleted", file_id=file.file_id)

    # -- share ---------------------------------------------------------------------------------

    async def sign_url(
        self,
        principal: Principal,
        file_id: str,
        path: str,
        expires_in: int | None,
        *,
        resource: AuditResource = AuditResource.CONTENT,
        detail: Mapping[str, DetailValue] | None = None,
    ) -> SignedUrl:
        """A URL for ``path`` that works without a token until it expires (audited as a
        share of ``resource``, with ``detail``)."""
        file = await self.get(principal, file_id)
        lifetime = expires_in or self.settings.signed_url_ttl_seconds
        if lifetime > self.settings.signed_url_max_seconds:
            raise Unprocessable(
                f"expires_in may be at most {self.settings.signed_url_max_seconds} seconds",
                errors=[{"loc": ["body", "expires_in"], "msg": "too long"}],
            )
        signed = signed_path(self.signer, path, lifetime)
        share = {**(detail or {}), "expires_at": signed.expires_at}
        self.audit.record(Actor.of(principal), AuditAction.SHARE, file, resource, detail=share)
        return signed


def signed_path(signer: UrlSigner, path: str, lifetime: int) -> SignedUrl:
    """``path`` with a GET signature valid for at least ``lifetime`` seconds (the expiry is
    rounded up, never a fraction less). ``path`` may carry a query of its own."""
    expires = math.ceil(time.time()) + lifetime
    query = signer.sign("GET", path, expires).as_query()
    separator = "&" if "?" in path else "?"
    return SignedUrl(f"{path}{separator}{query}", datetime.fromtimestamp(expires, tz=UTC))


def may_read(principal: Principal, file: MediaFile) -> bool:
    """Whether ``principal`` may read ``file`` (the same rule as every query's SQL)."""
    return policy.read_visibility(principal).allows(file)


def may_write(principal: Principal, file: MediaFile) -> bool:
    """Whether ``principal`` may change ``file`` or what belongs to it (its versions)."""
    return policy.write_visibility(principal).allows(file)


def _require_file_id(file_id: str) -> None:
    """Anything that is not an id we issued is simply not found (and never reaches SQL,
    where a NUL byte would be a driver error on PostgreSQL)."""
    if not is_valid_id(file_id, "file"):
        raise NotFound(f"no file {file_id[:60]!r}")
