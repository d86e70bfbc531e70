"""The relay's held connection and its marks: one connection across back-to-back passes,
none held once idle or stopped, and every published row marked even when a batch's
marks wait for the next claim. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from events.conftest import BusFactory, Sessions, eventually
from events.test_outbox import commit_events, relay_for, uploaded
from media_service.events.connection import HeldConnection
from media_service.events.models import OutboxMessage
from media_service.events.outbox import OutboxRepository, wake_on_commit


def checked_out(sessions: Sessions) -> int:
    engine = sessions.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    return int(engine.sync_engine.pool.checkedout())  # type: ignore[attr-defined]


async def driver_connection(session: AsyncSession) -> object:
    return (await session.connection()).sync_connection.connection.dbapi_connection  # type: ignore[union-attr]


async def test_transactions_share_one_connection_until_released(sessions: Sessions) -> None:
    held = HeldConnection(sessions)
    async with held.begin() as session:
        first = await driver_connection(session)
    async with held.begin() as session:
        assert await driver_connection(session) is first
        await session.execute(text("SELECT 1"))
    assert checked_out(sessions) == 1
    await held.release()
    assert checked_out(sessions) == 0


async def test_a_failed_transaction_drops_the_connection_and_rolls_back(
    sessions: Sessions,
) -> None:
    held = HeldConnection(sessions)

    async def add_then_fail() -> None:
        async with held.begin() as session:
            row = OutboxMessage(id="doomed", kind="event", subject="file.uploaded", payload={})
            session.add(row)
            await session.flush()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await add_then_fail()
    assert checked_out(sessions) == 0
    async with held.begin() as session:  # a fresh connection works
        assert await session.get(OutboxMessage, "doomed") is None
    await held.release()


async def test_a_claim_marks_the_previous_batch_in_its_transaction(sessions: Sessions) -> None:
    first, second = uploaded(1), uploaded(2)
    await commit_events(sessions, first)
    repository = OutboxRepository(sessions, hold_connection=True)
    [claimed] = await repository.claim_pending(10, timedelta(seconds=30))
    await commit_events(sessions, second)
    [next_claimed] = await repository.claim_pending(
        10, timedelta(seconds=30), published=[claimed.id]
    )
    await repository.release_connection()
    assert (claimed.id, next_claimed.id) == (first.event_id, second.event_id)
    async with sessions() as session:
        marked = await session.get(OutboxMessage, first.event_id)
    assert marked is not None and marked.published_at is not None and marked.attempts == 1
    assert (await repository.backlog()).pending == 1  # the second: claimed, not yet marked


@pytest.mark.parametrize("bus_kind", ["memory", "nats"])
async def test_running_relay_marks_every_row_and_lets_go_of_its_connection(
    make_bus: BusFactory, sessions: Sessions
) -> None:
    bus = await make_bus()
    relay = relay_for(sessions, bus)
    wake_on_commit(sessions, relay.notify)
    relay.start()
    try:
        for n in range(30):  # commits keep waking the relay: marks ride on the next claim
            await commit_events(sessions, uploaded(n))

        async def all_marked() -> bool:
            return (await relay.repository.backlog()).pending == 0

        await eventually(all_marked)
    finally:
        await relay.stop()
        wake_on_commit(sessions, lambda: None)
    async with sessions() as session:
        attempts = list(await session.scalars(select(OutboxMessage.attempts)))
    assert sorted(attempts) == [1] * 30, "a row was published twice, or never marked"
    assert checked_out(sessions) == 0, "the stopped relay still holds a connection"
