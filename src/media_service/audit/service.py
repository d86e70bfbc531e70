"""Rules of the audit trail: which media are audited, who the actor is, what a row may
hold, who may read the trail, and how a person is forgotten in it.

Rows are written into the caller's unit of work and never committed here. A change or a
delete records its row in the transaction of the change itself, so a rolled-back change
leaves no row; a read or a share records its row once the response is decided (a 404 is
not a read), and it commits with the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media_service.audit.models import AuditAction, AuditEvent, AuditResource
from media_service.audit.repository import AuditRepository
from media_service.audit.schemas import AuditFilters
from media_service.auth.principal import Principal, Role
from media_service.db.base import utcnow
from media_service.db.uow import unit_of_work
from media_service.errors import Forbidden
from media_service.ids import new_id
from media_service.media.models import MediaFile, OwnerType

log = structlog.get_logger(__name__)

# Media of minors and of classes are audited; teachers' and users' own photos are not.
AUDITED_OWNERS = frozenset({OwnerType.STUDENT, OwnerType.CLASS_SESSION})
SIGNED_URL_ACTOR = "signed-url"
MAX_DETAIL_KEYS = 12
MAX_DETAIL_TEXT = 200
# Never stored, whatever a caller passes: the trail must not become a copy of secrets
# or of location data.
_NEVER_KEYS = frozenset(
    {"sig", "signature", "token", "url", "query", "latitude", "longitude", "gps", "data"}
)
DetailValue = str | int | float | bool | datetime | None
Owner = tuple[OwnerType, str]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: a token's subject and roles, or a signed URL (by key id)."""

    actor_id: str
    roles: tuple[str, ...] = ()
    key_id: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(principal.subject, tuple(sorted(role.value for role in principal.roles)))

    @classmethod
    def signed_url(cls, key_id: str | None) -> Actor:
        return cls(SIGNED_URL_ACTOR, (), key_id)


def request_actor(principal: Principal | None, query: Mapping[str, str]) -> Actor:
    """The actor of a request that may be a signed URL: the signature wins, since it is
    what authorised the request (its key id is checked by then)."""
    if "sig" in query or principal is None:
        return Actor.signed_url(query.get("kid"))
    return Actor.of(principal)


def is_audited(owner_type: OwnerType) -> bool:
    """Whether media of this owner type are audited."""
    return owner_type in AUDITED_OWNERS


class AuditTrail:
    """Records audit rows in the caller's unit of work (one INSERT at its flush, no
    SELECT: the file row the caller already loaded says whose media it is)."""

    def __init__(self, session: AsyncSession) -> None:
        self.repository = AuditRepository(session)

    def record(
        self,
        actor: Actor,
        action: AuditAction,
        file: MediaFile,
        resource: AuditResource,
        *,
        resource_id: str | None = None,
        detail: Mapping[str, DetailValue] | None = None,
        owner: Owner | None = None,
    ) -> bool:
        """Record ``action`` on ``file`` if its owner (or ``owner``: the one it had
        before a change) is audited; whether a row was written."""
        owner_type, owner_id = owner or (file.owner_type, file.owner_id)
        if not is_audited(owner_type):
            return False
        now = utcnow()
        self.repository.add(
            AuditEvent(
                audit_id=new_id("aud", now_ms=int(now.timestamp() * 1000)),
                organization_id=file.organization_id,
                occurred_at=now,
                actor_id=actor.actor_id,
                actor_roles=list(actor.roles),
                action=action,
                resource_type=resource,
                resource_id=resource_id or file.file_id,
                file_id=file.file_id,
                owner_type=owner_type,
                owner_id=owner_id,
                request_id=_request_id(),
                detail=_small_detail(detail or {}, actor.key_id),
            )
        )
        return True


class AuditService:
    """The trail as admins query it."""

    def __init__(self, session: AsyncSession) -> None:
        self.repository = AuditRepository(session)

    async def page(
        self, principal: Principal, filters: AuditFilters
    ) -> tuple[list[AuditEvent], str | None]:
        """A page of the caller's organization's trail, newest first, and the next
        page's cursor. Admins only (403 for everyone else, as for dead letters)."""
        if not principal.has(Role.ADMIN):
            raise Forbidden("only admins may read the audit trail")
        rows = list(
            await self.repository.page(principal.organization_id, filters, filters.limit + 1)
        )
        has_more = len(rows) > filters.limit
        rows = rows[: filters.limit]
        return rows, rows[-1].audit_id if has_more and rows else None


async def forget_person(
    session: AsyncSession, organization_id: str, user_id: str, pseudonym: str
) -> int:
    """Replace ``user_id`` by ``pseudonym`` wherever it is an actor or an owner in the
    organization's trail; how many rows changed. The rows stay: what happened is still
    recorded, but no longer names the person (part of a person's erasure)."""
    changed = await AuditRepository(session).replace_person(organization_id, user_id, pseudonym)
    log.info("audit_person_forgotten", rows=changed)
    return changed


async def purge_audit_events(
    sessions: async_sessionmaker[AsyncSession], retention: timedelta
) -> int:
    """Delete rows older than ``retention`` (housekeeping); how many went."""
    async with unit_of_work(sessions) as session:
        return await AuditRepository(session).delete_before(utcnow() - retention)


def _small_detail(detail: Mapping[str, DetailValue], key_id: str | None) -> dict[str, object]:
    """Scalars only, short strings, a few keys, none of the forbidden ones."""
    small: dict[str, object] = {}
    if key_id is not None:
        small["key_id"] = key_id[:64]
    for key, value in list(detail.items())[:MAX_DETAIL_KEYS]:
        if key.lower() in _NEVER_KEYS:
            continue
        if isinstance(value, datetime):
            value = value.isoformat()
        small[key] = value[:MAX_DETAIL_TEXT] if isinstance(value, str) else value
    return small


def _request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value)[:64] if value else None
