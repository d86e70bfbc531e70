"""Random photos and criteria from a small vocabulary, so that criteria often match."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

LABELS = ["beach", "sea", "dog", "cat", "person"]
COLORS = ["blue", "red", "green"]
PLACES = ["Berlin, Germany", "Paris, France", None]
ORIENTATIONS = ["landscape", "portrait", "square"]

names = st.lists(st.sampled_from(LABELS), max_size=3, unique=True)
colour = st.one_of(
    st.builds(lambda name: {"hex": "#336699", "share": 0.5, "name": name}, st.sampled_from(COLORS)),
    st.just({"hex": "#000000", "share": 0.1}),  # unnamed
    st.just("blue"),  # not an object: never matches
)
scores = st.none() | st.sampled_from([Decimal("0.10"), Decimal("0.50"), Decimal("0.90")])


def photo_fields() -> st.SearchStrategy[dict[str, Any]]:
    """The metadata columns criteria look at (those not drawn stay as they were)."""
    return st.fixed_dictionaries(
        {
            "ai_labels": names,
            "ai_scenes": names,
            "ai_objects": names,
            "ai_colors": st.lists(colour, max_size=2),
            "quality_score": scores,
            "brightness": scores,
            "location_name": st.sampled_from(PLACES),
            "face_count": st.none() | st.integers(0, 3),
            "orientation": st.none() | st.sampled_from(ORIENTATIONS),
        }
    )


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


query_names = st.lists(st.sampled_from(LABELS) | st.just(" Beach "), max_size=2)
name_sets = _optional(any=query_names, all=query_names, none=query_names)
colour_sets = _optional(
    **{key: st.lists(st.sampled_from(COLORS), max_size=2) for key in ("any", "all", "none")}
)
score_range = st.sampled_from(
    [{"min": 0.5}, {"max": 0.5}, {"min": 0.1, "max": 0.9}, {"min": 0.91}, {}]
)
CRITERIA_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "labels": name_sets,
    "scenes": name_sets,
    "objects": name_sets,
    "colors": colour_sets,
    "quality": score_range,
    "brightness": score_range,
    "location": st.sampled_from(["berlin", "PARIS", "x"]),
    "faces": st.sampled_from([{"min": 1}, {"max": 0}, {"min": 1, "max": 2}]),
    "has_faces": st.booleans(),
    "orientation": st.lists(st.sampled_from(ORIENTATIONS), max_size=2),
    "processed": st.booleans(),
}


@st.composite
def criteria_json(draw: st.DrawFn) -> dict[str, Any]:
    """Up to three fields, so that most criteria still match some photos."""
    chosen = draw(st.lists(st.sampled_from(sorted(CRITERIA_FIELDS)), max_size=3, unique=True))
    return {name: draw(CRITERIA_FIELDS[name]) for name in chosen}
