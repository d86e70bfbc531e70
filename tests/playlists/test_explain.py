"""Why a photo is in a smart playlist: what matched, its score, no private values."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from media_service.metadata.criteria import Criteria
from media_service.playlists.explain import explain, uses_private_fields

ROW = {
    "file_id": "file_x",
    "ai_labels": ["dog", "sea"],
    "ai_scenes": ["beach"],
    "ai_objects": [],
    "ai_colors": [{"name": "blue"}, {"name": "white"}],
    "quality_score": Decimal("0.83"),
    "blur_score": None,
    "brightness": Decimal("0.40"),
    "contrast": None,
    "photo_taken_at": datetime(2024, 7, 14, 16, 30, tzinfo=UTC),
    "latitude": Decimal("52.5"),
    "longitude": Decimal("13.4"),
    "location_name": "Berlin, Germany",
    "camera_make": "Canon",
    "camera_model": "EOS R5",
    "face_count": 2,
    "orientation": "landscape",
}


def test_the_matched_criteria_and_the_score() -> None:
    criteria = Criteria.model_validate(
        {
            "labels": {"any": ["dog", "cat"], "none": ["person"]},
            "colors": {"all": ["blue"]},
            "quality": {"min": 0.8},
            "taken": {"from": "2024-01-01T00:00:00Z"},
            "camera": {"make": "canon"},
            "orientation": ["landscape"],
            "processed": True,
        }
    )
    assert explain(criteria, ROW, True) == {
        "matched": {
            "labels": ["dog"],
            "colors": ["blue"],
            "quality": 0.83,
            "taken": "2024-07-14T16:30:00+00:00",
            "camera": {"make": "Canon", "model": "EOS R5"},
            "orientation": "landscape",
            "processed": True,
        },
        "score": 0.83,
    }


def test_place_and_faces_are_reported_as_matched_never_by_value() -> None:
    criteria = Criteria.model_validate(
        {
            "location": "berlin",
            "has_faces": True,
            "near": {"latitude": 52.5, "longitude": 13.4, "radius_km": 5},
        }
    )
    assert uses_private_fields(criteria)
    assert explain(criteria, ROW, False)["matched"] == {
        "near": True,
        "location": True,
        "has_faces": True,
    }
    assert not uses_private_fields(Criteria.model_validate({"labels": {"any": ["dog"]}}))
    assert explain(Criteria(), ROW, False) == {"matched": {}, "score": 0.83}
