"""Which smart playlists could a photo belong to: an index over their rules.

Checking one photo against every smart playlist of an organization (10k of them) with
``evaluate.matches`` would cost milliseconds per event. Two necessary conditions narrow
it first:

- *owner*: a rule whose owner reads only their own files (students, members) can only
  take that owner's photos, so it is filed under the owner and looked at only for them;
- *anchor*: most criteria demand a label, scene, object or colour, and a photo without it
  cannot match: each rule is filed under one such anchor (a list column and the names of
  which the photo needs at least one); rules without an anchor are looked at for every
  photo (of their owner).

``candidates`` is a superset of the rules that admit the photo, never missing one (the
property tests hold it to that).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from media_service.auth.principal import Principal
from media_service.metadata.criteria import Criteria, NameSet
from media_service.metadata.evaluate import field

# Criteria field → the photo_metadata column whose names it tests.
ANCHOR_COLUMNS = {
    "labels": "ai_labels",
    "scenes": "ai_scenes",
    "objects": "ai_objects",
    "colors": "ai_colors",
}
Anchor = tuple[str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class SmartRule:
    """One smart playlist as the per-photo check needs it. ``personal``: its owner reads
    only files they own, so only their photos can join it."""

    playlist_id: str
    owner: Principal
    criteria: Criteria
    updated_at: datetime
    personal: bool = False


def anchor(criteria: Criteria) -> Anchor | None:
    """A (criteria field, names) pair such that a matching photo has at least one of the
    names; the narrowest one the criteria offer, or None."""
    options: list[tuple[int, str, frozenset[str]]] = []
    for name in ANCHOR_COLUMNS:
        condition: NameSet | None = getattr(criteria, name)
        if condition is None:
            continue
        if condition.all:  # every one is needed, so any single one will do as the anchor
            options.append((1, name, frozenset([min(condition.all)])))
        if condition.any:
            options.append((len(condition.any), name, frozenset(condition.any)))
    if not options:
        return None
    _, name, names = min(options, key=lambda option: (option[0], option[1], sorted(option[2])))
    return name, names


def photo_names(row: Any, criteria_field: str) -> set[str]:
    """The names a photo has in the column behind ``criteria_field`` (as evaluate.py reads
    them: strings only; colours by their ``name``)."""
    values = field(row, ANCHOR_COLUMNS[criteria_field]) or []
    if criteria_field == "colors":
        values = [value.get("name") for value in values if isinstance(value, dict)]
    return {value for value in values if isinstance(value, str)}


class _Anchors:
    """Rules filed under their anchors."""

    def __init__(self) -> None:
        self.anchored: dict[tuple[str, str], list[SmartRule]] = defaultdict(list)
        self.everywhere: list[SmartRule] = []

    def add(self, rule: SmartRule) -> None:
        found = anchor(rule.criteria)
        if found is None:
            self.everywhere.append(rule)
            return
        criteria_field, names = found
        for name in names:
            self.anchored[(criteria_field, name)].append(rule)

    def collect(self, row: Any, found: dict[str, SmartRule]) -> None:
        for rule in self.everywhere:
            found[rule.playlist_id] = rule
        for criteria_field in ANCHOR_COLUMNS:
            for name in photo_names(row, criteria_field):
                for rule in self.anchored.get((criteria_field, name), ()):
                    found[rule.playlist_id] = rule


class RuleIndex:
    """Smart rules filed under their owner (personal ones) and their anchors."""

    def __init__(self, rules: Iterable[SmartRule]) -> None:
        self.rules: dict[str, SmartRule] = {}
        self._shared = _Anchors()
        self._personal: dict[str, _Anchors] = defaultdict(_Anchors)
        for rule in rules:
            self.rules[rule.playlist_id] = rule
            scope = self._personal[rule.owner.subject] if rule.personal else self._shared
            scope.add(rule)

    def __len__(self) -> int:
        return len(self.rules)

    def candidates(self, row: Any, owner_id: str) -> dict[str, SmartRule]:
        """The rules that may admit the photo ``row`` owned by ``owner_id`` (the file's
        ``owner_id``), by playlist id."""
        found: dict[str, SmartRule] = {}
        self._shared.collect(row, found)
        personal = self._personal.get(owner_id)
        if personal is not None:
            personal.collect(row, found)
        return found
