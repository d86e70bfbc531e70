"""Event history is forgotten after the retention period, in chunks, on both databases;
the housekeeping loop does it (and expires idempotency keys) by itself."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlalchemy import select

from events.conftest import Sessions
from media_service.config import Settings
from media_service.db.base import utcnow
from media_service.events.models import BusDelivery, HandledEvent, OutboxMessage
from media_service.events.retention import purge_event_history
from media_service.housekeeping import Housekeeping
from media_service.media.models import IdempotencyKey

OLD = timedelta(days=20)
RECENT = timedelta(hours=1)


def outbox_row(name: str, *, age: timedelta, published: bool) -> OutboxMessage:
    at = utcnow() - age
    return OutboxMessage(
        id=name, kind="event", subject="file.uploaded", payload={}, created_at=at,
        available_at=at, attempts=1 if published else 0, published_at=at if published else None,
    )  # fmt: skip


def delivery_row(name: str, *, age: timedelta, settled: bool) -> BusDelivery:
    at = utcnow() - age
    return BusDelivery(
        consumer="c", msg_id=name, subject="file.uploaded", payload=b"{}", attempts=1,
        available_at=at, created_at=at, settled_at=at if settled else None,
    )  # fmt: skip


def idempotency_key(name: str, *, age: timedelta) -> IdempotencyKey:
    return IdempotencyKey(
        organization_id="org", principal_id="u", key=name, request_fingerprint="f" * 64,
        file_id="file_x", status_code=201, created_at=utcnow() - age,
    )  # fmt: skip


async def fill(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        for n in range(5):
            session.add(outbox_row(f"old-published-{n}", age=OLD, published=True))
            session.add(HandledEvent(consumer="c", event_id=f"old-{n}", handled_at=utcnow() - OLD))
            session.add(delivery_row(f"old-settled-{n}", age=OLD, settled=True))
        session.add(outbox_row("old-pending", age=OLD, published=False))
        session.add(outbox_row("recent-published", age=RECENT, published=True))
        session.add(HandledEvent(consumer="c", event_id="recent", handled_at=utcnow() - RECENT))
        session.add(delivery_row("old-pending", age=OLD, settled=False))
        session.add(delivery_row("recent-settled", age=RECENT, settled=True))
        session.add(idempotency_key("old", age=OLD))
        session.add(idempotency_key("recent", age=RECENT))


async def remaining(sessions: Sessions) -> dict[str, set[str]]:
    async with sessions() as session:
        return {
            "outbox": set(await session.scalars(select(OutboxMessage.id))),
            "handled": set(await session.scalars(select(HandledEvent.event_id))),
            "deliveries": set(await session.scalars(select(BusDelivery.msg_id))),
            "keys": set(await session.scalars(select(IdempotencyKey.key))),
        }


KEPT = {
    "outbox": {"old-pending", "recent-published"},  # pending rows are never purged
    "handled": {"recent"},
    "deliveries": {"old-pending", "recent-settled"},  # nor unsettled deliveries
}


async def test_old_history_goes_in_chunks_and_the_rest_stays(sessions: Sessions) -> None:
    await fill(sessions)
    purge = await purge_event_history(sessions, timedelta(days=14), chunk=2)
    assert (purge.outbox, purge.handled_events, purge.bus_deliveries) == (5, 5, 5)
    left = await remaining(sessions)
    assert {name: left[name] for name in KEPT} == KEPT
    assert left["keys"] == {"old", "recent"}  # not the event machinery's
    again = await purge_event_history(sessions, timedelta(days=14))
    assert (again.outbox, again.handled_events, again.bus_deliveries) == (0, 0, 0)


async def test_housekeeping_cleans_up_by_itself_and_stops_promptly(sessions: Sessions) -> None:
    await fill(sessions)
    settings = Settings(events_retention_days=14, housekeeping_interval_seconds=3600)
    housekeeping = Housekeeping(sessions, settings, first_run_delay=0.0)
    housekeeping.start()
    async with asyncio.timeout(10):
        while (await remaining(sessions))["keys"] != {"recent"}:
            await asyncio.sleep(0.05)
    left = await remaining(sessions)
    assert {name: left[name] for name in KEPT} == KEPT
    started = datetime.now()
    await housekeeping.stop()  # waiting out its hour-long interval: must end at once
    assert (datetime.now() - started).total_seconds() < 1.5
