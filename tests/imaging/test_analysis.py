"""The whole pixel analysis, run in real worker processes."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image
from skimage import data

from media_service.imaging.analysis import ANALYSIS_SIDE, PixelAnalysis, analyse_pixels
from media_service.imaging.decode import inspect_image
from media_service.imaging.errors import ImageTooLarge, UnsupportedImage
from media_service.imaging.limits import DecodeLimits
from media_service.imaging.phash import hamming_distance
from media_service.imaging.pool import ImagingPool

from .conftest import STORE_FOR_ORIENTATION, bomb_png, exif_with_orientation, quadrants

Write = Callable[..., str]
LIMITS = DecodeLimits()
analyse = functools.partial(analyse_pixels, ocr=False)


async def test_photo_analysis(pool: ImagingPool, write: Write) -> None:
    path = write("chelsea.jpg", Image.fromarray(data.chelsea()), quality=92)
    result = await pool.run(analyse, path, LIMITS)
    assert isinstance(result, PixelAnalysis)
    assert (result.width, result.height) == (451, 300)
    assert result.text is None
    assert 0.6 <= result.blur_score <= 1 and 0.6 <= result.quality_score <= 1
    assert 0.3 <= result.brightness <= 0.6 and 0.1 <= result.contrast <= 0.5
    assert {colour.name for colour in result.colours} & {"brown", "beige"}  # a tabby cat
    assert await pool.run(analyse, path, LIMITS) == result  # deterministic


async def test_to_dict_is_json_ready(pool: ImagingPool, write: Write) -> None:
    path = write("q.png", quadrants((300, 200)))
    result = await pool.run(analyse, path, LIMITS)
    stored = json.loads(json.dumps(result.to_dict()))
    assert stored["perceptual_hash"] == result.perceptual_hash
    assert stored["colours"] == [colour.to_dict() for colour in result.colours]
    assert {colour["name"] for colour in stored["colours"]} == {"blue", "red", "green"}
    assert stored["text"] is None and (stored["width"], stored["height"]) == (300, 200)


async def test_size_is_upright_full_size_and_pixels_are_read_upright(
    pool: ImagingPool, write: Write
) -> None:
    upright = Image.fromarray(data.astronaut()).resize((1200, 900))
    reference = await pool.run(analyse, write("upright.jpg", upright, quality=90), LIMITS)
    for orientation in (6, 8, 3):
        transform = STORE_FOR_ORIENTATION[orientation]
        assert transform is not None
        stored = upright.transpose(transform)
        exif = exif_with_orientation(orientation)
        path = write(f"o{orientation}.jpg", stored, quality=90, exif=exif)
        result = await pool.run(analyse, path, LIMITS)
        assert (result.width, result.height) == (1200, 900), orientation
        assert hamming_distance(result.perceptual_hash, reference.perceptual_hash) <= 2
        assert abs(result.blur_score - reference.blur_score) <= 0.05


async def test_large_image_is_measured_on_the_fixed_size_copy(
    pool: ImagingPool, write: Write
) -> None:
    rng = np.random.default_rng(5)
    large = Image.fromarray(rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8))
    path = write("large.jpg", large, quality=85)
    result = await pool.run(analyse, path, LIMITS)
    assert (result.width, result.height) == (4000, 3000)
    info = inspect_image(path, LIMITS)
    assert (info.width, info.height) == (result.width, result.height)
    assert info.width > ANALYSIS_SIDE
    # Pixel-level noise averages out on the 512 px copy: it is measured as seen at that size.
    assert result.contrast < 0.1
    assert [colour.name for colour in result.colours] == ["grey"]


async def test_transparent_areas_count_as_white(pool: ImagingPool, write: Write) -> None:
    image = Image.new("RGBA", (200, 100), (255, 0, 0, 0))
    image.paste((0, 0, 0, 255), (0, 0, 50, 100))  # a quarter opaque black
    result = await pool.run(analyse, write("alpha.png", image), LIMITS)
    assert [(colour.name, colour.share) for colour in result.colours] == [
        ("white", pytest.approx(0.75, abs=0.02)),
        ("black", pytest.approx(0.25, abs=0.02)),
    ]
    assert result.brightness == pytest.approx(0.75, abs=0.02)


async def test_greyscale_and_sixteen_bit_images(pool: ImagingPool, write: Write) -> None:
    grey = Image.fromarray(data.camera())  # mode "L"
    result = await pool.run(analyse, write("camera.png", grey), LIMITS)
    assert {colour.name for colour in result.colours} <= {"black", "grey", "white"}
    deep = Image.fromarray((data.camera().astype(np.uint16) * 257).astype(np.uint16))
    deep_result = await pool.run(analyse, write("camera16.png", deep), LIMITS)
    assert abs(deep_result.brightness - result.brightness) <= 0.01
    assert hamming_distance(deep_result.perceptual_hash, result.perceptual_hash) <= 2


async def test_decode_errors_pass_through(pool: ImagingPool, write: Write) -> None:
    with pytest.raises(UnsupportedImage):
        await pool.run(analyse, write("notes.jpg", b"just some text, not a picture"), LIMITS)
    with pytest.raises(ImageTooLarge):
        await pool.run(analyse, write("bomb.png", bomb_png()), LIMITS)


def test_a_missing_file_is_the_callers_bug() -> None:
    with pytest.raises(FileNotFoundError):
        analyse_pixels("/nonexistent/photo.jpg", LIMITS)
