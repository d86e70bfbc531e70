"""The anchor index never loses a smart playlist a photo matches, and narrows the rest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from media_service.auth.principal import Principal, Role
from media_service.metadata.criteria import Criteria
from media_service.metadata.evaluate import matches
from media_service.playlists.matching import RuleIndex, SmartRule, anchor

from .strategies import criteria_json, photo_fields

OWNER = Principal("t1", "org", frozenset({Role.TEACHER}))
MEMBERS = [Principal(name, "org", frozenset({Role.MEMBER})) for name in ("m1", "m2")]
WHEN = datetime(2025, 1, 1, tzinfo=UTC)


def rule(playlist_id: str, criteria: dict[str, Any], owner: Principal = OWNER) -> SmartRule:
    personal = owner in MEMBERS
    return SmartRule(playlist_id, owner, Criteria.model_validate(criteria), WHEN, personal)


@settings(max_examples=400, deadline=None)
@given(
    rules=st.lists(
        st.tuples(criteria_json(), st.sampled_from([OWNER, *MEMBERS])), min_size=1, max_size=12
    ),
    row=photo_fields(),
    processed=st.booleans(),
    photo_owner=st.sampled_from(["m1", "m2", "cs-1"]),
)
def test_candidates_contain_every_rule_that_can_admit_the_photo(
    rules: list[tuple[dict[str, Any], Principal]],
    row: dict[str, Any],
    processed: bool,
    photo_owner: str,
) -> None:
    index = RuleIndex(rule(f"pl_{n}", criteria, owner) for n, (criteria, owner) in enumerate(rules))
    candidates = index.candidates(row, photo_owner)
    assert set(candidates) <= set(index.rules)
    for playlist_id, smart in index.rules.items():
        # A member's playlist can only take the member's photos; the rest, by the criteria.
        if smart.personal and smart.owner.subject != photo_owner:
            assert playlist_id not in candidates
        elif matches(smart.criteria, row, processed):
            assert playlist_id in candidates, (smart.criteria, row)


def test_an_anchor_is_the_narrowest_required_name_set() -> None:
    criteria = Criteria.model_validate(
        {"labels": {"any": ["dog", "cat"]}, "scenes": {"all": ["beach", "sea"]}}
    )
    assert anchor(criteria) == ("scenes", frozenset({"beach"}))
    assert anchor(Criteria.model_validate({"labels": {"none": ["dog"]}})) is None
    assert anchor(Criteria.model_validate({"colors": {"any": ["blue"]}})) == (
        "colors",
        frozenset({"blue"}),
    )


def test_a_photo_without_the_anchor_names_is_checked_against_unanchored_rules_only() -> None:
    index = RuleIndex(
        [
            rule("pl_beach", {"scenes": {"any": ["beach"]}}),
            rule("pl_blue", {"colors": {"all": ["blue"]}}),
            rule("pl_good", {"quality": {"min": 0.8}}),
        ]
    )
    city = {"ai_labels": [], "ai_scenes": ["city"], "ai_objects": [], "ai_colors": []}
    assert set(index.candidates(city, "cs-1")) == {"pl_good"}
    blue = {**city, "ai_colors": [{"name": "blue"}, "blue"]}
    assert set(index.candidates(blue, "cs-1")) == {"pl_good", "pl_blue"}


def test_a_members_rules_are_looked_at_for_the_members_photos_only() -> None:
    index = RuleIndex([rule("pl_m1", {}, MEMBERS[0]), rule("pl_m2", {}, MEMBERS[1])])
    row = {"ai_labels": [], "ai_scenes": [], "ai_objects": [], "ai_colors": []}
    assert set(index.candidates(row, "m1")) == {"pl_m1"}
    assert set(index.candidates(row, "t1")) == set()
