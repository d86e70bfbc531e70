"""Derived labels and merging them with AI answers, each keeping its source."""

from __future__ import annotations

import pytest

from media_service.metadata import labels


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1200, 800), "landscape"),
        ((800, 1200), "portrait"),
        ((1000, 980), "square"),
        ((0, 5), None),
    ],
)
def test_orientation_of(size: tuple[int, int], expected: str | None) -> None:
    assert labels.orientation_of(*size) == expected


def test_only_what_was_measured_becomes_a_label() -> None:
    assert labels.derived_labels(0, False, "square") == {}
    assert labels.derived_labels(2, True, "portrait") == {
        "person": "faces",
        "text": "ocr",
        "portrait": "dimensions",
    }


def test_a_source_answering_again_replaces_only_its_own_labels() -> None:
    current, sources = labels.merge([], {}, {"landscape": "dimensions", "person": "faces"})
    current, sources = labels.merge(current, sources, {"beach": "ai:v1", "sea": "ai:v1"})
    assert current == ["landscape", "person", "beach", "sea"]
    current, sources = labels.merge(current, sources, {"dog": "ai:v1"})
    assert current == ["landscape", "person", "dog"]
    assert sources == {"landscape": "dimensions", "person": "faces", "dog": "ai:v1"}


def test_a_label_already_backed_by_a_measurement_keeps_that_source() -> None:
    current, sources = labels.merge(["person"], {"person": "faces"}, {"person": "ai:v2"})
    assert current == ["person"] and sources == {"person": "faces"}


def test_names_are_normalised() -> None:
    assert labels.normalise(["  Beach ", "beach", "Sea  View", ""]) == ["beach", "sea view"]
