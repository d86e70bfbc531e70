"""Build the configured EventBus from ``MEDIA_EVENTS_URL``.

``memory://`` (the default) is the in-process bus, durable through the database;
``nats://host:4222`` (optionally ``?monitor=http://host:8222``) is NATS JetStream.
Anything else stops start-up with one clear line.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from media_service.events.bus import EventBus
from media_service.events.memory import MemoryEventBus


class UnknownEventsScheme(ValueError):
    """MEDIA_EVENTS_URL names a bus we do not have."""


def open_event_bus(url: str, sessions: async_sessionmaker[AsyncSession]) -> EventBus:
    """The EventBus for ``url``; connects to nothing until ``start()``."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryEventBus(sessions, url=url)
    if scheme in {"nats", "tls"}:
        from media_service.events.nats import NatsEventBus

        return NatsEventBus(url)
    raise UnknownEventsScheme(
        f"MEDIA_EVENTS_URL has unknown scheme {scheme!r}: use memory:// (in-process, the "
        "default) or nats://HOST:PORT[?monitor=http://HOST:8222]"
    )
