"""Built-in modes: crop boxes resolved against the image, and parameters checked per mode."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from media_service.versions.keys import rendition_folder, version_folder, version_key
from media_service.versions.modes import CropBox, Edit, InvalidEdit, Mode, resolve_crop
from media_service.versions.schemas import AiVersionCreate, StyledVersionCreate

SIDES = st.integers(min_value=1, max_value=20_000)
COORDS = st.one_of(
    st.integers(min_value=-50, max_value=25_000).map(float),
    st.floats(min_value=-2, max_value=2),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)


@given(
    box=st.builds(CropBox, COORDS, COORDS, COORDS, COORDS, st.sampled_from(["px", "fraction"])),
    width=SIDES,
    height=SIDES,
)
@example(box=CropBox(0, 0, 1, 1, "fraction"), width=7, height=3)
@example(box=CropBox(0.3, 0.3, 0.7, 0.7, "fraction"), width=10, height=10)
@example(box=CropBox(0, 0, 0.0001, 1, "fraction"), width=100, height=100)
@example(box=CropBox(math.inf, 0, 1, 1, "px"), width=10, height=10)
def test_a_resolved_crop_is_a_non_empty_box_inside_the_image(
    box: CropBox, width: int, height: int
) -> None:
    try:
        left, top, w, h = resolve_crop(box, width, height)
    except InvalidEdit as exc:
        assert str(exc).startswith("crop: ")  # noqa: PT017 - the property is "this or a box"
        return
    assert left >= 0 and top >= 0 and w >= 1 and h >= 1
    assert left + w <= width and top + h <= height
    if box.unit == "px":  # pixels are taken as given
        assert (left, top, w, h) == (box.x, box.y, box.width, box.height)


@given(
    x=st.integers(0, 999),
    y=st.integers(0, 999),
    width=st.integers(1, 1000),
    height=st.integers(1, 1000),
)
def test_every_pixel_box_inside_the_image_is_accepted(
    x: int, y: int, width: int, height: int
) -> None:
    inside = x + width <= 1000 and y + height <= 1000
    box = CropBox(x, y, width, height)
    if inside:
        assert resolve_crop(box, 1000, 1000) == (x, y, width, height)
    else:
        with pytest.raises(InvalidEdit):
            resolve_crop(box, 1000, 1000)


@given(
    eighths=st.tuples(*[st.integers(0, 8)] * 4),
    scale=st.integers(1, 500),
)
def test_fractions_on_whole_pixels_are_exact(eighths: tuple[int, ...], scale: int) -> None:
    x, y, width, height = eighths
    side = 8 * scale
    box = CropBox(x / 8, y / 8, width / 8, height / 8, "fraction")
    if width and height and x + width <= 8 and y + height <= 8:
        expected = (x * scale, y * scale, width * scale, height * scale)
        assert resolve_crop(box, side, side) == expected
    else:
        with pytest.raises(InvalidEdit):
            resolve_crop(box, side, side)


def test_the_whole_image_as_fractions_is_the_whole_image() -> None:
    assert resolve_crop(CropBox(0, 0, 1, 1, "fraction"), 4000, 3000) == (0, 0, 4000, 3000)
    assert resolve_crop(CropBox(0.5, 0.25, 0.5, 0.5, "fraction"), 100, 80) == (50, 20, 50, 40)


def request(mode: str, **params: object) -> StyledVersionCreate:
    return StyledVersionCreate.model_validate(
        {"version_type": "STYLED", "processing_mode": mode, "processing_params": params}
    )


def test_each_mode_takes_exactly_its_parameters() -> None:
    assert request("rotate", angle=270).edit() == Edit(Mode.ROTATE, angle=270)
    crop = request("crop", x=1, y=2, width=3, height=4).edit()
    assert crop == Edit(Mode.CROP, crop=CropBox(1, 2, 3, 4, "px"))
    assert request("sepia").edit() == Edit(Mode.SEPIA)
    for mode, params in [
        ("rotate", {"angle": 45}),
        ("rotate", {}),
        ("rotate", {"angle": 90, "extra": 1}),
        ("crop", {"x": 0, "y": 0, "width": 10}),
        ("crop", {"x": 0, "y": 0, "width": 10, "height": math.nan}),
        ("crop", {"x": 0.5, "y": 0, "width": 0.6, "height": 1, "unit": "fraction"}),
        ("vivid", {"amount": 3}),
    ]:
        with pytest.raises(ValidationError):
            request(mode, **params).edit()


def test_versions_have_folders_of_their_own_inside_the_photos() -> None:
    photo = "file_01jd3k5x9m2q8r7t6v5w4y3z2b"
    folder = version_folder(photo, "ver_1")
    assert folder == f"files/2b/{photo}/versions/ver_1/"
    assert rendition_folder(photo, version_key(photo, "ver_1")) == folder
    assert rendition_folder(photo, f"files/2b/{photo}/original") == f"files/2b/{photo}/"


@pytest.mark.parametrize(
    "params",
    [
        {"a": 123456789012345678901234567890},  # beyond 64 bits: orjson cannot store it
        {"a": "x\u0000"},  # PostgreSQL's JSONB refuses NUL
        {"a\u0000": 1},
        {"a": [{"b": "\u0000"}]},
    ],
)
def test_ai_params_that_cannot_be_stored_are_a_validation_error(params: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AiVersionCreate.model_validate({"version_type": "AI_ENHANCED", "processing_params": params})


def test_ordinary_ai_params_are_kept() -> None:
    params = {"strength": 0.7, "style": "warm", "faces": [1, 2]}
    body = AiVersionCreate.model_validate(
        {"version_type": "AI_ENHANCED", "processing_params": params}
    )
    assert body.processing_params == params
