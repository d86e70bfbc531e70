"""Curated selection: never two near-duplicates, the same picks for the same photos in any
order, and exactly what a plain (re-score everything after every pick) greedy picks."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from media_service.playlists import curation
from media_service.playlists.curation import Candidate, curate, near_duplicates

# A few base pictures; copies differ from their base by a few bits (near-duplicates at the
# default distance of 6), bases differ from each other by far more.
BASES = [0x0123456789ABCDEF, 0xFEDCBA9876543210, 0x0F0F0F0F0F0F0F0F, 0xAAAAAAAA55555555]


@st.composite
def phashes(draw: st.DrawFn) -> int | None:
    if draw(st.integers(0, 9)) == 0:
        return None  # not analysed: never anyone's duplicate
    value = draw(st.sampled_from(BASES))
    for bit in draw(st.lists(st.integers(0, 63), max_size=8)):
        value ^= 1 << bit
    return value


@st.composite
def candidates(draw: st.DrawFn) -> list[Candidate]:
    ids = draw(st.lists(st.text("abcdef0", min_size=1, max_size=4), unique=True, max_size=40))
    return [
        Candidate(
            file_id=file_id,
            # Few distinct qualities: ties are common and broken by file_id.
            quality=draw(st.none() | st.sampled_from([0.2, 0.5, 0.5, 0.81, 0.9, 1.0])),
            phash=draw(phashes()),
            month=draw(st.none() | st.sampled_from(["2024-01", "2024-02", "2024-03"])),
            place=draw(st.none() | st.sampled_from(["berlin", "paris"])),
            people=draw(st.none() | st.sampled_from(["none", "one", "group"])),
        )
        for file_id in ids
    ]


def plain_greedy(pool: list[Candidate], count: int, distance: int) -> list[tuple[str, float]]:
    """The reference: re-score every remaining candidate after every pick."""
    remaining, chosen = list(pool), []
    while remaining and len(chosen) < count:

        def penalty(c: Candidate, name: str, weight: float) -> float:
            value = getattr(c, name)
            return weight * sum(getattr(x, name) == value for x, _ in chosen) if value else 0.0

        def key(c: Candidate) -> tuple[float, str]:
            score = (
                (0.0 if c.quality is None else c.quality)
                - penalty(c, "month", curation.MONTH_PENALTY)
                - penalty(c, "place", curation.PLACE_PENALTY)
                - penalty(c, "people", curation.PEOPLE_PENALTY)
            )
            return -score, c.file_id

        best = min(remaining, key=key)
        remaining.remove(best)
        duplicate = best.phash is not None and any(
            x.phash is not None and near_duplicates(best.phash, x.phash, distance)
            for x, _ in chosen
        )
        if not duplicate:
            chosen.append((best, -key(best)[0]))
    return [(c.file_id, score) for c, score in chosen]


@settings(max_examples=300, deadline=None)
@given(pool=candidates(), count=st.integers(1, 25), distance=st.sampled_from([0, 3, 6, 12]))
def test_never_two_near_duplicates_and_as_many_as_can_be(
    pool: list[Candidate], count: int, distance: int
) -> None:
    picks = curate(pool, count, distance)
    chosen = [next(c for c in pool if c.file_id == p.file_id) for p in picks]
    hashes = [c.phash for c in chosen if c.phash is not None]
    for i, first in enumerate(hashes):
        for second in hashes[i + 1 :]:
            assert not near_duplicates(first, second, distance)
    assert len({p.file_id for p in picks}) == len(picks) <= count
    if len(picks) < count:  # everything left out is a near-duplicate of something chosen
        left_out = [c for c in pool if c not in chosen]
        for c in left_out:
            assert c.phash is not None
            assert any(near_duplicates(c.phash, h, distance) for h in hashes)
    assert [p.rank for p in picks] == list(range(1, len(picks) + 1))
    scores = [p.score for p in picks]
    assert scores == sorted(scores, reverse=True)  # penalties only ever grow


@settings(max_examples=300, deadline=None)
@given(pool=candidates(), count=st.integers(1, 25), seed=st.integers(0, 2**32))
def test_the_same_photos_give_the_same_picks_in_any_order(
    pool: list[Candidate], count: int, seed: int
) -> None:
    shuffled = list(pool)
    random.Random(seed).shuffle(shuffled)
    first, second = curate(pool, count, 6), curate(shuffled, count, 6)
    assert [(p.file_id, p.score, p.reason) for p in first] == [
        (p.file_id, p.score, p.reason) for p in second
    ]


@settings(max_examples=300, deadline=None)
@given(pool=candidates(), count=st.integers(1, 25), distance=st.sampled_from([0, 6]))
def test_lazy_rescoring_picks_what_a_plain_greedy_picks(
    pool: list[Candidate], count: int, distance: int
) -> None:
    picks = [(p.file_id, p.score) for p in curate(pool, count, distance)]
    assert picks == plain_greedy(pool, count, distance)


def test_variety_beats_a_slightly_better_photo_of_the_same_month_and_place() -> None:
    same = [Candidate(f"a{n}", 0.9, None, "2024-07", "berlin", "one") for n in range(3)]
    other = Candidate("b", 0.85, None, "2023-01", "paris", "group")
    picks = curate([*same, other], 2, 6)
    assert [p.file_id for p in picks] == ["a0", "b"]
    assert picks[1].reason["why"] == [
        "quality 0.85",
        "first of its month",
        "first of its place",
        "first of its kind of people shot",
    ]


def test_a_duplicate_is_collapsed_into_the_better_copy() -> None:
    best = Candidate("copy-1", 0.9, BASES[0], None, None, None)
    worse = Candidate("copy-2", 0.8, BASES[0] ^ 0b101, None, None, None)
    distinct = Candidate("other", 0.5, BASES[1], None, None, None)
    picks = curate([worse, distinct, best], 3, 6)
    assert [p.file_id for p in picks] == ["copy-1", "other"]
    assert picks[0].reason["duplicates_collapsed"] == 1
    assert "best of 2 near-duplicates" in picks[0].reason["why"]


def test_a_candidate_from_metadata_columns() -> None:
    taken = datetime(2024, 7, 14, 16, 30, tzinfo=UTC)
    c = curation.candidate(
        "f", Decimal("0.87"), "00000000000000ff", taken, None, Decimal("52.51"), Decimal("13.44"), 2
    )
    assert c == Candidate("f", 0.87, 255, "2024-07", "52.5,13.4", "few")
    assert curation.candidate("g", None, "zz", None, " Berlin ", None, None, 0).place == "berlin"
    assert curation.candidate("g", None, "zz", None, None, None, None, 0).phash is None
