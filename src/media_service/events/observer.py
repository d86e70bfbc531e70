"""What the event machinery reports as it works, for metrics.

The relay and the consumers find the observer on the session factory they already hold
(the same place :func:`outbox.wake_on_commit` puts the relay's wake-up), so the process
that builds them decides what is counted and nothing is global. Without an observer
nothing is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

# session factory info key holding the process's EventObserver
EVENT_OBSERVER = "event_observer"


class EventObserver(Protocol):
    """Receives one call per fact; must be cheap and never raise."""

    def published(self, kind: str, subject: str, payload: Mapping[str, Any]) -> None:
        """The bus acknowledged an outbox row of ``kind`` ("event" or "job") with this
        ``payload`` and it is marked published."""
        ...

    def handled(self, consumer: str) -> None:
        """``consumer`` applied an event (its effect and record committed)."""
        ...

    def duplicate(self, consumer: str) -> None:
        """``consumer`` got an event it had already applied and changed nothing."""
        ...

    def failed(self, consumer: str) -> None:
        """``consumer``'s handler raised or refused the message."""
        ...


def observe_events(sessions: async_sessionmaker[AsyncSession], observer: EventObserver) -> None:
    """Report what the relay and consumers built on ``sessions`` do to ``observer``."""
    info = dict(sessions.kw.get("info") or {})
    info[EVENT_OBSERVER] = observer
    sessions.configure(info=info)


def event_observer(sessions: async_sessionmaker[AsyncSession]) -> EventObserver | None:
    observer: EventObserver | None = (sessions.kw.get("info") or {}).get(EVENT_OBSERVER)
    return observer
