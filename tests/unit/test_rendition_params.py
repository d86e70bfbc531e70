"""On-the-fly rendition parameters: normalised, checked, signed (pure, property-tested)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media_service.errors import Unprocessable
from media_service.imaging.specs import Fit, OutputFormat
from media_service.preprocessing.params import RenditionParams, cache_name, check_params

sides = st.one_of(st.none(), st.integers(1, 8192))
formats = st.sampled_from(["jpeg", "webp", "avif", "png", "auto"])


def valid(params: RenditionParams) -> bool:
    try:
        check_params(params, 8192)
    except Unprocessable:
        return False
    return True


@given(sides, sides, st.sampled_from(list(Fit)), formats, st.one_of(st.none(), st.integers(1, 100)))
def test_equal_requests_share_one_cache_name_and_signed_query(
    width: int | None, height: int | None, fit: Fit, fmt: str, quality: int | None
) -> None:
    params = RenditionParams(width, height, fit, fmt, quality)
    if not valid(params):
        return
    spec = params.resolve("image/webp")
    same = RenditionParams(width, height, fit, fmt, quality).resolve("image/webp")
    assert cache_name(spec) == cache_name(same)
    assert params.signed_query() == RenditionParams(width, height, fit, fmt, quality).signed_query()
    if quality is None:  # the default quality spelled out is the same rendition
        explicit = RenditionParams(width, height, fit, fmt, spec.format.default_quality)
        assert cache_name(explicit.resolve("image/webp")) == cache_name(spec)


@given(sides, sides, formats)
def test_different_sizes_never_share_a_cache_name(
    width: int | None, height: int | None, fmt: str
) -> None:
    params = RenditionParams(width, height, Fit.CONTAIN, fmt, None)
    other = RenditionParams((width or 0) + 1, height, Fit.CONTAIN, fmt, None)
    if valid(params) and valid(other):
        assert cache_name(params.resolve(None)) != cache_name(other.resolve(None))


@pytest.mark.parametrize(
    ("accept", "alpha", "expected"),
    [
        ("image/avif,image/webp,*/*", False, OutputFormat.WEBP),
        ("image/jpeg", False, OutputFormat.JPEG),
        (None, True, OutputFormat.PNG),
        ("image/webp;q=0.9", True, OutputFormat.WEBP),
    ],
)
def test_auto_format_follows_accept(
    accept: str | None, alpha: bool, expected: OutputFormat
) -> None:
    spec = RenditionParams(100, None, Fit.CONTAIN, "auto", None).resolve(accept, has_alpha=alpha)
    assert spec.format is expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (RenditionParams(None, None, Fit.CONTAIN, "auto", None), "width"),
        (RenditionParams(9000, None, Fit.CONTAIN, "auto", None), "width"),
        (RenditionParams(10, 0, Fit.CONTAIN, "auto", None), "height"),
        (RenditionParams(10, None, Fit.COVER, "auto", None), "fit"),
        (RenditionParams(10, None, Fit.CONTAIN, "gif", None), "format"),
        (RenditionParams(10, None, Fit.CONTAIN, "jpeg", 0), "quality"),
    ],
)
def test_invalid_requests_name_the_bad_field(params: RenditionParams, field: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        check_params(params, 8192)
    assert caught.value.extra["errors"][0]["loc"] == ["query", field]
