"""Why a photo is in a smart playlist: the criteria it matches now, and its score.

Worked out when the items are read, so it describes the photo's current metadata. Place
and faces (private to the photo's owner and admins) are reported as matched, never by
value: a shared playlist's readers learn nothing the criteria do not already say.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from media_service.metadata.criteria import LIST_FIELDS, SCORE_FIELDS, Criteria, NameSet
from media_service.metadata.evaluate import field
from media_service.playlists.matching import photo_names

PRIVATE_FIELDS = ("near", "bbox", "location", "faces", "has_faces")


def uses_private_fields(criteria: Criteria) -> bool:
    """Whether ``criteria`` filter on place or faces (private to owners and admins)."""
    return any(getattr(criteria, name) is not None for name in PRIVATE_FIELDS)


def explain(criteria: Criteria, row: Any, processed: bool) -> dict[str, Any]:
    """``{"matched": {criterion: what matched}, "score": quality}`` for one photo."""
    matched: dict[str, Any] = {}
    for name in (*LIST_FIELDS, "colors"):
        condition: NameSet | None = getattr(criteria, name)
        if condition is not None and (condition.any or condition.all or condition.none):
            wanted = set(condition.any) | set(condition.all)
            matched[name] = sorted(photo_names(row, name) & wanted)
    for name, column in SCORE_FIELDS.items():
        if getattr(criteria, name) is not None:
            matched[name] = _number(field(row, column))
    if criteria.taken is not None:
        taken = field(row, "photo_taken_at")
        matched["taken"] = None if taken is None else taken.isoformat()
    for name in PRIVATE_FIELDS:
        if getattr(criteria, name) is not None:
            matched[name] = True
    if criteria.camera is not None:
        matched["camera"] = {"make": field(row, "camera_make"), "model": field(row, "camera_model")}
    if criteria.orientation:
        matched["orientation"] = field(row, "orientation")
    if criteria.processed is not None:
        matched["processed"] = processed
    return {"matched": matched, "score": _number(field(row, "quality_score"))}


def _number(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)
