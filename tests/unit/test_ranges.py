"""The Range header: one satisfiable range, 416, or the whole file, whatever is sent."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from media_service.errors import RangeNotSatisfiable
from media_service.media.ranges import parse_range
from media_service.storage import ByteRange

SIZES = st.integers(min_value=0, max_value=10**12)
NUMBERS = st.one_of(
    st.just(""), st.integers(min_value=0, max_value=10**15).map(str), st.text("0123456789 ")
)
SPECS = st.builds(lambda a, b: f"{a}-{b}", NUMBERS, NUMBERS)
HEADERS = st.one_of(
    st.none(),
    st.text(),
    st.builds(
        lambda unit, specs: f"{unit}={','.join(specs)}",
        st.sampled_from(["bytes", "BYTES", " bytes ", "items", ""]),
        st.lists(SPECS, min_size=1, max_size=4),
    ),
    st.builds(lambda n: f"bytes={n}-", st.integers(min_value=0, max_value=10**15)),
    st.builds(lambda n: f"bytes=-{n}", st.integers(min_value=0, max_value=10**15)),
)


def outcome(header: str | None, size: int) -> ByteRange | RangeNotSatisfiable | None:
    try:
        return parse_range(header, size)
    except RangeNotSatisfiable as exc:
        return exc


@given(header=HEADERS, size=SIZES)
@example(header="bytes=-0", size=10)
@example(header="bytes=0-", size=0)
@example(header="bytes=-5", size=0)
@example(header="bytes=\u0661-\u0662", size=10)  # Arabic-Indic digits
@example(header="bytes=" + "9" * 1000 + "-", size=10)
def test_any_header_gives_none_416_or_a_range_inside_the_file(
    header: str | None, size: int
) -> None:
    result = outcome(header, size)
    if isinstance(result, RangeNotSatisfiable):
        assert result.status == 416
        assert result.headers["Content-Range"] == f"bytes */{size}"
    elif result is not None:
        assert 0 <= result.start <= result.end < size
        assert result.length == result.end - result.start + 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=10-", ByteRange(10, 999)),
        ("bytes=-10", ByteRange(990, 999)),
        ("bytes=-5000", ByteRange(0, 999)),
        ("bytes=990-5000", ByteRange(990, 999)),
        ("Bytes = 5 - 6", ByteRange(5, 6)),
    ],
)
def test_satisfiable_ranges(header: str, expected: ByteRange) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=5-1",
        "bytes=0-1,2-3",
        "bytes=" + ",".join("0-10" for _ in range(1000)),
        "items=0-1",
        "bytes 0-1",
        "bytes=-",
        "bytes=a-b",
        "bytes=0-1-2",
        "bytes=\u0661-\u0662",
        "bytes=\uff11-\uff12",  # full-width digits
        "bytes=1\u00a0-2",  # a no-break space is not HTTP whitespace
    ],
)
def test_malformed_or_multiple_ranges_mean_the_whole_file(header: str | None) -> None:
    assert parse_range(header, 1000) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=999999999-", 1000), ("bytes=-0", 1000), ("bytes=1000-", 1000), ("bytes=0-", 0)],
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, size)
    assert caught.value.headers["Content-Range"] == f"bytes */{size}"
