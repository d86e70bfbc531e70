"""Events end to end (commit → outbox → NATS → consumer handled) against raw nats-py.

Run with ``make bench`` (or ``.venv/bin/python bench/events.py --help``). It starts a
private PostgreSQL (``tests/harness/postgres.py``) and a NATS server with JetStream
(``tests/harness/nats.py``; ``sync_interval: always`` unless ``--nats-sync default``) and,
in rounds that alternate the order of the cases, measures (uvloop, as ``media-service
serve`` and ``worker`` run):

- ``raw``: nats-py publishes the same ``file.uploaded`` messages (same bytes, same
  ``Nats-Msg-Id``) to the JetStream stream with up to ``--window`` acknowledgements
  outstanding, while a durable pull consumer fetches and acknowledges each one: the rate
  at which JetStream itself takes and gives these messages here;
- ``e2e``: ``--producers`` tasks commit the same events to the outbox (one transaction
  per ``--per-commit`` events) while the real ``OutboxRelay`` (woken on commit) and
  ``NatsEventBus`` carry them to an idempotent consumer whose effect and record commit on
  PostgreSQL; the time runs from the first commit to the last handled event. The
  consumer runs in the producers' process (``e2e``, as ``serve`` alone would), or, for
  each N of ``--procs``, in N processes of its own (``e2e-Np``, as ``media-service
  worker`` processes would) that share the durable consumer and report their handle
  times back through a pipe; the relay stays with the producers;
- the stages ``relay`` (a filled outbox to NATS) and ``consumer`` (a filled stream to
  handled), in one process.

Then ``latency``, for each placement of the consumer: one event per transaction at a
steady ``--rate`` for ``--seconds``, and the time from each commit's return to the moment
its consumer's transaction committed (``time.perf_counter`` is CLOCK_MONOTONIC, the same
clock in every process), with the CPU that cost and how busy the whole machine was.
``--rounds 0`` measures latency only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.js.errors
import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test harness starts the servers

from media_service.db.engine import create_engine, create_session_factory  # noqa: E402
from media_service.db.migrate import upgrade_to_head  # noqa: E402
from media_service.db.models import metadata  # noqa: E402
from media_service.db.uow import unit_of_work  # noqa: E402
from media_service.events import (  # noqa: E402
    Delivery,
    DeliveryPolicy,
    FileUploaded,
    OutboxRelay,
    dead_letter_recorder,
    idempotent,
    record_event,
    wake_on_commit,
)
from media_service.events.consumers import BATCHED_IN_FLIGHT  # noqa: E402
from media_service.events.nats import EVENTS_STREAM, NatsEventBus  # noqa: E402
from media_service.runtime import tune_collector  # noqa: E402

from harness.nats import NatsServer, start_nats  # noqa: E402
from harness.postgres import start_postgres, unique_database_name  # noqa: E402

Sessions = async_sessionmaker[AsyncSession]
CONSUMER = "bench-consumer"
IN_FLIGHT = [BATCHED_IN_FLIGHT]  # the consumer's prefetch (--in-flight), as start_consumer


def make_events(count: int) -> list[FileUploaded]:
    return [
        FileUploaded(
            file_id=f"file_bench_{uuid.uuid4().hex}", user_id="bench", organization_id="bench",
            owner_id="bench", owner_type="Other", file_type="Image", content_type="image/jpeg",
            file_size=1000 + n, sha256="ab" * 32,
        )
        for n in range(count)
    ]  # fmt: skip


# -- setup -----------------------------------------------------------------------------------


async def reset(sessions: Sessions, server: NatsServer) -> None:
    """Empty tables and stream: every case starts from nothing."""
    names = ", ".join(table.name for table in metadata.sorted_tables)
    async with sessions.begin() as session:
        await session.execute(text(f"TRUNCATE {names}"))
    client = await nats.connect(server.url)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await client.jetstream().delete_stream(EVENTS_STREAM.name)
    finally:
        await client.close()


# -- raw nats-py -----------------------------------------------------------------------------


async def run_raw(server: NatsServer, events: list[FileUploaded], window: int) -> float:
    """Seconds for nats-py to publish ``events`` to JetStream and consume them (acked)."""
    client = await nats.connect(server.url)
    js = client.jetstream()
    await js.add_stream(EVENTS_STREAM.config())
    await js.add_consumer(
        EVENTS_STREAM.name,
        ConsumerConfig(
            durable_name="bench-raw", ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL, filter_subject="file.uploaded",
            max_ack_pending=10_000,
        ),
    )  # fmt: skip
    subscription = await js.pull_subscribe_bind("bench-raw", stream=EVENTS_STREAM.name)
    bodies = [(e.event_id, e.to_json()) for e in events]
    slots = asyncio.Semaphore(window)

    async def publish_one(msg_id: str, body: bytes) -> None:
        try:
            await js.publish("file.uploaded", body, headers={"Nats-Msg-Id": msg_id})
        finally:
            slots.release()

    async def publish_all() -> None:
        tasks = []
        for msg_id, body in bodies:
            await slots.acquire()
            tasks.append(asyncio.create_task(publish_one(msg_id, body)))
        await asyncio.gather(*tasks)

    async def consume_all() -> None:
        received = 0
        while received < len(bodies):
            with contextlib.suppress(nats.errors.TimeoutError):
                for message in await subscription.fetch(min(window, 256), timeout=1):
                    await message.ack()
                    received += 1

    started = time.perf_counter()
    await asyncio.gather(publish_all(), consume_all())
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


# -- the service's pipeline ------------------------------------------------------------------


@dataclass
class Pipeline:
    """Relay + NATS bus + idempotent consumer on PostgreSQL; records handle times.

    ``consume=False`` leaves the consumer to other processes (see :func:`run_child`);
    ``relay=False`` leaves the outbox alone.
    """

    sessions: Sessions
    nats_url: str
    handled_at: dict[str, float] = field(default_factory=dict)
    relay: bool = True
    consume: bool = True
    in_flight: int = field(default_factory=lambda: IN_FLIGHT[0])
    expected: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Pipeline:
        self.bus = NatsEventBus(self.nats_url)
        await self.bus.start()

        @idempotent(CONSUMER, FileUploaded)
        async def apply(session: AsyncSession, event: FileUploaded) -> None:
            await session.execute(text("SELECT 1"))  # an effect's round trip

        handler = apply.bind(self.sessions)

        async def timed(delivery: Delivery) -> None:
            await handler(delivery)  # returns once the effect and its record committed
            self.handled_at[delivery.msg_id or ""] = time.perf_counter()
            if self.expected and len(self.handled_at) >= self.expected:
                self.done.set()

        if self.consume:  # what start_consumer does, with the handler timed
            await self.bus.subscribe(
                CONSUMER,
                apply.subjects,
                timed,
                on_dead_letter=dead_letter_recorder(self.sessions),
                policy=DeliveryPolicy(max_in_flight=self.in_flight),
            )
        self.outbox_relay = OutboxRelay(self.sessions, self.bus)
        if self.relay:
            wake_on_commit(self.sessions, self.outbox_relay.notify)
            self.outbox_relay.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.outbox_relay.stop()
        await self.bus.close()
        wake_on_commit(self.sessions, lambda: None)

    async def wait(self, count: int, timeout: float) -> None:
        self.expected = count
        if len(self.handled_at) < count:
            async with asyncio.timeout(timeout):
                await self.done.wait()


# -- consumers in their own processes --------------------------------------------------------


async def run_child(db_url: str, nats_url: str) -> None:
    """A consumer process (``--child``), as ``media-service worker`` runs consumers: prints
    ``ready`` once subscribed, handles until its stdin closes, then prints one JSON line
    with its handle times (``time.perf_counter`` is CLOCK_MONOTONIC, shared by all
    processes on the machine) and its CPU seconds."""
    engine = create_engine(db_url)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        before = _cpu_seconds()
        async with Pipeline(create_session_factory(engine), nats_url, relay=False) as pipeline:
            print("ready", flush=True)
            await reader.read()  # until EOF: the parent saw every event handled
        report = {"handled": pipeline.handled_at, "cpu": _cpu_seconds() - before}
        print(json.dumps(report), flush=True)
    finally:
        await engine.dispose()


@dataclass
class Consumers:
    """``count`` consumer processes sharing the durable consumer, and the parent's wait."""

    sessions: Sessions
    db_url: str
    nats_url: str
    count: int
    handled_at: dict[str, float] = field(default_factory=dict)
    cpu: float = 0.0

    async def __aenter__(self) -> Consumers:
        self.children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--child",
                self.db_url,
                self.nats_url,
                "--in-flight",
                str(IN_FLIGHT[0]),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(self.count)
        ]
        for child in self.children:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), timeout=60)
            if line.strip() != b"ready":
                raise RuntimeError(f"consumer process did not start: {line!r}")
        return self

    async def wait(self, count: int, timeout: float) -> None:
        """Poll ``handled_events`` until ``count`` rows, then collect the children's times."""
        query = text("SELECT count(*) FROM handled_events WHERE consumer = :c")
        async with asyncio.timeout(timeout):
            while True:
                async with self.sessions() as session:
                    if (await session.scalar(query, {"c": CONSUMER}) or 0) >= count:
                        break
                await asyncio.sleep(0.05)  # only when the parent stops waiting, not the times
        await self._collect()

    async def _collect(self) -> None:
        for child in self.children:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.close()
            report = json.loads(await asyncio.wait_for(child.stdout.read(), timeout=60))
            self.handled_at.update(report["handled"])
            self.cpu += report["cpu"]
            await child.wait()
        self.children = []

    async def __aexit__(self, *_exc: object) -> None:
        for child in self.children:  # only on failure: the normal end is _collect
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()


async def commit(sessions: Sessions, events: list[FileUploaded]) -> float:
    async with unit_of_work(sessions) as session:
        for event in events:
            record_event(session, event)
    return time.perf_counter()


@contextlib.asynccontextmanager
async def pipeline_of(
    sessions: Sessions, server: NatsServer, db_url: str, procs: int
) -> AsyncIterator[Pipeline | Consumers]:
    """Relay in this process; the consumer here too (``procs`` 0) or in ``procs``
    processes of its own. Yields what to wait on, with ``handled_at``."""
    async with contextlib.AsyncExitStack() as stack:
        consumers = None
        if procs:
            consumers = Consumers(sessions, db_url, server.url, procs)
            await stack.enter_async_context(consumers)
        pipeline = Pipeline(sessions, server.url, consume=not procs)
        await stack.enter_async_context(pipeline)
        yield consumers or pipeline


async def run_e2e(
    sessions: Sessions,
    server: NatsServer,
    events: list[FileUploaded],
    producers: int,
    per: int,
    db_url: str = "",
    procs: int = 0,
) -> tuple[float, float]:
    """Seconds from the first commit to the last handled event, and the CPU seconds of
    the consumer processes (0 when the consumer runs in this process)."""
    chunks = [events[i : i + per] for i in range(0, len(events), per)]
    async with pipeline_of(sessions, server, db_url, procs) as pipeline:
        queue: asyncio.Queue[list[FileUploaded]] = asyncio.Queue()
        for chunk in chunks:
            queue.put_nowait(chunk)

        async def produce() -> None:
            while not queue.empty():
                await commit(sessions, queue.get_nowait())

        started = time.perf_counter()
        await asyncio.gather(*(produce() for _ in range(producers)))
        await pipeline.wait(len(events), timeout=300)
    child_cpu = pipeline.cpu if isinstance(pipeline, Consumers) else 0.0
    return max(pipeline.handled_at.values()) - started, child_cpu


async def run_relay_only(
    sessions: Sessions, server: NatsServer, events: list[FileUploaded], per: int
) -> float:
    """Stage: seconds for the relay to move a filled outbox to NATS (acknowledged)."""
    for start in range(0, len(events), per):
        await commit(sessions, events[start : start + per])
    bus = NatsEventBus(server.url)
    await bus.start()
    try:
        relay = OutboxRelay(sessions, bus)
        started = time.perf_counter()
        while await relay.run_once():  # what run() does while rows keep coming
            pass
        return time.perf_counter() - started
    finally:
        await bus.close()


async def run_consumer_only(
    sessions: Sessions, server: NatsServer, events: list[FileUploaded]
) -> float:
    """Stage: seconds for the idempotent consumer to handle a filled stream."""
    client = await nats.connect(server.url)
    js = client.jetstream()
    await js.add_stream(EVENTS_STREAM.config())
    for chunk in range(0, len(events), 256):
        await asyncio.gather(
            *(
                js.publish("file.uploaded", e.to_json(), headers={"Nats-Msg-Id": e.event_id})
                for e in events[chunk : chunk + 256]
            )
        )
    await client.close()
    pipeline = Pipeline(sessions, server.url, relay=False)
    async with pipeline:
        started = time.perf_counter()
        await pipeline.wait(len(events), timeout=300)
        return max(pipeline.handled_at.values()) - started


@dataclass
class Latency:
    latencies: list[float]  # ms, commit to handled
    produced: float  # events/s achieved by the producer
    cpu_parent: float  # CPU s of this process (producers and relay, and the consumer if here)
    cpu_children: float  # CPU s of the consumer processes
    machine_busy: float  # fraction of all CPUs busy (every process on the machine)


async def run_latency(
    sessions: Sessions,
    server: NatsServer,
    rate: float,
    seconds: float,
    db_url: str = "",
    procs: int = 0,
) -> Latency:
    """Commit-to-handled latencies at a steady ``rate``, and what it cost."""
    events = make_events(int(rate * seconds))
    committed: dict[str, float] = {}
    async with pipeline_of(sessions, server, db_url, procs) as pipeline:
        cpu, machine = _cpu_seconds(), _machine_ticks()
        started = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()

        async def one(event: FileUploaded) -> None:
            committed[event.event_id] = await commit(sessions, [event])

        for n, event in enumerate(events):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(event))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        produced = len(events) / (time.perf_counter() - started)
        await pipeline.wait(len(events), timeout=120)
        busy, total = (
            after - before for after, before in zip(_machine_ticks(), machine, strict=True)
        )
        cpu = _cpu_seconds() - cpu
    return Latency(
        [(pipeline.handled_at[k] - committed[k]) * 1000 for k in committed],
        produced,
        cpu,
        pipeline.cpu if isinstance(pipeline, Consumers) else 0.0,
        busy / total if total else 0.0,
    )


def _machine_ticks() -> tuple[int, int]:
    """Busy and total CPU ticks of the whole machine so far (Linux ``/proc/stat``)."""
    try:
        fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


# -- main ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def measure(
    args: argparse.Namespace, sessions: Sessions, server: NatsServer, db_url: str
) -> None:
    Case = Callable[[list[FileUploaded]], Awaitable[tuple[float, float]]]

    def alone(run: Callable[[list[FileUploaded]], Awaitable[float]]) -> Case:
        async def case(events: list[FileUploaded]) -> tuple[float, float]:
            return await run(events), 0.0

        return case

    def e2e(procs: int) -> Case:
        return lambda events: run_e2e(
            sessions, server, events, args.producers, args.per_commit, db_url, procs
        )

    cases: dict[str, Case] = {
        "raw": alone(lambda events: run_raw(server, events, args.window)),
        "e2e": e2e(0),
        **{f"e2e-{n}p": e2e(n) for n in args.procs},
        "relay": alone(lambda events: run_relay_only(sessions, server, events, args.per_commit)),
        "consumer": alone(lambda events: run_consumer_only(sessions, server, events)),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(args.rounds):
        order = list(cases) if round_ % 2 == 0 else list(reversed(cases))
        for name in order:
            await reset(sessions, server)
            events = make_events(args.events)
            before = _cpu_seconds()
            seconds, child_cpu = await cases[name](events)
            times[name].append(seconds)
            cpu[name].append(_cpu_seconds() - before + child_cpu)
            print(f"round {round_ + 1} {name}: {times[name][-1]:.2f} s", file=sys.stderr)
    latency: dict[int, Latency] = {}
    for procs in (0, *args.procs):
        await reset(sessions, server)
        latency[procs] = await run_latency(sessions, server, args.rate, args.seconds, db_url, procs)

    if args.rounds:  # --rounds 0: latency only
        _print_throughput(args, times, cpu)
    print(f"\nLatency commit → handled at {args.rate:.0f} events/s for {args.seconds:.0f} s, "
          f"one event per transaction, consumer in-flight {args.in_flight}\n")  # fmt: skip
    print(
        "| consumer | events | produced/s | p50 ms | p90 ms | p99 ms | max ms "
        "| CPU ms/event: producer+relay process / consumer processes | machine CPU busy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for procs, result in latency.items():
        where = f"{_processes(procs)} of its own" if procs else "in the producer's process"
        row = [percentile(result.latencies, q) for q in (50, 90, 99, 100)]
        count = len(result.latencies)
        split = f"{result.cpu_parent / count * 1000:.2f} / " + (
            f"{result.cpu_children / count * 1000:.2f}" if procs else "–"
        )
        print(f"| {where} | {count} | {result.produced:,.0f} | "
              + " | ".join(f"{value:.1f}" for value in row)
              + f" | {split} | {result.machine_busy:.0%} |")  # fmt: skip


def _print_throughput(
    args: argparse.Namespace, times: dict[str, list[float]], cpu: dict[str, list[float]]
) -> None:
    rates = {name: args.events / statistics.median(values) for name, values in times.items()}
    print(f"\nEvents, {args.events} per case, median of {args.rounds} rounds, NATS sync "
          f"{args.nats_sync}, PostgreSQL, uvloop\n")  # fmt: skip
    print("| case | events/s | vs raw | CPU of the bench's processes, ms/event |")
    print("|---|---:|---:|---:|")
    labels = {
        "raw": f"raw nats-py publish + consume (window {args.window})",
        "e2e": "e2e commit → outbox → NATS → handled, one process",
        **{f"e2e-{n}p": f"e2e, consumer in {_processes(n)} of its own" for n in args.procs},
        "relay": "stage: relay only (filled outbox → NATS acked)",
        "consumer": "stage: consumer only (filled stream → handled)",
    }
    for name, label in labels.items():
        per_event = statistics.median(cpu[name]) / args.events * 1000
        print(f"| {label} | {rates[name]:,.0f} | {rates[name] / rates['raw']:.0%} "
              f"| {per_event:.2f} |")  # fmt: skip


def _processes(count: int) -> str:
    return "1 process" if count == 1 else f"{count} processes"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=5000, help="events per throughput case")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=256, help="raw: acks outstanding")
    parser.add_argument("--producers", type=int, default=4, help="e2e: committing tasks")
    parser.add_argument("--per-commit", type=int, default=10, help="e2e: events per commit")
    parser.add_argument("--rate", type=float, default=500.0, help="latency: events/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency: duration")
    parser.add_argument("--nats-sync", choices=["always", "default"], default="always")
    parser.add_argument(
        "--procs",
        type=lambda value: [int(n) for n in value.split(",") if n],
        default=[1, 2],
        help="also run the consumer in this many processes of its own (comma list; '' none)",
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=IN_FLIGHT[0],
        help="consumer: messages in hand at once (DeliveryPolicy.max_in_flight)",
    )
    parser.add_argument("--child", nargs=2, metavar=("DB_URL", "NATS_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    IN_FLIGHT[0] = args.in_flight

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # The collector's thresholds as `serve` and `worker` set them (runtime.start_background);
    # frozen here, after the imports, which is less than the service freezes.
    tune_collector()
    if args.child:
        asyncio.run(run_child(*args.child))
        return
    sync = args.nats_sync == "always"
    with (
        tempfile.TemporaryDirectory(prefix="bench-events-") as tmp,
        start_postgres(Path(tmp) / "pg") as postgres,
        start_nats(Path(tmp), sync_always=sync, allow_external=False) as server,
    ):
        url = postgres.create_database(unique_database_name("bench_events"))
        asyncio.run(_run(args, url, server))


async def _run(args: argparse.Namespace, url: str, server: NatsServer) -> None:
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
        await measure(args, create_session_factory(engine), server, url)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    main()
