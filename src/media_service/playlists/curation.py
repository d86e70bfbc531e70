"""Choosing the best N photos for a goal: pure, deterministic Python.

Every candidate starts with its quality score. Photos are taken greedily, best first; each
pick makes the rest of its month, its place and its kind of people shot (no faces, one
face, a few, a group) a little less attractive, so the selection spreads across time,
places and people. A candidate whose perceptual hash is within ``duplicate_distance`` bits
of a photo already taken is a near-duplicate and is dropped (the kept photo counts it).
Ties are broken by ``file_id``, so the same candidates give the same selection in any
input order.

Penalties only grow as the selection grows, so candidates wait in a heap under their last
score (an upper bound of their current one) and are re-scored lazily when they reach the
top: the same result as re-scoring everything after every pick, at a fraction of the cost.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

# Score lost per photo already taken from the same month / place / people kind.
MONTH_PENALTY = 0.10
PLACE_PENALTY = 0.06
PEOPLE_PENALTY = 0.03
UNSCORED = 0.0  # quality of a photo not analysed yet: after every analysed one
_GRID = Decimal("0.1")  # a place without a name: its 0.1° cell (about 10 km)


@dataclass(frozen=True, slots=True)
class Candidate:
    """What curation knows about one photo."""

    file_id: str
    quality: float | None
    phash: int | None  # the 64-bit perceptual hash; None: cannot tell duplicates
    month: str | None  # "2024-07" of photo_taken_at
    place: str | None  # a name or a grid cell; None: unknown
    people: str | None  # "none", "one", "few", "group"; None: faces not analysed


@dataclass(frozen=True, slots=True)
class Pick:
    """A chosen photo and why."""

    file_id: str
    rank: int
    score: float
    reason: dict[str, Any]


@dataclass
class _Chosen:
    candidate: Candidate
    score: float
    duplicates: int = 0
    penalties: dict[str, float] = field(default_factory=dict)


def candidate(
    file_id: str,
    quality: Decimal | float | None,
    phash: str | None,
    taken: datetime | None,
    location_name: str | None,
    latitude: Decimal | None,
    longitude: Decimal | None,
    face_count: int | None,
) -> Candidate:
    """A :class:`Candidate` from a photo's metadata columns."""
    return Candidate(
        file_id=file_id,
        quality=None if quality is None else float(quality),
        phash=_hash(phash),
        month=None if taken is None else f"{taken.year:04d}-{taken.month:02d}",
        place=_place(location_name, latitude, longitude),
        people=_people(face_count),
    )


def curate(candidates: list[Candidate], count: int, duplicate_distance: int) -> list[Pick]:
    """The best ``count`` of ``candidates`` (fewer if not enough are distinct), best first."""
    heap = [(-_base(c), c.file_id, index) for index, c in enumerate(candidates)]
    heapq.heapify(heap)
    taken = _Taken()
    while heap and len(taken.chosen) < count:
        _, file_id, index = heapq.heappop(heap)
        current = candidates[index]
        score, penalties = taken.score(current)
        if heap and (-score, file_id) > heap[0][:2]:
            heapq.heappush(heap, (-score, file_id, index))  # someone else may be better now
            continue
        original = taken.duplicate_of(current, duplicate_distance)
        if original is not None:
            original.duplicates += 1
            continue
        taken.add(_Chosen(current, score, penalties=penalties))
    return [_pick(rank, chosen) for rank, chosen in enumerate(taken.chosen, start=1)]


def near_duplicates(first: int, second: int, distance: int) -> bool:
    """Whether two 64-bit hashes are within ``distance`` bits of each other."""
    return (first ^ second).bit_count() <= distance


class _Taken:
    """The selection so far, and how often each month, place and people kind occur in it."""

    def __init__(self) -> None:
        self.chosen: list[_Chosen] = []
        self.hashed: list[_Chosen] = []
        self.months: Counter[str] = Counter()
        self.places: Counter[str] = Counter()
        self.people: Counter[str] = Counter()

    def score(self, c: Candidate) -> tuple[float, dict[str, float]]:
        penalties = {
            "month": MONTH_PENALTY * self.months[c.month] if c.month else 0.0,
            "place": PLACE_PENALTY * self.places[c.place] if c.place else 0.0,
            "people": PEOPLE_PENALTY * self.people[c.people] if c.people else 0.0,
        }
        # Summed in a fixed order: the same counts always give the very same float.
        score = _base(c) - penalties["month"] - penalties["place"] - penalties["people"]
        return score, {name: value for name, value in penalties.items() if value}

    def duplicate_of(self, c: Candidate, distance: int) -> _Chosen | None:
        if c.phash is None:
            return None
        for chosen in self.hashed:
            assert chosen.candidate.phash is not None
            if near_duplicates(c.phash, chosen.candidate.phash, distance):
                return chosen
        return None

    def add(self, chosen: _Chosen) -> None:
        c = chosen.candidate
        self.chosen.append(chosen)
        if c.phash is not None:
            self.hashed.append(chosen)
        for counter, key in (
            (self.months, c.month),
            (self.places, c.place),
            (self.people, c.people),
        ):
            if key:
                counter[key] += 1


def _pick(rank: int, chosen: _Chosen) -> Pick:
    c = chosen.candidate
    why = [f"quality {c.quality:.2f}" if c.quality is not None else "not scored yet"]
    for name, label in (("month", "month"), ("place", "place"), ("people", "kind of people shot")):
        if getattr(c, name) is not None and name not in chosen.penalties:
            why.append(f"first of its {label}")
    if chosen.duplicates:
        why.append(f"best of {chosen.duplicates + 1} near-duplicates")
    reason = {
        "score": round(chosen.score, 4),
        "quality": c.quality,
        "rank": rank,
        "month": c.month,
        "people": c.people,
        "penalties": {name: round(value, 4) for name, value in chosen.penalties.items()},
        "duplicates_collapsed": chosen.duplicates,
        "why": why,
    }
    return Pick(c.file_id, rank, chosen.score, reason)


def _base(c: Candidate) -> float:
    return UNSCORED if c.quality is None else c.quality


def _hash(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value, 16) if len(value) == 16 else None
    except ValueError:
        return None


def _place(name: str | None, latitude: Decimal | None, longitude: Decimal | None) -> str | None:
    if name:
        return name.strip().lower() or None
    if latitude is None or longitude is None:
        return None
    return f"{Decimal(latitude).quantize(_GRID)},{Decimal(longitude).quantize(_GRID)}"


def _people(face_count: int | None) -> str | None:
    if face_count is None:
        return None
    if face_count <= 0:
        return "none"
    if face_count == 1:
        return "one"
    return "few" if face_count <= 3 else "group"
