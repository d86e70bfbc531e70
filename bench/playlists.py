"""Smart playlists at scale: re-evaluating one over 100k photos, and the delay from a
metadata update to ``media.playlist.updated`` with 10k smart playlists in the database.

Run with ``make bench`` (or ``.venv/bin/python bench/playlists.py --help``). Parts:

- setup (cached): a PostgreSQL cluster of its own with ``--rows`` photos made by
  bench/metadata.py's generator (170k rows put ≈100k in ``org_bench``, the organization
  measured here), then ``--playlists`` smart playlists in ``org_bench`` with a realistic
  mix of criteria (scenes, labels, objects, colours, quality and time, camera, place,
  faces, everything), 99% owned by members (their own photos) and 1% by the admin (every
  photo of the organization), each filled by the service's own ``refill_smart``. Plus
  ``--markers`` admin playlists on a label no photo has, which the delay part toggles.
  Kept in ``~/.cache/media-bench`` (``/var/tmp`` as root) until the generator version, the
  sizes or the migration head change; ``--regenerate`` rebuilds it.
- ``reevaluate``: admin-owned playlists over the whole organization, each call in one
  committed unit of work: ``PlaylistService`` as the API runs it (create: the first fill;
  refresh with nothing changed; a criteria change), each including the response body (the
  count and the first 1,000 photos in order), and the re-evaluation alone
  (``refill_smart``, nothing changed).
- ``check``: ``check_photo_matches_playlists`` for random photos of the organization, in
  one unit of work each (what the consumer runs, less the bus): the first one loads and
  indexes the rules, the rest use the cache (with how many rules each photo was checked
  against); then the check right after one smart playlist's criteria changed (reloads
  that one).
- ``delay``: the service's background machinery (outbox relay, bus, consumers) on the
  in-process bus (``--bus memory``) or a NATS JetStream server (``--bus nats``, started from
  the test harness): an AI result committed for a random photo that adds (or removes) the
  marker label, and the time until the first and the last of the ``--markers``
  ``media.playlist.updated`` events it causes arrive at a durable consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson
import structlog
from sqlalchemy import Table, delete, func, insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the PostgreSQL and NATS harness
sys.path.insert(0, str(ROOT / "bench"))  # metadata.py's generator and cluster

import metadata as mb  # noqa: E402
from media_service.auth.principal import Principal, Role  # noqa: E402
from media_service.config import Settings  # noqa: E402
from media_service.db.base import utcnow  # noqa: E402
from media_service.db.uow import unit_of_work  # noqa: E402
from media_service.events import Delivery  # noqa: E402
from media_service.ids import new_id  # noqa: E402
from media_service.media.models import MediaFile  # noqa: E402
from media_service.metadata.criteria import Criteria  # noqa: E402
from media_service.metadata.models import PhotoMetadata  # noqa: E402
from media_service.metadata.service import MetadataService  # noqa: E402
from media_service.playlists.content import PlaylistContent  # noqa: E402
from media_service.playlists.models import Playlist, PlaylistItem, PlaylistType  # noqa: E402
from media_service.playlists.schemas import PlaylistCreate, PlaylistUpdate  # noqa: E402
from media_service.playlists.service import PlaylistService  # noqa: E402
from media_service.playlists.smart import SmartPlaylists, SmartRuleCache  # noqa: E402
from media_service.runtime import start_background  # noqa: E402
from media_service.state import ServiceState  # noqa: E402

from harness.nats import start_nats  # noqa: E402

VERSION = 1  # bump when the generated playlists change: the cached cluster is rebuilt
ORG = "org_bench"
ADMIN = Principal("admin_bench", ORG, frozenset({Role.ADMIN}))
MARKER = "bench-marker"
MARKER_SOURCE = "bench"
FILL_BATCH = 100


# -- the playlists -------------------------------------------------------------------------------


def _names(rng: np.random.Generator, vocabulary: dict[str, float], most: int) -> list[str]:
    names = list(vocabulary)
    weights = np.array(list(vocabulary.values()))
    count = int(rng.integers(1, most + 1))
    picked = rng.choice(len(names), count, replace=False, p=weights / weights.sum())
    return sorted(names[int(i)] for i in picked)


def _year(rng: np.random.Generator) -> dict[str, str]:
    start = mb.FIRST_UPLOAD + timedelta(days=float(rng.uniform(0, (mb.YEARS - 1) * 365)))
    return {"from": start.isoformat(), "to": (start + timedelta(days=365)).isoformat()}


def _best_of_a_year(rng: np.random.Generator) -> dict[str, Any]:
    return {"quality": {"min": round(float(rng.uniform(0.7, 0.9)), 2)}, "taken": _year(rng)}


def _camera(rng: np.random.Generator) -> dict[str, Any]:
    make, model = mb.CAMERAS[int(rng.integers(0, 6))][:2]  # the phones: common models
    return {"camera": {"make": make, "model": model}}


def _place(rng: np.random.Generator) -> dict[str, Any]:
    _, latitude, longitude = mb.CITIES[int(rng.integers(0, len(mb.CITIES)))]
    return {"near": {"latitude": latitude, "longitude": longitude, "radius_km": 25}}


KINDS: dict[str, tuple[float, Callable[[np.random.Generator], dict[str, Any]]]] = {
    # kind: (share, criteria maker)
    "scene": (0.30, lambda rng: {"scenes": {"any": _names(rng, mb.SCENES, 2)}}),
    "labels": (0.15, lambda rng: {"labels": {"all": _names(rng, mb.LABELS, 2)}}),
    "object": (0.10, lambda rng: {"objects": {"any": _names(rng, mb.OBJECTS, 1)}}),
    "colour": (
        0.10,
        lambda rng: {"colors": {"any": _names(rng, mb.COLOURS, 1)}, "orientation": ["landscape"]},
    ),
    "best of a year": (0.10, _best_of_a_year),
    "camera": (0.05, _camera),
    "place": (0.05, _place),
    "faces": (0.05, lambda rng: {"has_faces": True, "faces": {"min": 2}}),
    "recent": (0.05, lambda rng: {"taken": {"from": _year(rng)["from"]}}),
    "everything": (0.05, lambda rng: {}),
}


def playlist_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The smart playlists: deterministic for the arguments."""
    rng = np.random.default_rng([args.seed, 42])
    pop = mb.population(args.rows, args.users, args.seed)
    members = [pop.user_ids[int(i)] for i in pop.users_of(ORG)]
    shares = np.array([share for share, _ in KINDS.values()])
    kinds = rng.choice(list(KINDS), args.playlists, p=shares / shares.sum())
    now = utcnow()
    rows = []
    for n, kind in enumerate(kinds):
        criteria = Criteria.model_validate(KINDS[str(kind)][1](rng))
        admin = rng.random() < 0.01
        owner, roles = (
            (ADMIN.subject, ["admin"]) if admin else (str(rng.choice(members)), ["member"])
        )
        rows.append(_row(f"{kind} {n}", owner, roles, criteria, now))
    marker = Criteria.model_validate({"labels": {"any": [MARKER]}})
    rows += [
        _row(f"marker {n}", ADMIN.subject, ["admin"], marker, now) for n in range(args.markers)
    ]
    return rows


def _row(
    name: str, owner: str, roles: list[str], criteria: Criteria, now: datetime
) -> dict[str, Any]:
    return {
        "playlist_id": new_id("pl"), "user_id": owner, "organization_id": ORG,
        "owner_roles": roles, "shared": False, "name": name, "description": None,
        "playlist_type": PlaylistType.SMART,
        "smart_criteria": criteria.model_dump(mode="json", exclude_none=True),
        "curation": None, "shuffle": False, "loop": True, "transition_duration": 5,
        "created_at": now, "updated_at": now,
    }  # fmt: skip


async def fill_playlists(state: ServiceState, args: argparse.Namespace) -> dict[str, float]:
    """Replace every playlist of the bench database with the generated ones, filled."""
    steps: dict[str, float] = {}
    rows = playlist_rows(args)
    started = time.perf_counter()
    async with unit_of_work(state.sessions) as session:
        await session.execute(delete(Playlist))
        await session.execute(insert(cast(Table, Playlist.__table__)), rows)
    steps["insert playlists"] = time.perf_counter() - started
    started = time.perf_counter()
    ids = [row["playlist_id"] for row in rows]
    for start in range(0, len(ids), FILL_BATCH):
        async with unit_of_work(state.sessions) as session:
            content = PlaylistContent(session, state)
            await content.repository.bump_generation(ORG)
            for playlist in await content.repository.get_many(ids[start : start + FILL_BATCH]):
                await content.refill_smart(playlist)
        print(f"\r  filled {min(start + FILL_BATCH, len(ids)):,} / {len(ids):,}", end="",
              file=sys.stderr, flush=True)  # fmt: skip
    print(file=sys.stderr)
    steps["fill (refill_smart each)"] = time.perf_counter() - started
    return steps


def ensure_playlists(cluster: mb.Cluster, args: argparse.Namespace) -> dict[str, float]:
    marker = cluster.root / "bench-playlists.json"
    wanted = {
        "version": VERSION,
        "playlists": args.playlists,
        "markers": args.markers,
        "rows": args.rows,
        "seed": args.seed,
        "head": asyncio.run(mb.migration_head()),
    }
    if not args.regenerate and marker.exists() and json.loads(marker.read_text()) == wanted:
        return {}
    print(f"generating {args.playlists:,} smart playlists", file=sys.stderr)
    steps = asyncio.run(_with_state(cluster.url(), args, fill_playlists))
    marker.write_text(json.dumps(wanted))
    return steps


# -- the service ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def service_state(url: str, events_url: str = "memory://") -> AsyncIterator[ServiceState]:
    with tempfile.TemporaryDirectory(prefix="bench-playlists-") as tmp:
        settings = Settings(
            database_url=url, data_dir=Path(tmp), storage_url=f"file://{tmp}/blobs",
            events_url=events_url, preprocess_uploads=False,
            jwt_secret="bench-secret-bench-secret-bench-secret",  # noqa: S106 - throwaway
        )  # fmt: skip
        state = ServiceState.build(settings)
        try:
            yield state
        finally:
            await state.close()


async def _with_state(url: str, args: argparse.Namespace, work: Callable[..., Any]) -> Any:
    async with service_state(url) as state:
        return await work(state, args)


async def organisation_photos(state: ServiceState) -> list[str]:
    async with state.sessions() as session:
        statement = select(PhotoMetadata.file_id).where(PhotoMetadata.organization_id == ORG)
        return sorted((await session.execute(statement)).scalars().all())


async def marker_playlists(state: ServiceState) -> set[str]:
    async with state.sessions() as session:
        statement = select(Playlist.playlist_id).where(Playlist.name.startswith("marker "))
        return set((await session.execute(statement)).scalars().all())


async def _count(session: Any, table: type[Any]) -> int:
    return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def counts(state: ServiceState) -> dict[str, int]:
    async with state.sessions() as session:
        return {
            "photos in org_bench": len(await organisation_photos(state)),
            "smart playlists": await _count(session, Playlist),
            "playlist items": await _count(session, PlaylistItem),
        }  # fmt: skip


# -- re-evaluation ---------------------------------------------------------------------------------

REEVALUATE = {  # name: (criteria, changed criteria)
    "scenes any outdoor (≈30%)": (
        {"scenes": {"any": ["outdoor"]}}, {"scenes": {"any": ["outdoor", "park"]}}
    ),
    "quality ≥ 0.8, landscape": ({"quality": {"min": 0.8}, "orientation": ["landscape"]},
                                 {"quality": {"min": 0.75}, "orientation": ["landscape"]}),
    "labels all person+dog (rare)": (
        {"labels": {"all": ["person", "dog"]}}, {"labels": {"all": ["dog"]}}
    ),
    "everything (100%)": ({}, {"processed": True}),
}  # fmt: skip


@dataclass
class Timings:
    ms: dict[str, list[float]] = field(default_factory=dict)
    photos: dict[str, int] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.ms.setdefault(name, []).append((time.perf_counter() - started) * 1000)


async def measure_reevaluation(state: ServiceState, args: argparse.Namespace) -> dict[str, Timings]:
    """Per criteria and run: create through the API, re-evaluate alone (nothing changed),
    refresh through the API (nothing changed), change the criteria through the API."""
    results = {}
    for name, (first, second) in REEVALUATE.items():
        timings = results[name] = Timings()
        for _ in range(args.runs):
            body = PlaylistCreate(name="bench", playlist_type=PlaylistType.SMART,
                                  smart_criteria=Criteria.model_validate(first))  # fmt: skip
            with timings.timed("API create (first fill + response)"):
                async with unit_of_work(state.sessions) as session:
                    created = await PlaylistService(session, state).create(ADMIN, body)
            timings.photos["API create (first fill + response)"] = created.photo_count
            pid = created.playlist_id
            with timings.timed("re-evaluation alone, nothing changed"):
                async with unit_of_work(state.sessions) as session:
                    content = PlaylistContent(session, state)
                    await content.repository.bump_generation(ORG)
                    playlist = await content.repository.get(pid)
                    assert playlist is not None
                    assert not await content.refill_smart(playlist)
            with timings.timed("API refresh, nothing changed"):
                async with unit_of_work(state.sessions) as session:
                    await PlaylistService(session, state).refresh(ADMIN, pid)
            change = PlaylistUpdate(smart_criteria=Criteria.model_validate(second))
            with timings.timed("API criteria changed"):
                async with unit_of_work(state.sessions) as session:
                    changed = await PlaylistService(session, state).update(ADMIN, pid, change)
            timings.photos["API criteria changed"] = changed.photo_count
            async with unit_of_work(state.sessions) as session:
                await PlaylistService(session, state).delete(ADMIN, pid)
        print(f"  reevaluate {name}: done", file=sys.stderr)
    return results


# -- the per-photo check --------------------------------------------------------------------------


async def measure_check(state: ServiceState, args: argparse.Namespace) -> dict[str, Any]:
    photos = await organisation_photos(state)
    rng = np.random.default_rng([args.seed, 9])
    cache = SmartRuleCache()
    cold: list[float] = []
    warm: list[float] = []
    candidates: list[int] = []
    for n in range(args.checks + 1):
        file_id = photos[int(rng.integers(0, len(photos)))]
        started = time.perf_counter()
        async with unit_of_work(state.sessions) as session:
            upkeep = SmartPlaylists(session, state, cache)
            await upkeep.check_photo_matches_playlists(file_id)
            row = await session.get(PhotoMetadata, file_id)
            file = await session.get(MediaFile, file_id)
        (cold if n == 0 else warm).append((time.perf_counter() - started) * 1000)
        assert row is not None and file is not None
        index = await _index(state, cache)
        candidates.append(len(index.candidates(row, file.owner_id)))
    index = await _index(state, cache)
    reload = []
    for n in range(5):  # one playlist's rule changes: the next check reloads what changed
        rule = index.rules[sorted(index.rules)[n]]
        flipped = "asc" if rule.criteria.sort.direction == "desc" else "desc"
        resorted = rule.criteria.model_copy(
            update={"sort": rule.criteria.sort.model_copy(update={"direction": flipped})}
        )
        async with unit_of_work(state.sessions) as session:
            await PlaylistService(session, state).update(
                ADMIN, rule.playlist_id, PlaylistUpdate(smart_criteria=resorted)
            )
        file_id = photos[int(rng.integers(0, len(photos)))]
        started = time.perf_counter()
        async with unit_of_work(state.sessions) as session:
            await SmartPlaylists(session, state, cache).check_photo_matches_playlists(file_id)
        reload.append((time.perf_counter() - started) * 1000)
    return {"cold": cold, "warm": warm, "reload": reload, "candidates": candidates,
            "rules": len(index)}  # fmt: skip


async def _index(state: ServiceState, cache: SmartRuleCache) -> Any:
    async with unit_of_work(state.sessions) as session:
        content = PlaylistContent(session, state)
        return await cache.index(content.repository, ORG, content.media.reads_only_own)


# -- the delay from a metadata update to the playlist events -------------------------------------


async def measure_delay(
    url: str, events_url: str, args: argparse.Namespace
) -> dict[str, list[float]]:
    async with service_state(url, events_url) as state:
        arrived: list[tuple[float, dict[str, Any]]] = []

        async def on_event(delivery: Delivery) -> None:
            event = orjson.loads(delivery.payload)
            if event["playlist_id"] in markers:
                arrived.append((time.perf_counter(), event))

        async def dead(_: object) -> None:
            return None

        await start_background(state)
        await state.bus.subscribe(f"bench-tap-{new_id('x')[-8:]}", ["media.playlist.updated"],
                                  on_event, on_dead_letter=dead)  # fmt: skip
        photos = await organisation_photos(state)
        markers = await marker_playlists(state)
        rng = np.random.default_rng([args.seed, 11])
        first: list[float] = []
        last: list[float] = []
        marked: str | None = None
        for trial in range(args.trials * 2):
            adding = marked is None
            file_id = photos[int(rng.integers(0, len(photos)))] if adding else marked
            assert file_id is not None
            arrived.clear()
            async with unit_of_work(state.sessions) as session:
                service = MetadataService(session, state)
                row = await service.repository.get(file_id)
                assert row is not None
                await service.apply_ai_results(
                    row, MARKER_SOURCE, {"ai_labels": [MARKER] if adding else []}
                )
            committed = time.perf_counter()
            async with asyncio.timeout(60):
                while len(arrived) < args.markers:
                    await asyncio.sleep(0.0005)
            if trial >= 2:  # the first round trip warms the rule cache and connections
                first.append((arrived[0][0] - committed) * 1000)
                last.append((arrived[args.markers - 1][0] - committed) * 1000)
            marked = file_id if adding else None
        return {"first event": first, "last event": last}


# -- report --------------------------------------------------------------------------------------


def _photos(timings: Timings, step: str) -> str:
    return f"{timings.photos[step]:,} photos" if step in timings.photos else ""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def report(title: str, rows: list[tuple[str, list[float], str]]) -> None:
    print(f"\n### {title}\n")
    print("| case | runs | p50 ms | p95 ms | max ms | notes |\n|---|---:|---:|---:|---:|---|")
    for name, values, notes in rows:
        p50, p95 = percentile(values, 50), percentile(values, 95)
        print(f"| {name} | {len(values)} | {p50:.1f} | {p95:.1f} "
              f"| {max(values):.1f} | {notes} |")  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--parts", default="reevaluate,check,delay")
    parser.add_argument("--rows", type=int, default=170_000, help="photos in all 4 orgs")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--playlists", type=int, default=10_000)
    parser.add_argument("--markers", type=int, default=10, help="playlists the delay toggles")
    parser.add_argument("--runs", type=int, default=5, help="reevaluate: runs per criteria")
    parser.add_argument("--checks", type=int, default=200, help="check: photos checked")
    parser.add_argument("--trials", type=int, default=30, help="delay: add+remove pairs")
    parser.add_argument("--bus", default="memory", choices=["memory", "nats", "both"])
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()
    args.parts = set(args.parts.split(","))
    return args


def cluster_dir(args: argparse.Namespace) -> Path:
    default = mb.default_cluster_dir(args.rows, args.seed)
    return default.with_name(f"pg-playlists-v{VERSION}-{args.rows}-{args.seed}")


def main() -> None:
    args = parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    spec = mb.Spec(args.rows, args.users, args.seed)
    cluster = mb.Cluster(cluster_dir(args))
    try:
        steps = mb.ensure_database(cluster, spec, args.regenerate)
        steps |= ensure_playlists(cluster, args)
        if steps:
            print("\n### Setup\n\n| step | seconds |\n|---|---:|")
            for name, seconds in steps.items():
                print(f"| {name} | {seconds:.1f} |")
        sizes = asyncio.run(_with_state(cluster.url(), args, lambda state, _: counts(state)))
        print("\n### Data\n\n| what | count |\n|---|---:|")
        for name, count in sizes.items():
            print(f"| {name} | {count:,} |")
        if "reevaluate" in args.parts:
            results = asyncio.run(_with_state(cluster.url(), args, measure_reevaluation))
            rows = [
                (f"{name}: {step}", values, _photos(timings, step))
                for name, timings in results.items()
                for step, values in timings.ms.items()
            ]  # fmt: skip
            report(f"Re-evaluating one admin-owned smart playlist over the organization "
                   f"({sizes['photos in org_bench']:,} photos, {sizes['smart playlists']:,} "
                   "smart playlists in the database)", rows)  # fmt: skip
        if "check" in args.parts:
            found = asyncio.run(_with_state(cluster.url(), args, measure_check))
            checked = statistics.mean(found["candidates"])
            report(f"check_photo_matches_playlists ({found['rules']:,} smart rules)", [
                ("first photo (loads and indexes the rules)", found["cold"], ""),
                ("next photos (cached rules)", found["warm"],
                 f"rules checked per photo: mean {checked:.0f}, max {max(found['candidates'])}"),
                ("after one smart playlist's criteria changed (reloads it)", found["reload"], ""),
            ])  # fmt: skip
        if "delay" in args.parts:
            buses = ["memory", "nats"] if args.bus == "both" else [args.bus]
            for bus in buses:
                delay = asyncio.run(_delay(cluster.url(), bus, args))
                report(f"Metadata update committed → media.playlist.updated received ({bus} bus, "
                       f"{args.markers} playlists change per update)",
                       [(name, values, "") for name, values in delay.items()])  # fmt: skip
    finally:
        cluster.stop()


async def _delay(url: str, bus: str, args: argparse.Namespace) -> dict[str, list[float]]:
    if bus == "memory":
        return await measure_delay(url, "memory://", args)
    with tempfile.TemporaryDirectory(prefix="bench-nats-") as tmp, start_nats(Path(tmp)) as server:
        return await measure_delay(url, server.events_url, args)


if __name__ == "__main__":
    main()
