"""The event envelope, the registry of event types, their JSON Schemas and their docs."""

from __future__ import annotations

import re
import typing
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media_service.events.bus import subject_matches, validate_subject
from media_service.events.envelope import (
    ENVELOPE_FIELDS,
    EVENT_TYPES,
    FileDeleted,
    FileUploaded,
    InvalidEvent,
    MediaPlaylistUpdated,
    json_schemas,
    parse_event,
)
from media_service.ids import is_valid_id
from media_service.media.models import FileType, OwnerType

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"
SPEC_TYPES = {
    "file.uploaded",
    "file.deleted",
    "media.version.created",
    "media.metadata.updated",
    "media.playlist.updated",
    "media.cache.ready",
}


def test_every_spec_event_type_is_registered() -> None:
    assert set(EVENT_TYPES) == SPEC_TYPES


def test_new_event_has_an_evt_id_and_a_utc_timestamp() -> None:
    event = FileDeleted(file_id="file_1", user_id="u", organization_id="o")
    assert is_valid_id(event.event_id, "evt")
    assert event.timestamp.tzinfo is not None
    document = orjson.loads(event.to_json())
    assert document["event_type"] == "file.deleted" == event.subject
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", document["timestamp"])


def test_spec_example_parses() -> None:
    example = {
        "event_id": "evt_external_1",
        "event_type": "media.playlist.updated",
        "playlist_id": "pl_abc123",
        "user_id": "user_001",
        "photo_count": 42,
        "playlist_type": "SMART",
        "timestamp": "2025-12-11T12:00:00Z",
        "added_by_a_newer_publisher": True,
    }
    event = parse_event(orjson.dumps(example), "media.playlist.updated")
    assert isinstance(event, MediaPlaylistUpdated)
    assert event.timestamp == datetime(2025, 12, 11, 12, tzinfo=UTC)
    assert event.photo_count == 42 and event.organization_id is None


def test_round_trip_is_lossless() -> None:
    event = FileUploaded(
        file_id="file_1", user_id="u", organization_id="o", owner_id="s1",
        owner_type="Student", file_type="Image", content_type="image/png", file_size=0,
        sha256="0" * 64,
    )  # fmt: skip
    assert parse_event(event.to_json(), "file.uploaded") == event
    assert parse_event(event.to_document()) == event


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"event_id": None}, "missing envelope field"),
        ({"timestamp": None}, "missing envelope field"),
        ({"event_type": "file.exploded"}, "unknown event_type"),
        ({"event_id": "has space"}, "event_id"),
        ({"event_id": "x" * 129}, "event_id"),
        ({"timestamp": "2025-12-11T12:00:00"}, "timestamp"),
        ({"file_size": -1}, "file_size"),
        ({"sha256": "ABC"}, "sha256"),
        ({"owner_type": "Alien"}, "owner_type"),
        ({"file_id": ""}, "file_id"),
        ({"organization_id": None}, "organization_id"),
    ],
)
def test_invalid_events_are_refused(change: dict[str, object], reason: str) -> None:
    document = FileUploaded(file_id="f", user_id="u", organization_id="o").to_document()
    for key, value in change.items():
        if value is None:
            document.pop(key)
        else:
            document[key] = value
    with pytest.raises(InvalidEvent, match=reason):
        parse_event(orjson.dumps(document))


def test_validation_messages_do_not_echo_the_input() -> None:
    document = FileDeleted(file_id="f", user_id="u", organization_id="o").to_document()
    document["file_id"] = "<script>" + "x" * 500
    with pytest.raises(InvalidEvent) as caught:
        parse_event(document)
    assert "<script>" not in str(caught.value)


def test_subject_must_be_the_event_type_or_below_it() -> None:
    payload = FileDeleted(file_id="f", user_id="u", organization_id="o").to_json()
    assert parse_event(payload, "file.deleted.org_a").subject == "file.deleted"
    for subject in ("file.uploaded", "file.deletedx", "file"):
        with pytest.raises(InvalidEvent, match="published on subject"):
            parse_event(payload, subject)


def test_literal_types_match_the_media_domain() -> None:
    hints = typing.get_type_hints(FileUploaded)
    owner_types = set(typing.get_args(typing.get_args(hints["owner_type"])[0]))
    file_types = set(typing.get_args(typing.get_args(hints["file_type"])[0]))
    assert owner_types == {member.value for member in OwnerType}
    assert file_types == {member.value for member in FileType}


def test_json_schemas_require_the_envelope_and_list_every_field() -> None:
    schemas = json_schemas()
    assert set(schemas) == SPEC_TYPES
    for name, schema in schemas.items():
        model = EVENT_TYPES[name]
        assert set(schema["properties"]) == set(model.model_fields)
        assert set(ENVELOPE_FIELDS) <= set(schema["required"])
        assert schema["properties"]["event_type"]["const"] == name
    assert set(schemas["file.deleted"]["required"]) == {
        *ENVELOPE_FIELDS, "file_id", "user_id", "organization_id"
    }  # fmt: skip


def test_docs_describe_every_event_and_field() -> None:
    text = DOCS.read_text()
    for name, model in EVENT_TYPES.items():
        section = text.split(f"### `{name}`", 1)
        assert len(section) == 2, f"docs/events.md has no section for {name}"
        body = section[1].split("\n### ", 1)[0]
        for field in set(model.model_fields) - set(ENVELOPE_FIELDS):
            assert f"| `{field}` |" in body, f"docs/events.md: {name} lacks {field}"
    for field in ENVELOPE_FIELDS:
        assert f"| `{field}` |" in text


# -- subjects -------------------------------------------------------------------------------

tokens = st.text(alphabet="abcxyz_-0", min_size=1, max_size=4)


@given(st.lists(tokens, min_size=1, max_size=5))
def test_a_subject_matches_itself_and_the_wildcards_above_it(parts: list[str]) -> None:
    subject = ".".join(parts)
    assert subject_matches(subject, subject)
    assert subject_matches(">", subject)
    assert subject_matches(".".join(["*"] * len(parts)), subject)
    if len(parts) > 1:
        assert subject_matches(f"{parts[0]}.>", subject)
        assert not subject_matches(".".join(parts[:-1]), subject)
    assert not subject_matches(f"{subject}.>", subject)


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("file.>", "file.uploaded", True),
        ("file.>", "file", False),
        ("file.*", "file.uploaded.org", False),
        ("*.uploaded", "file.uploaded", True),
        ("media.>", "file.uploaded", False),
    ],
)
def test_subject_matching_examples(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


@pytest.mark.parametrize("bad", ["", "a..b", "a.b.", "a b", "a.>.b", "file.*", "a\r\nb"])
def test_invalid_publish_subjects_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid subject"):
        validate_subject(bad)
    validate_subject("file.*", wildcards=True)
