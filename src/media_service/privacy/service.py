"""Rules of erasure requests: who may ask, one unfinished erasure per person, reports.

Works inside the request's unit of work and never commits; the erasure itself is a job
(:mod:`media_service.privacy.jobs`) that starts after the commit.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Principal
from media_service.auth.secrets import load_or_create_secret
from media_service.db.base import utcnow
from media_service.errors import Conflict, NotFound, Unprocessable
from media_service.ids import is_valid_id, new_id
from media_service.privacy import policy
from media_service.privacy.jobs import request_erasure
from media_service.privacy.models import Erasure, ErasureStatus
from media_service.privacy.pseudonym import pseudonym
from media_service.privacy.repository import ErasureRepository
from media_service.privacy.schemas import USER_ID
from media_service.state import ServiceState

log = structlog.get_logger(__name__)
# Longer than a run may go without committing a batch (the job's handler timeout).
STALLED_AFTER = timedelta(minutes=20)


class ErasureService:
    """Erasure requests and reports for the API and the CLI."""

    def __init__(self, session: AsyncSession, state: ServiceState) -> None:
        self.session = session
        self.state = state
        self.repository = ErasureRepository(session)

    async def request(self, principal: Principal, user_id: str) -> Erasure:
        """Queue the erasure of ``user_id``'s data in the caller's organization, or return
        the person's unfinished erasure if there is one. 404 unless the caller is an admin
        or the person; 422 for a value that cannot be a user id."""
        user_id = valid_user_id(user_id)
        if not policy.may_erase(principal, user_id):
            raise NotFound("no such user")
        organization_id = principal.organization_id
        digest = await self.pseudonym(organization_id, user_id)
        running = await self.repository.unfinished(organization_id, digest)
        if running is not None:
            await self._requeue_if_stalled(running)
            return running
        erasure = Erasure(
            erasure_id=new_id("era"),
            organization_id=organization_id,
            user_id=user_id,
            subject_digest=digest,
            requested_by=principal.subject,
            status=ErasureStatus.QUEUED,
            counts={},
        )
        if not await self.repository.add(erasure):  # a concurrent request was first
            running = await self.repository.unfinished(organization_id, digest)
            if running is None:
                raise Conflict("another erasure of this person just finished; ask again")
            return running
        await request_erasure(self.session, erasure)
        log.info("erasure_requested", erasure_id=erasure.erasure_id)
        return erasure

    async def _requeue_if_stalled(self, erasure: Erasure) -> None:
        """An unfinished erasure that has not moved for a while lost its job (dead-lettered
        after its last retry, or its queue was lost): queue it again. A run that is merely
        slow meets the new one harmlessly (each file is counted by the run that deletes it)."""
        now = utcnow()
        if now - erasure.updated_at < STALLED_AFTER:
            return
        erasure.updated_at = now  # one new job per stalled period, however often asked
        await request_erasure(self.session, erasure, attempt=int(now.timestamp()))
        log.warning("erasure_requeued", erasure_id=erasure.erasure_id)

    async def report(self, principal: Principal, erasure_id: str) -> Erasure:
        """The erasure if ``principal`` may follow it; 404 otherwise."""
        erasure = await self.repository.get(erasure_id) if is_valid_id(erasure_id, "era") else None
        if erasure is None or not policy.may_read(principal, erasure):
            raise NotFound(f"no erasure {erasure_id[:60]!r}")
        return erasure

    async def of_person(self, principal: Principal, user_id: str) -> list[Erasure]:
        """Every erasure of ``user_id`` in the caller's organization, newest first (admins;
        found by pseudonym, since finished reports no longer hold the id)."""
        user_id = valid_user_id(user_id, "user_id", where="query")
        if not policy.is_admin(principal):
            raise NotFound("no such user")
        organization_id = principal.organization_id
        digest = await self.pseudonym(organization_id, user_id)
        return await self.repository.of_subject(organization_id, digest)

    async def pseudonym(self, organization_id: str, user_id: str) -> str:
        """The person's pseudonym, keyed with the service's secret."""
        # The secret may have to be read from the data directory: not on the event loop.
        secret = await asyncio.to_thread(load_or_create_secret, self.state.settings)
        return pseudonym(secret, organization_id, user_id)


def valid_user_id(value: str, name: str = "user_id", where: str = "path") -> str:
    """``value`` if it can be a user id (as an owner id: 1-128 visible characters)."""
    try:
        return USER_ID.validate_python(value)
    except ValidationError:
        message = "not a user id: 1-128 characters, no control characters"
        raise Unprocessable(message, errors=[{"loc": [where, name], "msg": message}]) from None
