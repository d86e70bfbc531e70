"""Dead letters for operators: list them (by organization) and re-queue one.

A dead letter belongs to the organization named in its message: ``organization_id`` at
the top (events) or inside ``payload`` (jobs). A letter without one (a malformed message,
a job about no organization) belongs to none: only the CLI shows and retries it.

Retrying re-publishes the exact message on its subject through the outbox, with the dead
letter's id as message id (a new id, since the bus may still remember the old one), and
marks the letter retried in the same transaction. The job id (or event id) inside is
unchanged, so workers and consumers still apply it at most once.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.db.base import utcnow
from media_service.errors import Conflict, NotFound
from media_service.events.consumers import DeadLetterQueries
from media_service.events.models import DeadLetterRecord, OutboxKind
from media_service.events.outbox import record_message
from media_service.ids import is_valid_id
from media_service.jobs.registry import SUBJECT_PREFIX

SCAN_CHUNK = 200  # rows read per query while filtering a page by organization


def message_document(record: DeadLetterRecord) -> dict[str, Any] | None:
    """The letter's message as a JSON object, or None when it is not one."""
    try:
        document = orjson.loads(record.payload)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def organization_of(record: DeadLetterRecord) -> str | None:
    document = message_document(record) or {}
    for holder in (document, document.get("payload")):
        if isinstance(holder, dict) and isinstance(holder.get("organization_id"), str):
            return str(holder["organization_id"])
    return None


class DeadLetterService:
    """Listing and retrying dead letters inside one unit of work."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._queries = DeadLetterQueries(session)

    async def page(
        self,
        *,
        organization_id: str | None,
        limit: int,
        cursor: str | None = None,
        include_retried: bool = False,
    ) -> tuple[list[DeadLetterRecord], str | None]:
        """Newest first, ``limit`` at a time; ``organization_id=None`` means all of them.
        Returns the page and the cursor of the next one (None at the end)."""
        found: list[DeadLetterRecord] = []
        while len(found) <= limit:
            chunk = await self._queries.newest_before(
                cursor, include_retried=include_retried, limit=SCAN_CHUNK
            )
            for record in chunk:
                if organization_id is None or organization_of(record) == organization_id:
                    found.append(record)
            if len(chunk) < SCAN_CHUNK:
                break
            cursor = chunk[-1].id
        if len(found) > limit:
            return found[:limit], found[limit - 1].id
        return found, None

    async def retry(self, record_id: str, *, organization_id: str | None) -> DeadLetterRecord:
        """Re-queue a dead letter (404 if unknown or another organization's, 409 if
        already retried or not a JSON message)."""
        if not is_valid_id(record_id, "dlq"):  # never send a malformed id to the database
            raise NotFound(f"no dead letter {record_id[:64]!r}")
        record = await self._queries.get_for_update(record_id)
        if record is None or (
            organization_id is not None and organization_of(record) != organization_id
        ):
            raise NotFound(f"no dead letter {record_id}")
        if record.retried_at is not None:
            raise Conflict(f"dead letter {record_id} was already retried")
        document = message_document(record)
        if document is None:
            raise Conflict(f"dead letter {record_id} is not a JSON object: it cannot be replayed")
        kind: OutboxKind = "job" if record.subject.startswith(SUBJECT_PREFIX) else "event"
        record_message(self._session, kind, record.subject, document, record.id)
        record.retried_at = utcnow()
        return record
