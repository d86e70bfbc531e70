"""The feed's items are dumped as plain dicts, not models: they must give the bytes the
models would."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from media_service.frames.feed import _feed_json, feed_item
from media_service.frames.schemas import Feed, FeedItem


@pytest.mark.parametrize(
    ("version_id", "url", "cached"),
    [("ver_1", "/api/v1/media/cache/c/content", True), (None, "https://x/r?w=1&sig=a", False)],
)
def test_an_item_dumps_as_its_model_does(version_id: str | None, url: str, cached: bool) -> None:
    item = feed_item("file_1", version_id, url, cached=cached)
    model = FeedItem(photo_id="file_1", version_id=version_id, url=url, cached=cached)
    assert orjson.dumps(item) == model.model_dump_json().encode()


def test_a_feed_dumps_as_its_model_does() -> None:
    at = datetime(2026, 11, 21, 21, 0, 0, 123456, tzinfo=UTC)
    items = [feed_item(f"file_{n}", None, f"/r/{n}", cached=n % 2 == 0) for n in range(3)]
    fields = {
        "frame_id": "frame_1", "state": "ACTIVE", "schedule_id": "sch_1", "playlist_id": None,
        "rotation_interval": 60, "transition": "fade", "transition_duration": None,
        "next_change_at": at, "cycle": 3, "cycle_started_at": at, "cycle_ends_at": None,
        "screen": {"width": 800, "height": 480},
    }  # fmt: skip
    as_model = Feed(**fields, items=[FeedItem.model_validate(item) for item in items])
    expected = orjson.dumps(as_model.model_dump(mode="json"))
    assert _feed_json(Feed(**fields, items=[]), items) == expected
