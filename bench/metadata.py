"""Photo-metadata search at 1 million photos, and the cost of analysing one photo.

Run with ``make bench`` (or ``.venv/bin/python bench/metadata.py --help``). Three parts:

- ``generate``: a private PostgreSQL (``tests/harness/postgres.py``'s binaries and server
  settings) with the project's migrations, filled by COPY with ``--rows`` realistic
  ``photo_metadata`` rows and their ``media_files`` rows: ``--users`` users of very
  different sizes (a few with ~10k photos, most with a few hundred) in four organizations;
  labels, scenes and objects with Zipf-like frequencies (``beach`` ≈ 5%), scores with two
  decimals, ten years of capture times, 40% with GPS around twelve cities, camera models,
  faces (60% none) and named colours. The cluster is kept in ``~/.cache/media-bench``
  (``/var/tmp`` when running as root, whose home the ``postgres`` user cannot enter),
  keyed by the generator version, row count, seed and migration head; ``--regenerate``
  rebuilds it.
- ``queries``: the criteria of docs/criteria.md through the service's own path
  (``MetadataService.query``: visibility clause, ``compile_where``, keyset cursor, ORM
  rows, pydantic output), each many times with varied parameters, as a member (their own
  photos: a typical user, and one of the ten largest) and as the organization's admin
  (every photo of the organization). It prints p50/p95/p99 against the 50 ms target,
  the time spent in the database, the indexes each plan used, and one
  ``EXPLAIN (ANALYZE, BUFFERS)`` per query and principal, of the exact statement the
  service sent (same text, same parameters). ``--try indexes,scoped`` repeats them with
  candidate indexes created in the bench database (dropped again afterwards), with the
  service as it is and with the change to its conditions that they need.
- ``analysis``: images/s in the service's imaging pool (two worker processes) for the
  decode of a 12 MP JPEG to 1440 px alone, and for ``analyse_photo`` (EXIF, place,
  quality, colours, hash, with and without faces) on the original and on the 1440 px
  preview, as the service runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import orjson
from sqlalchemy import ColumnElement, and_, event, true
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the PostgreSQL harness
sys.path.insert(0, str(ROOT / "bench"))  # preprocess.py's photos, when run from elsewhere

from media_service.auth.principal import Principal, Role  # noqa: E402
from media_service.config import Settings  # noqa: E402
from media_service.db.engine import create_engine  # noqa: E402
from media_service.db.migrate import upgrade_to_head  # noqa: E402
from media_service.imaging.decode import decode, open_image  # noqa: E402
from media_service.imaging.limits import DecodeLimits  # noqa: E402
from media_service.imaging.pool import shared_pool  # noqa: E402
from media_service.media import policy  # noqa: E402
from media_service.metadata.criteria import Criteria  # noqa: E402
from media_service.metadata.models import PhotoMetadata  # noqa: E402
from media_service.metadata.pipeline import PixelSource, analyse_photo  # noqa: E402
from media_service.metadata.service import MetadataService  # noqa: E402
from media_service.state import ServiceState  # noqa: E402

from harness import postgres as pg_harness  # noqa: E402

GENERATOR_VERSION = 1  # bump when the generated data changes: the cached cluster is rebuilt
CACHE = Path.home() / ".cache" / "media-bench"
DATABASE = "bench_metadata"
TARGET_MS = 50.0
CHUNK = 25_000  # rows per COPY task
# Enough memory for the whole data set to stay cached, as PERFORMANCE.md measured; the
# planner's cost settings stay at their defaults, as a stock installation has them.
PG_SETTINGS = {
    "shared_buffers": "2GB",
    "effective_cache_size": "8GB",
    "maintenance_work_mem": "1GB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
}

# -- vocabularies ------------------------------------------------------------------------------
# Per-photo probabilities of the common names; a synthetic tail of rare ones follows each.

SCENES = {
    "outdoor": 0.30, "indoor": 0.25, "city": 0.10, "street": 0.08, "park": 0.07,
    "beach": 0.05, "restaurant": 0.04, "living room": 0.04, "mountain": 0.035,
    "forest": 0.03, "garden": 0.03, "kitchen": 0.025, "lake": 0.02, "snow": 0.02,
    "sunset": 0.02, "office": 0.015, "bedroom": 0.015, "stadium": 0.01, "concert": 0.008,
    "museum": 0.008, "harbor": 0.006, "desert": 0.004, "airport": 0.004, "church": 0.004,
    "waterfall": 0.002, "lighthouse": 0.001, "igloo": 0.0001,
}  # fmt: skip
LABELS = {
    "sky": 0.25, "tree": 0.18, "cloud": 0.12, "plant": 0.12, "building": 0.10,
    "water": 0.10, "grass": 0.10, "food": 0.08, "smile": 0.08, "child": 0.06, "car": 0.06,
    "sea": 0.05, "flower": 0.05, "dog": 0.04, "sand": 0.04, "cat": 0.03, "mountain": 0.03,
    "text": 0.03, "snow": 0.02, "bicycle": 0.015, "bird": 0.015, "cake": 0.01,
    "horse": 0.004, "fireworks": 0.002, "giraffe": 0.0005,
}  # fmt: skip
OBJECTS = {
    "person": 0.35, "chair": 0.10, "car": 0.08, "cup": 0.06, "bottle": 0.05,
    "dining table": 0.04, "dog": 0.035, "potted plant": 0.03, "cell phone": 0.03,
    "cat": 0.025, "book": 0.02, "tv": 0.02, "couch": 0.02, "bicycle": 0.015,
    "handbag": 0.015, "umbrella": 0.01, "boat": 0.01, "bench": 0.01, "bird": 0.01,
    "laptop": 0.01, "clock": 0.008, "traffic light": 0.008, "bus": 0.006, "pizza": 0.005,
    "cake": 0.005, "horse": 0.003, "surfboard": 0.003, "kite": 0.002, "elephant": 0.001,
}  # fmt: skip
TAILS = {"scene": 40, "label": 250, "object": 20}  # rare names: "scene 7", "label 123"
COLOURS = {
    "grey": 0.18, "black": 0.14, "white": 0.12, "brown": 0.10, "green": 0.08, "beige": 0.08,
    "blue": 0.06, "red": 0.035, "orange": 0.03, "yellow": 0.025, "pink": 0.015,
    "teal": 0.015, "purple": 0.008,
}  # fmt: skip
COLOUR_HEX = {
    "grey": "#808080", "black": "#141414", "white": "#f2f2f2", "blue": "#2f6fd0",
    "brown": "#7a4a24", "green": "#3c8c3c", "beige": "#dcc8a0", "orange": "#f08c28",
    "red": "#c83232", "yellow": "#f0d23c", "pink": "#f0a0c0", "teal": "#289696",
    "purple": "#783ca0",
}  # fmt: skip
CITIES = [
    ("Berlin, Germany", 52.52, 13.405), ("Paris, France", 48.8566, 2.3522),
    ("London, United Kingdom", 51.5074, -0.1278), ("New York, United States", 40.7128, -74.006),
    ("San Francisco, United States", 37.7749, -122.4194), ("Tokyo, Japan", 35.6762, 139.6503),
    ("Sydney, Australia", -33.8688, 151.2093), ("Barcelona, Spain", 41.3874, 2.1686),
    ("Rome, Italy", 41.9028, 12.4964), ("Amsterdam, Netherlands", 52.3676, 4.9041),
    ("Lisbon, Portugal", 38.7223, -9.1393), ("Cape Town, South Africa", -33.9249, 18.4241),
]  # fmt: skip
# make, model, lens, native width × height, focal length, aperture, share of users
CAMERAS = [
    ("Apple", "iPhone 15 Pro", "iPhone 15 Pro back camera", 4032, 3024, "6.8 mm", "f/1.8", 0.20),
    ("Apple", "iPhone 13", "iPhone 13 back camera", 4032, 3024, "5.1 mm", "f/1.6", 0.18),
    ("Apple", "iPhone 11", "iPhone 11 back camera", 4032, 3024, "4.3 mm", "f/1.8", 0.10),
    ("samsung", "SM-S918B", None, 4000, 3000, "6.3 mm", "f/1.7", 0.12),
    ("Google", "Pixel 8", None, 4080, 3072, "6.9 mm", "f/1.7", 0.08),
    ("Xiaomi", "2201123G", None, 4000, 3000, "5.4 mm", "f/1.9", 0.06),
    ("Canon", "Canon EOS R5", "RF24-105mm F4 L IS USM", 8192, 5464, "50 mm", "f/4.0", 0.06),
    ("Canon", "Canon EOS 80D", "EF-S18-135mm f/3.5-5.6 IS USM", 6000, 4000, "35 mm", "f/5.6", 0.05),
    ("SONY", "ILCE-7M3", "FE 28-70mm F3.5-5.6 OSS", 6000, 4000, "35 mm", "f/4.0", 0.06),
    ("NIKON CORPORATION", "NIKON Z 6", "NIKKOR Z 24-70mm f/4 S", 6048, 4024, "50 mm", "f/4", 0.04),
    ("FUJIFILM", "X-T4", "XF18-55mmF2.8-4 R LM OIS", 6240, 4160, "23 mm", "f/2.8", 0.03),
    ("OLYMPUS CORPORATION", "E-M10MarkIII", None, 4608, 3456, "14 mm", "f/3.5", 0.02),
]  # fmt: skip
ORGS = [("org_bench", 0.60), ("org_bench_2", 0.20), ("org_bench_3", 0.10), ("org_bench_4", 0.10)]
FIRST_UPLOAD = datetime(2016, 1, 1, tzinfo=UTC)
YEARS = 10
SPAN_SECONDS = YEARS * 365.25 * 86400
EARLIEST_TAKEN = datetime(2008, 1, 1, tzinfo=UTC).timestamp()
CENTS = [Decimal(n).scaleb(-2) for n in range(101)]  # 0.00 .. 1.00, NUMERIC(3, 2)
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def vocabulary(head: dict[str, float], tail_name: str) -> tuple[list[str], np.ndarray]:
    """Names and per-photo probabilities: ``head`` then a Zipf tail below its rarest."""
    count = TAILS[tail_name]
    names = [*head, *(f"{tail_name} {n}" for n in range(1, count + 1))]
    tail = 0.003 / np.arange(1, count + 1) ** 1.1
    return names, np.concatenate([np.array(list(head.values())), tail])


# -- the population ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Population:
    """Users (their organization, home city and cameras) and the owner of every row."""

    user_ids: list[str]
    user_org: np.ndarray  # index into ORGS
    home_city: np.ndarray
    cameras: np.ndarray  # users × 2: primary and secondary camera
    row_users: np.ndarray  # rows: the owner of row n (rows are in upload order)

    def users_of(self, org: str) -> np.ndarray:
        index = [name for name, _ in ORGS].index(org)
        return np.flatnonzero(self.user_org == index)

    def photo_counts(self) -> np.ndarray:
        return np.bincount(self.row_users, minlength=len(self.user_ids))


@cache
def population(rows: int, users: int, seed: int) -> Population:
    """Deterministic for its arguments; cheap enough for every process to build its own."""
    rng = np.random.default_rng([seed, 0])
    # Lognormal sizes: most users have a few hundred photos, a few about 10k.
    sizes = np.clip(rng.lognormal(0.0, 1.2, users), 0.05, None)
    sizes = np.maximum(1, np.round(sizes / sizes.sum() * rows)).astype(np.int64)
    sizes = np.minimum(sizes, rows // 100)
    while (excess := int(sizes.sum()) - rows) != 0:  # fix the rounding on the smaller users
        pick = rng.choice(np.flatnonzero(sizes > 1 if excess > 0 else sizes < rows // 100))
        sizes[pick] -= int(np.sign(excess))
    row_users = rng.permutation(np.repeat(np.arange(users, dtype=np.int32), sizes))
    shares = np.array([camera[-1] for camera in CAMERAS])
    return Population(
        user_ids=[f"user_{n:05d}" for n in range(users)],
        user_org=rng.choice(len(ORGS), users, p=[share for _, share in ORGS]),
        home_city=rng.integers(0, len(CITIES), users),
        cameras=rng.choice(len(CAMERAS), (users, 2), p=shares / shares.sum()),
        row_users=row_users,
    )


# -- one chunk of rows -------------------------------------------------------------------------


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _file_id(millis: int, random80: int) -> str:
    """The layout of ``media_service.ids.new_id``, with reproducible random bits."""
    return "file_" + _base32((millis << 80) | random80, 26)


def _bernoulli(rng: np.random.Generator, probabilities: np.ndarray, count: int) -> np.ndarray:
    return rng.random((count, len(probabilities)), dtype=np.float32) < probabilities


def _top_colours(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Five weighted draws without replacement per row (Gumbel top-k) and their shares;
    a row keeps the first three to five (``RowMaker._colours``)."""
    weights = np.log(np.array(list(COLOURS.values())))
    keys = weights + rng.gumbel(size=(count, len(COLOURS)))
    picks = np.argsort(-keys, axis=1)[:, :5]
    shares = np.sort(rng.dirichlet(np.ones(5) * 1.5, count), axis=1)[:, ::-1]
    return picks, shares


@dataclass
class Draws:
    """Everything about a chunk of rows that numpy can draw at once."""

    uploaded: np.ndarray
    taken: np.ndarray
    analysed: np.ndarray
    scores: np.ndarray  # rows × 4: quality, blur, brightness, contrast (cents)
    camera: np.ndarray
    portrait: np.ndarray
    square: np.ndarray
    faces: np.ndarray
    gps: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    city: np.ndarray
    labels: np.ndarray
    scenes: np.ndarray
    objects: np.ndarray
    colours: tuple[np.ndarray, np.ndarray]
    iso: np.ndarray
    random80: list[int]


def draw(rng: np.random.Generator, pop: Population, start: int, count: int, rows: int) -> Draws:
    users = pop.row_users[start : start + count]
    uploaded = (
        FIRST_UPLOAD.timestamp()
        + np.arange(start, start + count) / rows * SPAN_SECONDS
        + rng.uniform(0, 600, count)
    )
    # Most photos are uploaded within days of being taken; a quarter come from old imports.
    recent = rng.random(count) < 0.75
    delay = np.where(
        recent, rng.exponential(2 * 86400, count), rng.uniform(0, uploaded - EARLIEST_TAKEN)
    )
    travel = rng.random(count) < 0.2
    city = np.where(travel, rng.integers(0, len(CITIES), count), pop.home_city[users])
    city_lat = np.array([c[1] for c in CITIES])[city]
    spread_km = rng.normal(0, 8, (count, 2))
    faces = rng.choice(9, count, p=[0.60, 0.20, 0.10, 0.06, 0.015, 0.01, 0.008, 0.004, 0.003])
    return Draws(
        uploaded=uploaded,
        taken=np.where(rng.random(count) < 0.03, np.nan, uploaded - delay),
        analysed=rng.random(count) >= 0.02,
        scores=np.round(
            np.column_stack(
                [
                    rng.beta(5, 2.5, count),
                    rng.beta(4, 2, count),
                    rng.beta(5, 5, count),
                    rng.beta(4, 4, count),
                ]
            )
            * 100
        ).astype(np.int64),
        camera=np.where(rng.random(count) < 0.75, pop.cameras[users, 0], pop.cameras[users, 1]),
        portrait=rng.random(count) < 0.25,
        square=rng.random(count) < 0.05,
        faces=faces,
        gps=rng.random(count) < 0.40,
        lat=city_lat + spread_km[:, 0] / 110.574,
        lon=np.array([c[2] for c in CITIES])[city]
        + spread_km[:, 1] / (111.320 * np.cos(np.radians(city_lat))),
        city=city,
        labels=_bernoulli(rng, vocabulary(LABELS, "label")[1], count),
        scenes=_bernoulli(rng, vocabulary(SCENES, "scene")[1], count),
        objects=_bernoulli(rng, vocabulary(OBJECTS, "object")[1], count),
        colours=_top_colours(rng, count),
        iso=rng.choice([50, 100, 200, 400, 800, 1600, 3200], count),
        random80=[int(value) for value in rng.integers(0, 2**63, count)],
    )


MEDIA_COLUMNS = (
    "file_id", "organization_id", "owner_id", "owner_type", "uploaded_by", "file_name",
    "file_type", "content_type", "file_size", "sha256", "storage_path", "width", "height",
    "status", "processed", "processed_at", "uploaded_at", "updated_at",
)  # fmt: skip
META_COLUMNS = (
    "file_id", "user_id", "organization_id", "camera_make", "camera_model", "lens_model",
    "focal_length", "aperture", "shutter_speed", "iso", "flash_used", "latitude", "longitude",
    "location_name", "photo_taken_at", "photo_taken_offset_minutes", "ai_labels",
    "ai_objects", "ai_scenes", "ai_colors", "label_sources", "face_detection",
    "text_detection", "quality_score", "blur_score", "brightness", "contrast", "face_count",
    "width", "height", "orientation", "perceptual_hash", "full_metadata", "analysed_at",
    "created_at", "updated_at",
)  # fmt: skip


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class RowMaker:
    """Turns one chunk's draws into COPY records for ``media_files`` and ``photo_metadata``."""

    def __init__(self, pop: Population, draws: Draws, start: int) -> None:
        self.pop, self.d, self.start = pop, draws, start
        self.label_names = vocabulary(LABELS, "label")[0]
        self.scene_names = vocabulary(SCENES, "scene")[0]
        self.object_names = vocabulary(OBJECTS, "object")[0]
        self.colour_names = list(COLOURS)

    def rows(self, n: int) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        d = self.d
        user = int(self.pop.row_users[self.start + n])
        owner, org = self.pop.user_ids[user], ORGS[int(self.pop.user_org[user])][0]
        uploaded = _time(float(d.uploaded[n]))
        file_id = _file_id(int(d.uploaded[n] * 1000), d.random80[n])
        camera = CAMERAS[int(d.camera[n])]
        width, height = int(camera[3] or 0), int(camera[4] or 0)
        if d.square[n]:
            width = height
        elif d.portrait[n]:
            width, height = height, width
        media = (
            file_id, org, owner, "User", owner, f"IMG_{(self.start + n) % 10000:04d}.JPG",
            "Image", "image/jpeg", 2_000_000 + d.random80[n] % 6_000_000,
            f"{d.random80[n]:016x}{file_id[-16:]}".ljust(64, "0")[:64],
            f"org/{org}/{file_id}", width, height, "active", bool(d.analysed[n]),
            uploaded if d.analysed[n] else None, uploaded, uploaded,
        )  # fmt: skip
        meta = self._metadata(n, file_id, owner, org, uploaded, (width, height))
        return media, meta

    def _metadata(
        self,
        n: int,
        file_id: str,
        owner: str,
        org: str,
        uploaded: datetime,
        size: tuple[int, int],
    ) -> tuple[Any, ...]:
        d = self.d
        make, model, lens, _, _, focal, aperture, _ = CAMERAS[int(d.camera[n])]
        taken = None if math.isnan(d.taken[n]) else _time(float(d.taken[n]))
        orientation = _orientation(*size)
        analysed = bool(d.analysed[n])
        lists = self._lists(n, orientation) if analysed else ([], [], [], {})
        gps = analysed and bool(d.gps[n])
        lat = Decimal(f"{d.lat[n]:.8f}") if gps else None
        lon = Decimal(f"{d.lon[n]:.8f}") if gps else None
        faces = int(d.faces[n]) if analysed else None
        scores = [CENTS[int(v)] if analysed else None for v in d.scores[n]]
        exif = {
            "Image": {"Make": make, "Model": model, "Orientation": 1, "Software": "17.1"},
            "Photo": {"FNumber": aperture, "ISOSpeedRatings": int(d.iso[n]),
                      "DateTimeOriginal": taken.strftime("%Y:%m:%d %H:%M:%S") if taken else None},
            **({"GPS": {"GPSLatitude": str(lat), "GPSLongitude": str(lon)}} if gps else {}),
        }  # fmt: skip
        return (
            file_id, owner, org, make, model, lens, focal, aperture, "1/250 s", int(d.iso[n]),
            False, lat, lon, CITIES[int(d.city[n])][0] if gps else None, taken,
            120 if taken else None, _json(lists[0]), _json(lists[1]), _json(lists[2]),
            _json(self._colours(n) if analysed else []), _json(lists[3]),
            _json(_faces(faces, size)) if faces else None, None, *scores, faces, *size,
            orientation, f"{d.random80[n]:016x}"[-16:], _json(exif),
            uploaded if analysed else None, uploaded, uploaded,
        )  # fmt: skip

    def _lists(
        self, n: int, orientation: str
    ) -> tuple[list[str], list[str], list[str], dict[str, dict[str, str]]]:
        d, ai = self.d, "ai:vision-2"
        sources = {name: ai for name in _chosen(self.label_names, d.labels[n])}
        if d.faces[n]:
            sources["person"] = "faces"
        if orientation in ("landscape", "portrait"):
            sources[orientation] = "dimensions"
        scenes = _chosen(self.scene_names, d.scenes[n])
        objects = _chosen(self.object_names, d.objects[n])
        label_sources = {
            "labels": sources,
            "scenes": dict.fromkeys(scenes, ai),
            "objects": dict.fromkeys(objects, ai),
        }
        return list(sources), objects, scenes, label_sources

    def _colours(self, n: int) -> list[dict[str, Any]]:
        picks, shares = self.d.colours
        keep = 3 + self.d.random80[n] % 3
        return [
            {"hex": COLOUR_HEX[name], "share": round(float(share), 3), "name": name}
            for name, share in zip(
                (self.colour_names[i] for i in picks[n][:keep]), shares[n][:keep], strict=True
            )
        ]


def _chosen(names: list[str], mask: np.ndarray) -> list[str]:
    return [names[i] for i in np.flatnonzero(mask)]


def _orientation(width: int, height: int) -> str:
    if width == height:
        return "square"
    return "landscape" if width > height else "portrait"


def _faces(count: int, size: tuple[int, int]) -> dict[str, Any]:
    width, height = size
    side = min(width, height) // 8
    faces = [
        {"box": [i * side, height // 3, side, side], "confidence": 0.9,
         "left_eye": [i * side + side * 0.3, height / 3 + side * 0.4],
         "right_eye": [i * side + side * 0.7, height / 3 + side * 0.4]}
        for i in range(count)
    ]  # fmt: skip
    return {"count": count, "faces": faces}


def load_chunk(task: tuple[str, int, int, int, int, int]) -> int:
    """Worker process: draw rows ``[start, start + count)`` and COPY them in."""
    dsn, rows, users, seed, start, count = task
    pop = population(rows, users, seed)
    draws = draw(np.random.default_rng([seed, 1, start]), pop, start, count, rows)
    maker = RowMaker(pop, draws, start)
    media, meta = zip(*(maker.rows(n) for n in range(count)), strict=True)

    async def copy() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.copy_records_to_table(
                "media_files", records=media, columns=MEDIA_COLUMNS
            )
            await connection.copy_records_to_table(
                "photo_metadata", records=meta, columns=META_COLUMNS
            )
        finally:
            await connection.close()

    asyncio.run(copy())
    return count


# -- the cached cluster --------------------------------------------------------------------------


@dataclass
class Cluster:
    """A PostgreSQL cluster in a directory that outlives the run (unlike the test harness's,
    which removes its own), started with the harness's binaries and server settings."""

    root: Path
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        """A fresh, empty cluster in ``root`` (whatever was there is removed)."""
        shutil.rmtree(self.root, ignore_errors=True)
        (self.root / "run").mkdir(parents=True)
        user = pg_harness._service_user()
        if user is not None:
            for path in (self.root, self.root / "run"):
                os.chown(path, user.pw_uid, user.pw_gid)
        bindir = _bindir()
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--no-locale", "--no-sync"],
            cwd=self.root, env=pg_harness._child_env(self.root), capture_output=True,
            check=True, **_as_user(),
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = '{value}'\n" for key, value in PG_SETTINGS.items())

    def start(self) -> None:
        self._stop_leftover()
        deadline = time.monotonic() + 60
        for _ in range(5):
            self.port = pg_harness._free_port()
            self.process = pg_harness._spawn_postgres(
                _bindir(), self.data, self.root / "run", self.root / "postgres.log",
                self.port, self.root, pg_harness._child_env(self.root), _as_user(),
            )  # fmt: skip
            try:
                pg_harness._wait_ready(
                    self.process, self.data, self.root / "postgres.log", deadline, self.port
                )
                return
            except pg_harness._PortTaken:
                continue
        raise RuntimeError("PostgreSQL could not bind a free port")

    def stop(self) -> None:
        """A fast shutdown (SIGINT: checkpoint, clean files), so the cache stays valid."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _stop_leftover(self) -> None:
        """A server of an earlier run that was killed before it could stop its cluster."""
        pidfile = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGINT)
            for _ in range(600):
                os.kill(pid, 0)  # raises OSError once it is gone
                time.sleep(0.1)


def _bindir() -> Path:
    bindir = pg_harness.find_postgres_bindir()
    if bindir is None:
        raise pg_harness._missing_binaries_error()
    return Path(bindir)


def _as_user() -> dict[str, Any]:
    user = pg_harness._service_user()
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}


def default_cluster_dir(rows: int, seed: int) -> Path:
    """Under ~/.cache/media-bench, unless the server's user cannot reach it (as root, the
    ``postgres`` user cannot enter /root): then under /var/tmp, which survives reboots."""
    name = f"pg-metadata-v{GENERATOR_VERSION}-{rows}-{seed}"
    user = pg_harness._service_user()
    home = CACHE / name
    if user is None or pg_harness._traversable_by(CACHE, user):
        return home
    return Path("/var/tmp") / f"media-bench-{os.getuid()}" / name


# -- generating the database ---------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    rows: int
    users: int
    seed: int

    def marker(self, head: str) -> dict[str, Any]:
        return {"version": GENERATOR_VERSION, "rows": self.rows, "users": self.users,
                "seed": self.seed, "migration_head": head}  # fmt: skip


async def migration_head() -> str:
    from alembic.script import ScriptDirectory

    from media_service.db.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return str(head)


async def generate(cluster: Cluster, spec: Spec) -> dict[str, float]:
    """Schema by the migrations, rows by COPY without the secondary indexes (rebuilt after,
    from their own definitions), then VACUUM ANALYZE. Returns seconds per step."""
    admin = await asyncpg.connect(cluster.dsn())
    await admin.execute(
        f"CREATE DATABASE {DATABASE} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
    )
    await admin.close()
    engine = create_engine(cluster.url())
    await upgrade_to_head(engine)
    await engine.dispose()
    steps: dict[str, float] = {}
    connection = await asyncpg.connect(cluster.dsn(DATABASE))
    try:
        rebuild = await _drop_secondary(connection)
        started = time.perf_counter()
        _copy_all(cluster.dsn(DATABASE), spec)
        steps["COPY"] = time.perf_counter() - started
        started = time.perf_counter()
        for statement in rebuild:
            await connection.execute(statement)
        steps["indexes + constraints"] = time.perf_counter() - started
        started = time.perf_counter()
        await connection.execute("VACUUM (ANALYZE) media_files")
        await connection.execute("VACUUM (ANALYZE) photo_metadata")
        await connection.execute("CHECKPOINT")
        steps["VACUUM ANALYZE"] = time.perf_counter() - started
    finally:
        await connection.close()
    return steps


_SECONDARY = """
SELECT 'DROP INDEX ' || quote_ident(i.relname), pg_get_indexdef(i.oid)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
WHERE t.relname IN ('media_files', 'photo_metadata') AND NOT x.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)
UNION ALL
SELECT format('ALTER TABLE %I DROP CONSTRAINT %I', t.relname, c.conname),
       format('ALTER TABLE %I ADD CONSTRAINT %I %s', t.relname, c.conname,
              pg_get_constraintdef(c.oid))
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
WHERE t.relname IN ('media_files', 'photo_metadata') AND c.contype IN ('u', 'f')
"""


async def _drop_secondary(connection: asyncpg.Connection) -> list[str]:
    """Drop the indexes, unique and foreign keys of the two tables (COPY is several times
    faster without them); returns the statements that put them back, as migrated."""
    pairs = await connection.fetch(_SECONDARY)
    for drop, _ in pairs:
        await connection.execute(drop)
    return [create for _, create in pairs]


def _copy_all(dsn: str, spec: Spec) -> None:
    tasks = [
        (dsn, spec.rows, spec.users, spec.seed, start, min(CHUNK, spec.rows - start))
        for start in range(0, spec.rows, CHUNK)
    ]
    done = 0
    with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 2) as pool:
        for count in pool.imap_unordered(load_chunk, tasks):
            done += count
            print(f"\r  {done:,} / {spec.rows:,} rows", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def ensure_database(cluster: Cluster, spec: Spec, regenerate: bool) -> dict[str, float]:
    """Start the cached cluster, generating it first when missing, stale or asked to."""
    head = asyncio.run(migration_head())
    marker = cluster.root / "bench-metadata.json"
    current = json.loads(marker.read_text()) if marker.exists() else None
    if not regenerate and current == spec.marker(head):
        cluster.start()
        return {}
    print(f"generating {spec.rows:,} photos into {cluster.root}", file=sys.stderr)
    started = time.perf_counter()
    cluster.init()
    cluster.start()
    steps = asyncio.run(generate(cluster, spec))
    steps["total"] = time.perf_counter() - started
    marker.write_text(json.dumps(spec.marker(head)))
    return steps


# -- queries ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """What the query generators pick their parameters from."""

    pop: Population
    org: str = "org_bench"

    def year_window(self, rng: np.random.Generator, years: float = 1.0) -> dict[str, str]:
        start = FIRST_UPLOAD + timedelta(days=float(rng.uniform(0, (YEARS - years) * 365)))
        end = start + timedelta(days=365 * years)
        return {"from": start.isoformat(), "to": end.isoformat()}


QueryMaker = Callable[[np.random.Generator, World], dict[str, Any]]


def _camera(rng: np.random.Generator) -> dict[str, str]:
    make, model = CAMERAS[int(rng.integers(0, 6))][:2]  # the phones: the common models
    return {"make": make, "model": model}


def _near(rng: np.random.Generator, world: World) -> dict[str, Any]:
    _, latitude, longitude = CITIES[int(rng.integers(0, len(CITIES)))]
    return {
        "near": {"latitude": latitude, "longitude": longitude, "radius_km": 10},
        "taken": world.year_window(rng, 2.0),
    }


QUERIES: dict[str, tuple[str, QueryMaker, int]] = {
    # name: (description, criteria maker, page timed)
    "q1": (
        "scenes any beach, quality ≥ 0.7, taken in 1 year, by quality desc",
        lambda rng, w: {"scenes": {"any": ["beach"]}, "quality": {"min": 0.7},
                        "taken": w.year_window(rng),
                        "sort": {"field": "quality_score", "direction": "desc"}},
        1,
    ),
    "q2": (
        "labels all person+dog, by taken desc",
        lambda rng, w: {"labels": {"all": ["person", "dog"]}},
        1,
    ),
    "q3": (
        "colors any blue, orientation landscape",
        lambda rng, w: {"colors": {"any": ["blue"]}, "orientation": ["landscape"]},
        1,
    ),
    "q4": ("near a city 10 km, taken in 2 years", _near, 1),
    "q5": (
        "camera make+model, quality ≥ 0.5..0.8",
        lambda rng, w: {"camera": _camera(rng),
                        "quality": {"min": round(float(rng.uniform(0.5, 0.8)), 2)}},
        1,
    ),
    "q6": (
        "has_faces, faces ≥ 2, by taken desc (page 1)",
        lambda rng, w: {"has_faces": True, "faces": {"min": 2}},
        1,
    ),
    "q6p2": (
        "the same, page 2 by cursor",
        lambda rng, w: {"has_faces": True, "faces": {"min": 2}},
        2,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Who:
    """A kind of caller: a label and how to pick one."""

    name: str
    pick: Callable[[np.random.Generator], Principal]


def principals(world: World) -> dict[str, Who]:
    users = world.pop.users_of(world.org)
    counts = world.pop.photo_counts()[users]
    largest = users[np.argsort(-counts)[:10]]
    ids = world.pop.user_ids

    def member(pool: np.ndarray) -> Callable[[np.random.Generator], Principal]:
        return lambda rng: Principal(
            ids[int(rng.choice(pool))], world.org, frozenset({Role.MEMBER})
        )

    admin = Principal("admin_bench", world.org, frozenset({Role.ADMIN}))
    return {
        "member": Who(f"member (typical: median {int(np.median(counts))} photos)", member(users)),
        "heavy": Who(f"member (10 largest: {int(counts.max()):,} max)", member(largest)),
        "admin": Who(f"admin ({int(counts.sum()):,} photos)", lambda rng: admin),
    }


@dataclass
class Capture:
    """The statements the engine sends, with their parameters and database time."""

    statements: list[tuple[str, Any]] = field(default_factory=list)
    db_seconds: float = 0.0
    on: bool = False

    def attach(self, engine: AsyncEngine) -> None:
        sync = engine.sync_engine

        @event.listens_for(sync, "before_cursor_execute")
        def before(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
            conn.info["bench_started"] = time.perf_counter()
            if self.on:
                self.statements.append((statement, params))

        @event.listens_for(sync, "after_cursor_execute")
        def after(conn: Any, *_: Any) -> None:
            self.db_seconds += time.perf_counter() - conn.info.pop("bench_started")


@dataclass
class Cell:
    """Timings of one query for one kind of caller."""

    total_ms: list[float] = field(default_factory=list)
    db_ms: list[float] = field(default_factory=list)
    returned: list[int] = field(default_factory=list)
    plan: str = ""


def denormalised_scope(principal: Principal) -> list[ColumnElement[bool]]:
    """The proposed extra conditions (``--try scoped``): the caller's visibility restated on
    ``photo_metadata``'s own copies of the organization and owner, which its indexes lead
    with. The join to ``media_files`` alone gives the planner no condition on them."""
    visibility = policy.read_visibility(principal)
    scope = [PhotoMetadata.organization_id == visibility.organization_id]
    if _personal_only(visibility):  # members and students see their own photos only
        scope.append(PhotoMetadata.user_id == visibility.subject)
    return scope


def _personal_only(visibility: policy.Visibility) -> bool:
    shared = visibility.everything or visibility.shared_owner_types or visibility.own_uploads
    return not shared and bool(visibility.subject and visibility.personal_owner_types)


def private_implied(principal: Principal) -> bool:
    """Whether everything ``principal`` may read they may also see the place and faces of
    (their own photos): the private clause then only repeats the readable one, and the
    planner, taking the two for independent, underestimates the rows a hundredfold."""
    return principal.has(Role.ADMIN) or _personal_only(policy.read_visibility(principal))


@dataclass
class Runner:
    """Runs queries the way the API does, one session per request."""

    state: ServiceState
    capture: Capture
    scoped: bool = False

    def service(self, session: AsyncSession) -> MetadataService:
        service = MetadataService(session, self.state)
        if self.scoped:  # what the proposed change to MetadataService.query would do
            readable, private = service.media.readable_clause, service.media.private_clause
            service.media.readable_clause = lambda principal: and_(  # type: ignore[method-assign]
                readable(principal), *denormalised_scope(principal)
            )
            service.media.private_clause = lambda principal: (  # type: ignore[method-assign]
                true() if private_implied(principal) else private(principal)
            )
        return service

    async def page(
        self, principal: Principal, criteria: Criteria, cursor: str | None
    ) -> tuple[int, str | None]:
        """One page of 100: its size and its next cursor."""
        async with self.state.sessions() as session:
            page = await self.service(session).query(principal, criteria, 100, cursor)
        return len(page.items), page.next_cursor

    async def file_ids(self, principal: Principal, criteria: Criteria, page: int) -> list[str]:
        """The file ids of page ``page``, in order."""
        cursor = await self.cursor_for(principal, criteria, page)
        async with self.state.sessions() as session:
            found = await self.service(session).query(principal, criteria, 100, cursor)
        return [item.file_id for item in found.items]

    async def cursor_for(self, principal: Principal, criteria: Criteria, page: int) -> str | None:
        """The cursor that asks for page ``page`` (None for the first)."""
        cursor = None
        for _ in range(page - 1):
            _, cursor = await self.page(principal, criteria, cursor)
        return cursor

    async def explain(self, principal: Principal, criteria: Criteria, page: int) -> str:
        """EXPLAIN (ANALYZE, BUFFERS) of the statement the service sent for ``page``: the
        same text with the same parameters, on the raw driver connection."""
        cursor = await self.cursor_for(principal, criteria, page)
        self.capture.statements.clear()
        self.capture.on = True
        try:
            await self.page(principal, criteria, cursor)
        finally:
            self.capture.on = False
        statement, params = self.capture.statements[-1]
        async with self.state.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: asyncpg.Connection = raw.driver_connection
            rows = await driver.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", *params)
        return "\n".join(row[0] for row in rows)


async def time_cell(runner: Runner, key: str, who: Who, args: argparse.Namespace) -> Cell:
    """``args.runs`` timed runs (fewer once ``args.budget`` seconds are spent, but at least
    ten), each with fresh parameters and caller; then one EXPLAIN ANALYZE."""
    _, make, page = QUERIES[key]
    rng = np.random.default_rng([args.seed, 7, list(QUERIES).index(key)])
    world = World(population(args.rows, args.users, args.seed))
    cell = Cell()
    deadline = time.perf_counter() + args.budget
    for n in range(args.warmup + args.runs):
        criteria = Criteria.model_validate(make(rng, world))
        principal = who.pick(rng)
        cursor = await runner.cursor_for(principal, criteria, page)  # earlier pages: untimed
        runner.capture.db_seconds = 0.0
        started = time.perf_counter()
        count, _ = await runner.page(principal, criteria, cursor)
        elapsed = time.perf_counter() - started
        if n >= args.warmup:
            cell.total_ms.append(elapsed * 1000)
            cell.db_ms.append(runner.capture.db_seconds * 1000)
            cell.returned.append(count)
        if n >= args.warmup + 10 and time.perf_counter() > deadline:
            break
    representative = np.random.default_rng([args.seed, 8])
    criteria = Criteria.model_validate(make(representative, world))
    cell.plan = await runner.explain(who.pick(representative), criteria, page)
    return cell


_INDEX = re.compile(
    r"(Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)"
)
_SEQ = re.compile(r"Seq Scan on (\w+)")


def plan_summary(plan: str) -> str:
    """The indexes a plan used (in order, once each) and any sequential scan."""
    used = list(dict.fromkeys(name for _, name in _INDEX.findall(plan)))
    seq = list(dict.fromkeys(_SEQ.findall(plan)))
    parts = [", ".join(used) or "no index"]
    if seq:
        parts.append("**Seq Scan** " + ", ".join(seq))
    return "; ".join(parts)


def plan_time(plan: str) -> str:
    found = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return found.group(1) if found else "?"


async def same_pages(url: str, args: argparse.Namespace) -> list[str]:
    """The queries (with their representative parameters) for which the scoped variant
    returns other photos than the service as it is: must be none."""
    differing = []
    async with service_state(url) as state:
        plain, scoped = Runner(state, Capture()), Runner(state, Capture(), scoped=True)
        world = World(population(args.rows, args.users, args.seed))
        callers = principals(world)
        for name, key in ((name, key) for name in args.callers for key in args.queries):
            _, make, page = QUERIES[key]
            representative = np.random.default_rng([args.seed, 8])
            criteria = Criteria.model_validate(make(representative, world))
            principal = callers[name].pick(representative)
            if await plain.file_ids(principal, criteria, page) != await scoped.file_ids(
                principal, criteria, page
            ):
                differing.append(f"{key} {name}")
    return differing


@contextlib.asynccontextmanager
async def service_state(url: str) -> AsyncIterator[ServiceState]:
    """The service's backends for ``url``, with throwaway local storage."""
    with tempfile.TemporaryDirectory(prefix="bench-metadata-") as tmp:
        settings = Settings(
            database_url=url, data_dir=Path(tmp), storage_url=f"file://{tmp}/blobs",
            events_url="memory://",
            jwt_secret="bench-secret-bench-secret-bench-secret",  # noqa: S106 - throwaway
        )  # fmt: skip
        state = ServiceState.build(settings)
        try:
            yield state
        finally:
            await state.engine.dispose()


async def measure_queries(
    url: str, args: argparse.Namespace, title: str, *, scoped: bool = False
) -> dict[tuple[str, str], Cell]:
    cells: dict[tuple[str, str], Cell] = {}
    async with service_state(url) as state:
        if args.gc_freeze:  # what the service could do once started: see docs/benchmarks.md
            gc.collect()
            gc.freeze()
        runner = Runner(state, Capture(), scoped)
        runner.capture.attach(state.engine)
        callers = principals(World(population(args.rows, args.users, args.seed)))
        for who in (callers[name] for name in args.callers):
            for key in args.queries:
                cell = cells[key, who.name] = await time_cell(runner, key, who, args)
                p50 = statistics.median(cell.total_ms)
                print(f"  {title}: {key} {who.name}: p50 {p50:.1f} ms", file=sys.stderr)
    return cells


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def report_queries(cells: dict[tuple[str, str], Cell], title: str, plans: bool) -> None:
    print(f"\n### {title}\n")
    print(f"Target: p95 under {TARGET_MS:.0f} ms. Times of `MetadataService.query` (SQL, "
          "ORM rows, pydantic output), limit 100 (101 fetched); db = time in the driver's "
          "execute.\n")  # fmt: skip
    print(
        "| query | caller | runs | p50 ms | p95 ms | p99 ms | db p50 | db p95 | rows "
        "| EXPLAIN ANALYZE ms | indexes used | target |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for (key, who), cell in cells.items():
        p95 = percentile(cell.total_ms, 95)
        verdict = "ok" if p95 < TARGET_MS else f"**MISSED** ({p95 / TARGET_MS:.1f}×)"
        print(f"| {key} {QUERIES[key][0]} | {who} | {len(cell.total_ms)} "
              f"| {percentile(cell.total_ms, 50):.1f} | {p95:.1f} "
              f"| {percentile(cell.total_ms, 99):.1f} | {percentile(cell.db_ms, 50):.1f} "
              f"| {percentile(cell.db_ms, 95):.1f} | {statistics.median(cell.returned):.0f} "
              f"| {plan_time(cell.plan)} | {plan_summary(cell.plan)} | {verdict} |")  # fmt: skip
    if plans:
        for (key, who), cell in cells.items():
            print(f"\n#### EXPLAIN (ANALYZE, BUFFERS): {key} ({QUERIES[key][0]}), {who}\n")
            print("```\n" + cell.plan + "\n```")


# Candidate indexes (--try): created in the bench database only, dropped afterwards. Each
# ends in the service's exact ORDER BY (NULLS LAST in both directions, then file_id compared
# bytewise), so that a plan can walk it in order and stop after the page.
_ORDERED = 'NULLS LAST, file_id COLLATE "C" DESC)'
_CAMERA = ", ".join(f'(trim(lower(({c}) COLLATE "C")))' for c in ("camera_make", "camera_model"))
CANDIDATES = {  # name: (create, drop)
    "idx_bench_org_taken": (
        "CREATE INDEX idx_bench_org_taken ON photo_metadata "
        "(organization_id, photo_taken_at DESC " + _ORDERED,
        "DROP INDEX IF EXISTS idx_bench_org_taken",
    ),
    "idx_bench_org_user_taken": (
        "CREATE INDEX idx_bench_org_user_taken ON photo_metadata "
        "(organization_id, user_id, photo_taken_at DESC " + _ORDERED,
        "DROP INDEX IF EXISTS idx_bench_org_user_taken",
    ),
    "idx_bench_org_quality": (
        "CREATE INDEX idx_bench_org_quality ON photo_metadata "
        "(organization_id, quality_score DESC " + _ORDERED,
        "DROP INDEX IF EXISTS idx_bench_org_quality",
    ),
    # Statistics on the camera expressions the compiler writes: without them the planner
    # takes "make = x AND model = y" for 1/200 × 1/200 of the rows.
    "stat_bench_camera": (
        f"CREATE STATISTICS stat_bench_camera ON {_CAMERA} FROM photo_metadata",
        "DROP STATISTICS IF EXISTS stat_bench_camera",
    ),
}
VARIANTS = {
    "indexes": "the candidate indexes and statistics, the service as it is",
    "scoped": "the candidate indexes and statistics, and the service's conditions restated on "
    "photo_metadata.organization_id (and user_id for members; see denormalised_scope), "
    "without the private clause where it is implied (members, admins; private_implied)",
}


@contextlib.asynccontextmanager
async def candidate_indexes(dsn: str) -> AsyncIterator[None]:
    connection = await asyncpg.connect(dsn)
    try:
        for create, drop in CANDIDATES.values():
            await connection.execute(drop)
            await connection.execute(create)
        await connection.execute("ANALYZE photo_metadata")
        yield
    finally:
        for _, drop in CANDIDATES.values():
            await connection.execute(drop)
        await connection.close()


async def data_profile(dsn: str) -> list[tuple[str, int]]:
    """How many rows some conditions match: the selectivities the plans work with."""
    checks = {
        "photos": "true",
        "in org_bench": "organization_id = 'org_bench'",
        "scene beach": "ai_scenes ? 'beach'",
        "label person and dog": 'ai_labels @> \'["person", "dog"]\'',
        "colour blue": 'ai_colors @> \'[{"name": "blue"}]\'',
        "quality ≥ 0.7": "quality_score >= 0.7",
        "with GPS": "latitude IS NOT NULL",
        "faces ≥ 2": "face_count >= 2",
    }
    connection = await asyncpg.connect(dsn)
    try:
        counts = []
        for name, condition in checks.items():
            sql = f"SELECT count(*) FROM photo_metadata WHERE {condition}"  # noqa: S608 - ours
            counts.append((name, int(await connection.fetchval(sql))))
        return counts
    finally:
        await connection.close()


# -- analysis throughput ---------------------------------------------------------------------------

PREVIEW_SIDE, PREVIEW_QUALITY = 1440, 82  # the service's defaults (Settings.preview_*)


def decode_only(path: str) -> tuple[int, int]:
    """Worker: the decode to the preview size, shrink on load, as rendering does."""
    image = decode(open_image(path, DecodeLimits()), target=(PREVIEW_SIDE, PREVIEW_SIDE))
    return image.width, image.height


def analyse(original: str, pixels: str, size: tuple[int, int] | None, faces: bool) -> int:
    """Worker: ``analyse_photo`` as the service calls it; returns the colours found."""
    source = PixelSource(pixels, *size) if size else PixelSource(pixels)
    result = analyse_photo(original, source, DecodeLimits(), faces, False)
    assert result.exif.camera_make == "Canon", "the photo's EXIF was not read"
    return len(result.pixels.colours)


def make_preview(original: str, out: str) -> tuple[int, int]:
    """Worker: the 1440 px JPEG q82 preview; returns the original's size."""
    opened = open_image(original, DecodeLimits())
    image = decode(opened, target=(PREVIEW_SIDE, PREVIEW_SIDE))
    image.jpegsave(out, Q=PREVIEW_QUALITY, optimize_coding=True, keep="none")
    return opened.info.width, opened.info.height


def exif_photo() -> Path:
    """preprocess.py's 12 MP photo with camera, time and GPS EXIF (made once, cached)."""
    from PIL import Image

    from preprocess import photo_file

    path = CACHE / "photos" / "photo-12mp-exif-v1.jpg"
    if path.exists():
        return path
    with Image.open(photo_file("12mp")) as image:
        exif = image.getexif()
        exif.update({0x010F: "Canon", 0x0110: "Canon EOS 80D", 0x0132: "2024:07:14 16:02:11"})
        exif.get_ifd(0x8769).update({0x9003: "2024:07:14 16:02:11", 0x9011: "+02:00",
                                     0x829D: 5.6, 0x8827: 200})  # fmt: skip
        exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E",
                                     4: (13.0, 24.0, 18.0)})  # fmt: skip
        partial = path.with_suffix(".part")
        image.save(partial, "JPEG", quality=90, exif=exif)
    partial.replace(path)
    return path


async def measure_analysis(args: argparse.Namespace) -> dict[str, list[float]]:
    """Images/s per case, one value per round (cases in rotating order)."""
    original = str(exif_photo())
    pool = shared_pool(2)
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        preview = str(Path(tmp) / "preview.jpg")
        size = await pool.run(make_preview, original, preview)
        cases: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
            "decode to 1440 px only": (decode_only, (original,)),
            "analyse original, no faces": (analyse, (original, original, None, False)),
            "analyse original + faces": (analyse, (original, original, None, True)),
            "analyse 1440 px preview, no faces": (analyse, (original, preview, size, False)),
            "analyse 1440 px preview + faces": (analyse, (original, preview, size, True)),
        }
        rates: dict[str, list[float]] = {name: [] for name in cases}
        for fn, fn_args in cases.values():  # warm both workers (models, geocoder)
            await asyncio.gather(*(pool.run(fn, *fn_args) for _ in range(2)))
        for round_ in range(args.analysis_rounds):
            order = list(cases) if round_ % 2 == 0 else list(reversed(cases))
            for name in order:
                fn, fn_args = cases[name]
                started = time.perf_counter()
                await asyncio.gather(*(pool.run(fn, *fn_args) for _ in range(args.photos)))
                rates[name].append(args.photos / (time.perf_counter() - started))
        await pool.close()
    return rates


def report_analysis(rates: dict[str, list[float]], args: argparse.Namespace) -> None:
    print(f"\n### Analysis throughput (12 MP JPEG with EXIF + GPS, imaging pool of 2 workers, "
          f"{args.photos} photos per case, median of {args.analysis_rounds} rounds)\n")  # fmt: skip
    print("| case | images/s | ms per image per worker | vs decode alone |")
    print("|---|---:|---:|---:|")
    base = statistics.median(next(iter(rates.values())))
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:.1f} | {2000 / rate:.0f} | {base / rate:.2f}× the time |")


# -- main ------------------------------------------------------------------------------------------


def report_generation(steps: dict[str, float], spec: Spec, profile: list[tuple[str, int]]) -> None:
    if steps:
        print(f"\n### Generation: {spec.rows:,} photos, {spec.users:,} users\n")
        print("| step | seconds |\n|---|---:|")
        for name, seconds in steps.items():
            print(f"| {name} | {seconds:.1f} |")
    print("\n### Data\n\n| rows matching | count | share |\n|---|---:|---:|")
    total = profile[0][1]
    for name, count in profile:
        print(f"| {name} | {count:,} | {count / total:.1%} |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--parts", default="queries,analysis", help="queries, analysis")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--regenerate", action="store_true", help="rebuild the cached cluster")
    parser.add_argument("--cluster-dir", type=Path, help="where to keep the cluster")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per query and caller")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--budget", type=float, default=8.0, help="seconds per query/caller")
    parser.add_argument(
        "--queries", default=",".join(QUERIES), help="comma list of " + ", ".join(QUERIES)
    )
    parser.add_argument("--callers", default="member,heavy,admin", help="who asks")
    parser.add_argument(
        "--no-baseline", action="store_true", help="only the --try variants, not as migrated"
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() before measuring (a full collection otherwise pauses ~70 ms)",
    )
    parser.add_argument("--plans", action="store_true", help="print every EXPLAIN ANALYZE")
    parser.add_argument(
        "--try",
        dest="try_",
        default="",
        help="comma list of proposals to measure too: "
        + "; ".join(f"{name}: {text}" for name, text in VARIANTS.items()),
    )
    parser.add_argument("--photos", type=int, default=24, help="analysis: photos per case")
    parser.add_argument("--analysis-rounds", type=int, default=3)
    args = parser.parse_args()
    args.queries = [key for key in args.queries.split(",") if key]
    args.try_ = [name for name in args.try_.split(",") if name]
    args.callers = [name for name in args.callers.split(",") if name]
    if unknown := set(args.try_) - set(VARIANTS):
        parser.error(f"unknown --try {', '.join(sorted(unknown))}")
    args.parts = set(args.parts.split(","))
    return args


def run_database_parts(args: argparse.Namespace) -> None:
    spec = Spec(args.rows, args.users, args.seed)
    cluster = Cluster(args.cluster_dir or default_cluster_dir(args.rows, args.seed))
    try:
        steps = ensure_database(cluster, spec, args.regenerate)
        report_generation(steps, spec, asyncio.run(data_profile(cluster.dsn(DATABASE))))
        if not args.no_baseline:
            cells = asyncio.run(measure_queries(cluster.url(), args, "as migrated"))
            report_queries(cells, "Queries, indexes as migrated", args.plans)
        for variant in args.try_:
            asyncio.run(_with_candidates(cluster, args, variant))
    finally:
        cluster.stop()


async def _with_candidates(cluster: Cluster, args: argparse.Namespace, variant: str) -> None:
    scoped = variant == "scoped"
    async with candidate_indexes(cluster.dsn(DATABASE)):
        cells = await measure_queries(cluster.url(), args, variant, scoped=scoped)
        differing = await same_pages(cluster.url(), args) if scoped else []
    report_queries(cells, f"Queries with {VARIANTS[variant]}", args.plans)
    if scoped:
        verdict = f"**NO**, differing: {', '.join(differing)}" if differing else "yes, all"
        print(f"\nSame pages as the service as it is (representative parameters): {verdict}")


def main() -> None:
    args = parse_args()
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if "queries" in args.parts:
        run_database_parts(args)
    if "analysis" in args.parts:
        report_analysis(asyncio.run(measure_analysis(args)), args)


if __name__ == "__main__":
    main()
