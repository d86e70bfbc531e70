"""Forgetting stored messages that mention someone (erasure of a person): every bus deletes
exactly the messages that contain a term, in any JSON spelling, and keeps those that carry
the spared string; the event history tables do the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from events.conftest import POLICY, BusFactory, Recorder, Sessions, settled
from media_service.db.uow import unit_of_work
from media_service.events.bus import EventBus
from media_service.events.models import BusDelivery, DeadLetterRecord, HandledEvent, OutboxMessage
from media_service.events.nats import EVENTS_STREAM, JOBS_STREAM
from media_service.events.scrub import Mentions, forget_history

from conftest import delete_stream
from harness.nats import stored_messages

BUSES = ["memory-sqlite", "memory-postgres", "nats"]
# The person "zo_%ë" of org_a: LIKE's wildcards and a non-ASCII letter in their id. Their
# file "file_1" counts anywhere; their user id only whole, next to their organization.
MENTIONS = Mentions(ids=["file_1"], person="zo_%ë", organization_id="org_a", spare="era_1")
ORG_A = {"organization_id": "org_a"}
MESSAGES = {
    "m-person": ("file.uploaded", {"user_id": "zo_%ë", **ORG_A}),
    "m-lookalike": ("file.uploaded", {"user_id": "zoXYë", **ORG_A}),  # if _ and % were wild
    "m-longer-id": ("file.uploaded", {"user_id": "zo_%ë2", **ORG_A}),  # another person
    "m-other-org": ("file.uploaded", {"user_id": "zo_%ë", "organization_id": "org_b"}),
    "m-spared": ("file.deleted", {"file_id": "file_1", "user_id": "era_1", **ORG_A}),
    "m-unrelated": ("file.deleted", {"file_id": "file_2", "user_id": "era_1", **ORG_A}),
    "m-job": ("jobs.test", {"payload": {"file_id": "file_1"}}),
    "m-in-a-url": ("file.uploaded", {"cached_url": "/files/file_1/content", **ORG_A}),
    "m-owner": ("file.uploaded", {"user_id": "t1", "owner_id": "zo_%ë", **ORG_A}),
    "m-no-org": ("file.uploaded", {"user_id": "zo_%ë"}),  # a malformed one: theirs, likely
    # The same string as a class session's id, or as a label: not the person.
    "m-class": ("file.uploaded", {"user_id": "t1", "owner_type": "ClassSession",
                                  "owner_id": "zo_%ë", **ORG_A}),
    "m-label": ("file.uploaded", {"user_id": "t1", "ai_labels": ["zo_%ë"], **ORG_A}),
}  # fmt: skip
FORGOTTEN = {"m-person", "m-ascii-escaped", "m-job", "m-in-a-url", "m-owner", "m-no-org"}


@pytest.fixture(params=BUSES)
def bus_variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bus_kind(bus_variant: str) -> str:
    return "nats" if bus_variant == "nats" else "memory"


@pytest.fixture
def database(bus_variant: str) -> str:
    return "postgres" if bus_variant == "memory-postgres" else "sqlite"


def encoded() -> dict[str, tuple[str, bytes]]:
    """Each message as it would travel: UTF-8 JSON, plus one written ASCII-only."""
    messages = {
        msg_id: (subject, json.dumps(body, ensure_ascii=False).encode())
        for msg_id, (subject, body) in MESSAGES.items()
    }
    ascii_only = json.dumps({"user_id": "zo_%ë", **ORG_A}).encode()  # "zo_%\\u00eb"
    messages["m-ascii-escaped"] = ("file.uploaded", ascii_only)
    return messages


async def stored_ids(bus_kind: str, bus: EventBus, sessions: Sessions) -> set[str]:
    if bus_kind == "memory":
        async with sessions() as session:
            return set((await session.execute(select(BusDelivery.msg_id))).scalars().all())
    assert bus.url.startswith("nats")
    streams = (EVENTS_STREAM.name, JOBS_STREAM.name)
    return {
        str((message.headers or {}).get("Nats-Msg-Id"))
        for _, _, message in await stored_messages(bus.url, streams)
    }


async def test_every_bus_forgets_exactly_the_messages_that_mention_a_term(
    make_bus: BusFactory, sessions: Sessions, bus_kind: str
) -> None:
    bus = await make_bus()
    if bus_kind == "nats":
        await delete_stream(bus.url, JOBS_STREAM.name)
        await bus.close()
        bus = await make_bus()  # creates the jobs stream again, empty
    else:  # the in-process bus stores messages for its consumers only
        recorder = Recorder()
        for name, subjects in (("c1", ["file.>"]), ("c2", ["jobs.test"])):
            await bus.subscribe(
                name, subjects, recorder.handler, on_dead_letter=recorder.on_dead_letter,
                policy=POLICY,
            )  # fmt: skip
    messages = encoded()
    for msg_id, (subject, payload) in messages.items():
        await bus.publish(subject, payload, msg_id)
    if bus_kind == "memory":
        await settled(bus, "c1")  # delivered and settled rows are forgotten too
    assert await stored_ids(bus_kind, bus, sessions) == set(messages)

    assert await bus.forget_messages(MENTIONS) == len(FORGOTTEN)

    assert await stored_ids(bus_kind, bus, sessions) == set(messages) - FORGOTTEN
    assert await bus.forget_messages(MENTIONS) == 0


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_event_history_forgets_rows_that_mention_a_term(sessions: Sessions) -> None:
    async with unit_of_work(sessions) as session:
        for msg_id, (subject, payload) in encoded().items():
            session.add(OutboxMessage(id=msg_id, kind="event", subject=subject,
                                      payload=json.loads(payload)))  # fmt: skip
            session.add(
                DeadLetterRecord(
                    id=f"dl-{msg_id}", source="c1", subject=subject, msg_id=msg_id,
                    payload=payload + b"\xff\xfe not UTF-8", error="boom", attempts=5,
                )
            )  # fmt: skip
        session.add(HandledEvent(consumer="job_media_preprocess", event_id="preprocess-file_1"))
        session.add(HandledEvent(consumer="job_media_preprocess", event_id="preprocess-file_2"))
        # A user id inside another id is no evidence of anything.
        session.add(HandledEvent(consumer="job_media_x", event_id="x-zo_%ë-1"))

    async with unit_of_work(sessions) as session:
        removed = await forget_history(session, MENTIONS)

    assert removed == 2 * len(FORGOTTEN) + 1
    kept = set(encoded()) - FORGOTTEN
    async with sessions() as session:
        outbox = set((await session.execute(select(OutboxMessage.id))).scalars().all())
        letters = set((await session.execute(select(DeadLetterRecord.msg_id))).scalars().all())
        handled = set((await session.execute(select(HandledEvent.event_id))).scalars().all())
    assert outbox == kept and letters == kept
    assert handled == {"preprocess-file_2", "x-zo_%ë-1"}
