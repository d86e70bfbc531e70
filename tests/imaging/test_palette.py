"""Dominant colours and their names."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.color import rgb2lab

from media_service.imaging.analysis import analyse_pixels
from media_service.imaging.colours_named import COLOUR_NAMES, colour_name, srgb_to_lab
from media_service.imaging.limits import DecodeLimits
from media_service.imaging.palette import MAX_COLOURS, NamedColour, dominant_colours
from media_service.imaging.pool import ImagingPool

LIMITS = DecodeLimits()
Pixels = np.ndarray[Any, np.dtype[np.uint8]]
analyse = functools.partial(analyse_pixels, ocr=False)


def blocks(*parts: tuple[tuple[int, int, int], float], size: tuple[int, int] = (64, 64)) -> Pixels:
    """An image of vertical bands: each (colour, fraction of the width)."""
    width, height = size
    pixels = np.zeros((height, width, 3), np.uint8)
    start = 0
    for colour, fraction in parts:
        end = start + round(fraction * width)
        pixels[:, start:end] = colour
        start = end
    return pixels


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return (int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16))


def close(hex_colour: str, expected: tuple[int, int, int], tolerance: int = 6) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb(hex_colour), expected, strict=True))


async def test_seventy_percent_blue_thirty_percent_red(pool: ImagingPool, tmp_path: Path) -> None:
    image = blocks(((0, 0, 255), 0.7), ((255, 0, 0), 0.3), size=(1000, 600))
    Image.fromarray(image).save(tmp_path / "flag.png")
    colours = (await pool.run(analyse, str(tmp_path / "flag.png"), LIMITS)).colours
    assert [colour.name for colour in colours] == ["blue", "red"]
    assert colours[0].share == pytest.approx(0.7, abs=0.02)
    assert colours[1].share == pytest.approx(0.3, abs=0.02)
    assert close(colours[0].hex, (0, 0, 255)) and close(colours[1].hex, (255, 0, 0))


async def test_palette_of_a_photo_is_deterministic(pool: ImagingPool, tmp_path: Path) -> None:
    Image.fromarray(data.coffee()).save(tmp_path / "coffee.jpg", quality=90)
    runs = [await pool.run(analyse, str(tmp_path / "coffee.jpg"), LIMITS) for _ in range(3)]
    assert runs[0].colours == runs[1].colours == runs[2].colours
    colours = runs[0].colours
    assert 2 <= len(colours) <= MAX_COLOURS
    assert sum(colour.share for colour in colours) == pytest.approx(1.0, abs=0.01)
    assert [c.share for c in colours] == sorted((c.share for c in colours), reverse=True)
    assert {colour.name for colour in colours} <= set(COLOUR_NAMES)
    assert "brown" in {colour.name for colour in colours}  # coffee in a cup on a wooden table


def test_flat_image_has_one_colour() -> None:
    colours = dominant_colours(np.full((64, 64, 3), (30, 144, 255), np.uint8))
    assert colours == [NamedColour(hex="#1e90ff", share=1.0, name="blue")]


def test_near_identical_clusters_are_merged() -> None:
    # ΔE76 ≈ 3: one colour to the eye, even though the pixels differ.
    image = blocks(((200, 30, 30), 0.5), ((206, 36, 34), 0.5))
    colours = dominant_colours(image)
    assert len(colours) == 1 and colours[0].name == "red" and colours[0].share == 1.0


def test_specks_are_dropped_and_shares_still_add_up_to_one() -> None:
    image = blocks(((0, 128, 0), 0.6), ((255, 255, 255), 0.4), size=(100, 100))
    image[0, :1] = (255, 0, 255)  # 1 pixel in 10,000
    colours = dominant_colours(image)
    assert [colour.name for colour in colours] == ["green", "white"]
    assert sum(colour.share for colour in colours) == pytest.approx(1.0)


def test_at_most_max_colours_from_many() -> None:
    hues = [(255, 0, 0), (0, 160, 0), (0, 0, 255), (255, 255, 0), (128, 0, 128), (0, 0, 0)]
    image = blocks(*((colour, 1 / 6) for colour in hues), size=(120, 60))
    assert len(dominant_colours(image)) == MAX_COLOURS
    two = dominant_colours(image, max_colours=2)
    assert len(two) == 2 and sum(colour.share for colour in two) == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError, match="max_colours"):
        dominant_colours(image, max_colours=0)


def test_noise_gives_a_bounded_palette() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    first, second = dominant_colours(pixels), dominant_colours(pixels)
    assert first == second and 1 <= len(first) <= MAX_COLOURS
    assert all(0 < colour.share <= 1 for colour in first)


def test_empty_image_has_no_colours() -> None:
    assert dominant_colours(np.zeros((0, 0, 3), np.uint8)) == []


def test_to_dict_is_json_ready() -> None:
    colour = NamedColour(hex="#ff0000", share=0.3, name="red")
    assert json.loads(json.dumps(colour.to_dict())) == {
        "hex": "#ff0000",
        "share": 0.3,
        "name": "red",
    }


@pytest.mark.parametrize(
    ("hex_colour", "name"),
    [
        ("#1e90ff", "blue"), ("#0000ff", "blue"), ("#000080", "blue"), ("#87ceeb", "blue"),
        ("#ff0000", "red"), ("#8b0000", "red"), ("#dc143c", "red"),
        ("#ffa500", "orange"), ("#ff8c00", "orange"),
        ("#ffff00", "yellow"), ("#ffd700", "yellow"),
        ("#008000", "green"), ("#00ff00", "green"), ("#6b8e23", "green"), ("#90ee90", "green"),
        ("#008080", "teal"), ("#40e0d0", "teal"), ("#00ffff", "teal"),
        ("#800080", "purple"), ("#4b0082", "purple"), ("#9370db", "purple"),
        ("#ffc0cb", "pink"), ("#ff69b4", "pink"), ("#ff00ff", "pink"),
        ("#8b4513", "brown"), ("#654321", "brown"), ("#800000", "brown"),
        ("#f5f5dc", "beige"), ("#d2b48c", "beige"), ("#f5deb3", "beige"),
        ("#000000", "black"), ("#0a0a20", "black"), ("#192133", "black"),
        ("#ffffff", "white"), ("#f8f8f8", "white"),
        ("#808080", "grey"), ("#c0c0c0", "grey"), ("#404040", "grey"),
    ],
)  # fmt: skip
def test_colour_names(hex_colour: str, name: str) -> None:
    assert colour_name(rgb(hex_colour)) == name


def test_lab_conversion_matches_scikit_image() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (1, 500, 3), dtype=np.uint8)
    assert np.allclose(srgb_to_lab(pixels), rgb2lab(pixels), atol=0.01)
