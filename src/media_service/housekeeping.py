"""Periodic clean-up that a running service does by itself.

Every ``housekeeping_interval_seconds`` (and once shortly after start) it forgets event
history older than ``events_retention_days`` (:mod:`media_service.events.retention`),
idempotency keys older than ``idempotency_ttl_seconds`` and audit trail entries older than
``audit_retention_days``. Several processes may do it at once: the deletes are idempotent.
Orphan objects left by crashes need a listing of the whole store and stay with
``media-service gc``.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media_service.audit.service import purge_audit_events
from media_service.config import Settings
from media_service.db.base import utcnow
from media_service.db.uow import unit_of_work
from media_service.events.retention import purge_event_history
from media_service.media.repository import MediaFileRepository
from media_service.periodic import PeriodicLoop

log = structlog.get_logger(__name__)

FIRST_RUN_DELAY = 60.0  # seconds after start: not while the service is warming up


class Housekeeping:
    """The clean-up loop of one process: :meth:`start`, :meth:`stop`, or :meth:`run_once`."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        first_run_delay: float = FIRST_RUN_DELAY,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._loop = PeriodicLoop(
            "housekeeping",
            self.run_once,
            settings.housekeeping_interval_seconds,
            failure_event="housekeeping_failed",
            first_delay=first_run_delay,
        )

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def run_once(self) -> None:
        """Forget expired event history, idempotency keys and audit entries."""
        retention = timedelta(days=self._settings.events_retention_days)
        await purge_event_history(self._sessions, retention)
        expired = await expire_idempotency_keys(self._sessions, self._settings)
        if expired:
            log.info("idempotency_keys_expired", count=expired)
        audit_retention = timedelta(days=self._settings.audit_retention_days)
        forgotten = await purge_audit_events(self._sessions, audit_retention)
        if forgotten:
            log.info("audit_events_expired", count=forgotten)


async def expire_idempotency_keys(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> int:
    """Delete idempotency keys older than ``idempotency_ttl_seconds``; how many went."""
    cutoff = utcnow() - timedelta(seconds=settings.idempotency_ttl_seconds)
    async with unit_of_work(sessions) as session:
        return await MediaFileRepository(session).delete_idempotency_keys_before(cutoff)
