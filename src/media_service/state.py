"""What the running service holds: built by the app factory or the CLI, never at import."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from media_service.auth.secrets import load_or_create_secret
from media_service.auth.tokens import TokenService
from media_service.bytecache import BytesCache
from media_service.config import Settings
from media_service.db.engine import (
    create_engine,
    create_read_session_factory,
    create_session_factory,
)
from media_service.events import EventBus, OutboxRelay, open_event_bus, wake_on_commit
from media_service.frames.feed_memo import FeedMemo
from media_service.frames.seen import SeenFrames
from media_service.housekeeping import Housekeeping
from media_service.imaging.pool import ImagingPool, shared_pool
from media_service.media.signing import UrlSigner, derive_signing_key, parse_signing_keys
from media_service.observations import Observations
from media_service.recent import RecentValues
from media_service.singleflight import SingleFlight
from media_service.storage import BlobStore, open_blob_store


class BackgroundLoop(Protocol):
    """Something a process runs in the background until it is stopped."""

    async def stop(self) -> None: ...


@dataclass
class ServiceState:
    """Backends and shared services of one process."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]  # lookups only: never write with these
    blobs: BlobStore
    tokens: TokenService
    signer: UrlSigner
    bus: EventBus
    relay: OutboxRelay
    housekeeping: Housekeeping
    imaging: ImagingPool
    # Frames' last-seen times noted by their polls, written every few seconds.
    seen: SeenFrames
    # Per process: identical renders in flight run once; counts of renders by kind.
    flights: SingleFlight[Any] = field(default_factory=SingleFlight)
    render_counts: Counter[str] = field(default_factory=Counter)
    # Small immutable objects (renditions, crops) recently served, by storage key.
    hot_objects: BytesCache = field(default_factory=BytesCache)
    # File records looked up for serving renditions, remembered for a second.
    recent_files: RecentValues[Any] = field(default_factory=RecentValues)
    # Frames' feeds as last built, served again while their rows and time allow.
    feeds: FeedMemo = field(default_factory=FeedMemo)
    # Periodic loops of the domains (the frames' pre-cache rounds and last-seen writes),
    # stopped with the rest.
    loops: list[BackgroundLoop] = field(default_factory=list)
    # Durations the domains measure (AI analysis, playlist queries), for the metrics.
    observations: Observations = field(default_factory=Observations)

    @classmethod
    def build(cls, settings: Settings) -> ServiceState:
        """Construct every backend from ``settings``; nothing connects yet."""
        secret = load_or_create_secret(settings)
        engine = create_engine(settings.database_url)
        sessions = create_session_factory(engine)
        bus = open_event_bus(settings.events_url, sessions)
        relay = OutboxRelay(sessions, bus)
        wake_on_commit(sessions, relay.notify)  # publish right after each commit
        keys = (
            parse_signing_keys(settings.signing_keys.get_secret_value())
            if settings.signing_keys
            else [derive_signing_key(secret)]
        )
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            read_sessions=create_read_session_factory(engine),
            blobs=open_blob_store(settings.storage_url),
            tokens=TokenService(
                secret,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                jwks_url=settings.jwks_url,
            ),
            signer=UrlSigner(keys),
            bus=bus,
            relay=relay,
            housekeeping=Housekeeping(sessions, settings),
            # One pool per process, shared by every app in it (tests build many).
            imaging=shared_pool(settings.imaging_workers),
            seen=SeenFrames(sessions),
            feeds=FeedMemo(settings.feed_memory_bytes),
        )

    async def stop_background(self) -> None:
        """Stop relaying, consuming and cleaning up; the backends stay usable."""
        loops, self.loops = self.loops, []
        for loop in loops:
            await loop.stop()
        await self.housekeeping.stop()
        await self.relay.stop()
        await self.bus.close()

    async def close(self) -> None:
        """Stop background work and release every backend (safe if never started)."""
        await self.stop_background()
        await self.blobs.close()
        await self.engine.dispose()
