"""Prefixed, time-ordered ids."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from media_service.ids import is_valid_id, new_id


@given(a=st.integers(0, 2**47), b=st.integers(0, 2**47))
def test_ids_sort_by_time(a: int, b: int) -> None:
    first, second = new_id("file", now_ms=a), new_id("file", now_ms=b)
    if a < b:
        assert first < second
    assert is_valid_id(first, "file") and is_valid_id(second, "file")


def test_shape_and_validation() -> None:
    value = new_id("evt")
    assert value.startswith("evt_") and len(value) == 30
    assert len({new_id("file") for _ in range(1000)}) == 1000
    assert not is_valid_id(value, "file")
    for bad in (
        "file_",
        "file_" + "u" * 26,
        "file_" + "0" * 25,
        "' OR 1=1 --",
        "file_\x00" + "0" * 25,
    ):
        assert not is_valid_id(bad, "file")
