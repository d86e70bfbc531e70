"""What only the NATS bus does: streams at start-up, the durability check, outages,
crashed consumers and a deleted stream. Plus the choice of bus by URL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig

from events.conftest import POLICY, Recorder, Sessions, eventually
from media_service.events.bus import BusMisconfigured, BusUnavailable
from media_service.events.factory import UnknownEventsScheme, open_event_bus
from media_service.events.memory import MemoryEventBus
from media_service.events.nats import EVENTS_STREAM, NatsEventBus
from media_service.events.nats_pull import _num_delivered

from conftest import delete_stream
from harness.nats import NatsServer, start_nats
from harness.ports import free_port


@pytest.fixture
async def clean_nats(nats_server: NatsServer) -> AsyncIterator[NatsServer]:
    await delete_stream(nats_server.events_url)
    await delete_stream(nats_server.events_url, "OTHER")
    yield nats_server
    await delete_stream(nats_server.events_url, "OTHER")


async def open_bus(url: str, **options: float) -> NatsEventBus:
    bus = NatsEventBus(url, **{"reconnect_wait": 0.1, "pull_expires": 1.0, **options})
    await bus.start()
    return bus


async def test_start_creates_the_stream_on_file_storage(clean_nats: NatsServer) -> None:
    bus = await open_bus(clean_nats.events_url)
    again = await open_bus(clean_nats.events_url)  # an existing stream is fine
    try:
        client = await nats.connect(clean_nats.url)
        info = await client.jetstream().stream_info(EVENTS_STREAM.name)
        await client.close()
        assert info.config.storage == StorageType.FILE
        assert info.config.subjects == ["file.>", "media.>"]
        assert info.config.duplicate_window == 120.0
    finally:
        await bus.close()
        await again.close()


async def test_missing_subject_is_added_to_an_existing_stream(clean_nats: NatsServer) -> None:
    client = await nats.connect(clean_nats.url)
    js = client.jetstream()
    await js.add_stream(
        StreamConfig(name=EVENTS_STREAM.name, subjects=["file.>"], storage=StorageType.FILE)
    )
    bus = await open_bus(clean_nats.events_url)
    try:
        info = await js.stream_info(EVENTS_STREAM.name)
        assert info.config.subjects == ["file.>", "media.>"]
    finally:
        await bus.close()
        await client.close()


async def test_stream_in_memory_is_refused_with_a_fix(clean_nats: NatsServer) -> None:
    client = await nats.connect(clean_nats.url)
    await client.jetstream().add_stream(
        StreamConfig(
            name=EVENTS_STREAM.name, subjects=["file.>", "media.>"], storage=StorageType.MEMORY
        )
    )
    await client.close()
    with pytest.raises(BusMisconfigured, match="not on file: delete it"):
        await open_bus(clean_nats.events_url)


async def test_another_stream_on_our_subjects_is_a_clear_error(clean_nats: NatsServer) -> None:
    client = await nats.connect(clean_nats.url)
    await client.jetstream().add_stream(
        StreamConfig(name="OTHER", subjects=["file.>"], storage=StorageType.FILE)
    )
    await client.close()
    with pytest.raises(BusMisconfigured, match="another stream already capture"):
        await open_bus(clean_nats.events_url)


async def test_check_reports_sync_always(fault_nats: NatsServer, tmp_path: Path) -> None:
    synced = await open_bus(fault_nats.events_url)
    unknown = await open_bus(fault_nats.url)  # no ?monitor=: cannot tell
    lax_server = start_nats(tmp_path / "lax", sync_always=False, allow_external=False)
    lax = await open_bus(lax_server.events_url)
    try:
        health = await synced.check()
        assert health.sync_always is True and health.warnings == ()
        assert await unknown.sync_always() is None
        assert "?monitor=" in (await unknown.check()).warnings[0]
        lax_health = await lax.check()
        assert lax_health.sync_always is False
        assert "sync_interval: always" in lax_health.warnings[0]
    finally:
        for bus in (synced, unknown, lax):
            await bus.close()
        lax_server.close()


async def test_start_without_a_server_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(BusUnavailable, match="cannot connect to NATS"):
        await open_bus(f"nats://127.0.0.1:{free_port()}", connect_timeout=0.5)
    assert time.monotonic() - started < 5


async def test_publish_during_an_outage_fails_then_recovers(fault_nats: NatsServer) -> None:
    bus = await open_bus(fault_nats.events_url, publish_timeout=1.0)
    try:
        fault_nats.stop()
        started = time.monotonic()
        with pytest.raises(BusUnavailable):
            await bus.publish("file.uploaded", b"{}", "m1")
        assert time.monotonic() - started < 3
        with pytest.raises(BusUnavailable):
            await bus.check()
        fault_nats.start()

        async def accepted() -> bool:
            try:
                await bus.publish("file.uploaded", b"{}", "m1")
            except BusUnavailable:
                return False
            return True

        await eventually(accepted, timeout=15)
        assert (await bus.check()).sync_always is True
    finally:
        await bus.close()


async def test_message_of_a_crashed_consumer_is_redelivered_after_ack_wait(
    clean_nats: NatsServer,
) -> None:
    first = await open_bus(clean_nats.events_url)
    ignored = Recorder()
    await first.subscribe(
        "c1", ["file.>"], ignored.handler, on_dead_letter=ignored.on_dead_letter, policy=POLICY
    )
    await first.close()  # the durable consumer stays on the server

    client = await nats.connect(clean_nats.url)
    js = client.jetstream()
    await js.publish("file.uploaded", b"{}", headers={"Nats-Msg-Id": "m1"})
    crashed = await js.pull_subscribe_bind("c1", stream=EVENTS_STREAM.name)
    [taken] = await crashed.fetch(1, timeout=2)  # taken, never acknowledged
    assert taken.metadata.num_delivered == 1
    await client.close()

    second = await open_bus(clean_nats.events_url)
    recorder = Recorder()
    try:
        started = time.monotonic()
        await second.subscribe(
            "c1", ["file.>"], recorder.handler, on_dead_letter=recorder.on_dead_letter,
            policy=POLICY,
        )  # fmt: skip
        [delivery] = await recorder.wait_deliveries(1)
        assert delivery.msg_id == "m1" and delivery.attempt == 2
        assert time.monotonic() - started < POLICY.ack_wait + 2
        assert ignored.deliveries == []
    finally:
        await second.close()


async def test_stream_deleted_under_a_running_bus_is_recreated(clean_nats: NatsServer) -> None:
    bus = await open_bus(clean_nats.events_url)
    recorder = Recorder()
    try:
        await bus.subscribe(
            "c1", ["file.>"], recorder.handler, on_dead_letter=recorder.on_dead_letter,
            policy=POLICY,
        )  # fmt: skip
        await bus.publish("file.uploaded", b"{}", "before")
        await recorder.wait_deliveries(1)

        await delete_stream(clean_nats.events_url)
        await bus.publish("file.uploaded", b"{}", "after")  # recreates the stream
        await recorder.wait_deliveries(2, timeout=10)
        assert recorder.msg_ids() == ["before", "after"]
    finally:
        await bus.close()


# -- choosing a bus ---------------------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite"])
async def test_bus_is_chosen_by_url(sessions: Sessions) -> None:
    assert isinstance(open_event_bus("memory://", sessions), MemoryEventBus)
    nats_bus = open_event_bus("nats://127.0.0.1:4222?monitor=http://127.0.0.1:8222", sessions)
    assert isinstance(nats_bus, NatsEventBus)
    with pytest.raises(UnknownEventsScheme, match="unknown scheme 'kafka'") as caught:
        open_event_bus("kafka://broker:9092", sessions)
    assert isinstance(caught.value, ValueError)
    assert "memory://" in str(caught.value) and "nats://" in str(caught.value)


def test_default_events_url_is_the_in_process_bus() -> None:
    from media_service.config import Settings

    assert Settings.model_fields["events_url"].default == "memory://"


@pytest.mark.parametrize(
    ("reply", "delivered"),
    [
        ("$JS.ACK.MEDIA_EVENTS.c1.3.10.7.1700000000000000000.0", 3),
        ("$JS.ACK.dom.ACCHASH.MEDIA_EVENTS.c1.4.10.7.1700000000000000000.0.token", 4),
    ],
)
def test_delivery_count_is_read_from_either_form_of_the_reply_subject(
    reply: str, delivered: int
) -> None:
    msg = Msg(_client=None, subject="file.uploaded", reply=reply)  # type: ignore[arg-type]
    assert _num_delivered(msg) == msg.metadata.num_delivered == delivered
