"""Labels the service can honestly derive itself, and merging them with AI results.

Every label, object and scene carries its source in ``label_sources``: ``faces`` (a face
was found), ``ocr`` (text was read), ``dimensions`` (the upright shape), or ``ai:<model>``
(an external analyzer, or a service's ``PUT``). Nothing is invented: no source, no label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

FACES, OCR, DIMENSIONS = "faces", "ocr", "dimensions"
DERIVED_SOURCES = frozenset({FACES, OCR, DIMENSIONS})
SQUARE_TOLERANCE = 0.05  # within 5 % of square is "square"


def orientation_of(width: int | None, height: int | None) -> str | None:
    """``landscape``, ``portrait`` or ``square`` for an upright size; None if unknown."""
    if not width or not height:
        return None
    if abs(width - height) <= SQUARE_TOLERANCE * max(width, height):
        return "square"
    return "landscape" if width > height else "portrait"


def derived_labels(
    face_count: int | None, has_text: bool, orientation: str | None
) -> dict[str, str]:
    """Labels backed by our own measurements, each with its source."""
    labels: dict[str, str] = {}
    if face_count:
        labels["person"] = FACES
    if has_text:
        labels["text"] = OCR
    if orientation in ("landscape", "portrait"):
        labels[orientation] = DIMENSIONS
    return labels


def normalise(names: Iterable[str]) -> list[str]:
    """Stripped, lower-case, de-duplicated, in first-seen order (the form stored and queried)."""
    seen: dict[str, None] = {}
    for name in names:
        cleaned = " ".join(name.split()).lower()
        if cleaned:
            seen.setdefault(cleaned, None)
    return list(seen)


def merge(
    current: Iterable[str],
    sources: Mapping[str, str],
    incoming: Mapping[str, str],
    *,
    replacing: frozenset[str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """``current`` labels (with ``sources``) updated with ``incoming`` (label → source).

    Labels whose source is in ``replacing`` are dropped first (so a new analysis by the
    same source replaces its old answer); ``None`` replaces the sources of ``incoming``.
    A label keeps the source it had unless it is dropped.
    """
    dropped = set(incoming.values()) if replacing is None else replacing
    kept = [name for name in current if sources.get(name) not in dropped]
    merged_sources = {name: sources[name] for name in kept if name in sources}
    for name, source in incoming.items():
        merged_sources.setdefault(name, source)
    return normalise([*kept, *incoming]), merged_sources
