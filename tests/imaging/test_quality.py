"""Quality scores: the formulas on known arrays, then real photos changed on purpose.

The photos are scikit-image's bundled samples (public domain or CC0), read from the
installed package and written as JPEG into a temporary folder: nothing is stored here.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter
from skimage import data

from media_service.imaging.analysis import PixelAnalysis, analyse_pixels
from media_service.imaging.limits import DecodeLimits
from media_service.imaging.pool import ImagingPool
from media_service.imaging.quality import (
    blur_score,
    exposure_score,
    laplacian_variance,
    luma,
    measure_quality,
)

LIMITS = DecodeLimits()
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
analyse = functools.partial(analyse_pixels, ocr=False)


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(data, name)()).convert("RGB")


def detailed(width: int = 2400, height: int = 1600, seed: int = 0) -> Image.Image:
    """A synthetic "photo": smooth gradient, shapes with hard edges, text-like strokes, grain."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :, None]
    base = np.broadcast_to(ramp, (height, width, 3)).copy()
    image = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(40, 300))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x, y, x + size, y + size // 2), fill=colour, outline=(0, 0, 0), width=4)
    for row in range(8):
        for column in range(12):
            x, y = 60 + column * 190, 80 + row * 190
            draw.rectangle((x, y, x + 120, y + 12), fill=(250, 250, 250))
            draw.line((x, y + 30, x + 120, y + 60), fill=(10, 10, 10), width=6)
    grain = rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, np.float32) + grain, 0, 255).astype(np.uint8))


async def analysed(pool: ImagingPool, path: Path) -> PixelAnalysis:
    return await pool.run(analyse, str(path), LIMITS)


def scores(result: PixelAnalysis) -> tuple[float, float, float, float]:
    return (result.blur_score, result.brightness, result.contrast, result.quality_score)


# The formulas


def test_laplacian_variance_of_flat_and_checkered_images() -> None:
    assert laplacian_variance(np.full((50, 50), 128, np.float32)) == 0.0
    checker = (np.indices((50, 50)).sum(axis=0) % 2 * 255).astype(np.float32)
    # Every inner Laplacian is ±4 × 255 (alternating): variance (4 × 255)² / 1.
    assert laplacian_variance(checker) == pytest.approx((4 * 255) ** 2)
    assert laplacian_variance(np.zeros((2, 40), np.float32)) == 0.0


def test_blur_score_curve_is_log_linear_between_10_and_1000() -> None:
    assert [blur_score(v) for v in (0, 10, 100, 1000, 50_000)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert blur_score(31.6) == pytest.approx(0.25, abs=0.01)


def test_exposure_is_full_near_mid_grey_and_zero_at_the_ends() -> None:
    assert exposure_score(0.5) == exposure_score(0.36) == exposure_score(0.64) == 1.0
    assert exposure_score(0.0) == exposure_score(1.0) == 0.0
    assert exposure_score(0.2) == pytest.approx(1 - 0.15 / 0.35)


def test_luma_uses_rec709_weights() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)
    assert luma(rgb)[0].tolist() == pytest.approx([54.213, 182.376, 18.411, 255.0], abs=0.01)


def test_extremes_of_the_scores() -> None:
    black = measure_quality(np.zeros((64, 64), np.float32))
    assert (black.blur_score, black.brightness, black.contrast, black.quality_score) == (
        0.0,
        0.0,
        0.0,
        0.0,
    )
    halves = np.zeros((64, 64), np.float32)
    halves[:, 32:] = 255
    split = measure_quality(halves)
    assert (split.brightness, split.contrast) == (0.5, 1.0)


# Real photos through the worker pool


async def test_blurred_photo_scores_lower(pool: ImagingPool, tmp_path: Path) -> None:
    for name in PHOTOS:
        original = photo(name)
        original.save(tmp_path / "sharp.jpg", quality=92)
        original.filter(ImageFilter.GaussianBlur(3)).save(tmp_path / "blurred.jpg", quality=92)
        sharp = await analysed(pool, tmp_path / "sharp.jpg")
        blurred = await analysed(pool, tmp_path / "blurred.jpg")
        assert sharp.blur_score >= 0.7, name
        assert blurred.blur_score <= sharp.blur_score - 0.5, name
        assert blurred.quality_score < sharp.quality_score, name


async def test_blur_on_a_large_photo_is_seen_at_the_analysis_size(
    pool: ImagingPool, tmp_path: Path
) -> None:
    image = detailed()
    image.save(tmp_path / "sharp.jpg", quality=90)
    image.filter(ImageFilter.GaussianBlur(3)).save(tmp_path / "blurred.jpg", quality=90)
    sharp = await analysed(pool, tmp_path / "sharp.jpg")
    blurred = await analysed(pool, tmp_path / "blurred.jpg")
    assert blurred.blur_score < sharp.blur_score - 0.1
    assert blurred.quality_score < sharp.quality_score


async def test_darker_copy_has_lower_brightness(pool: ImagingPool, tmp_path: Path) -> None:
    for name in PHOTOS:
        original = photo(name)
        original.save(tmp_path / "photo.jpg", quality=92)
        ImageEnhance.Brightness(original).enhance(0.4).save(tmp_path / "dark.jpg", quality=92)
        normal = await analysed(pool, tmp_path / "photo.jpg")
        dark = await analysed(pool, tmp_path / "dark.jpg")
        assert dark.brightness < normal.brightness * 0.5, name
        assert dark.quality_score < normal.quality_score, name


async def test_low_contrast_copy_has_lower_contrast(pool: ImagingPool, tmp_path: Path) -> None:
    for name in PHOTOS:
        original = photo(name)
        original.save(tmp_path / "photo.jpg", quality=92)
        ImageEnhance.Contrast(original).enhance(0.3).save(tmp_path / "flat.jpg", quality=92)
        normal = await analysed(pool, tmp_path / "photo.jpg")
        flat = await analysed(pool, tmp_path / "flat.jpg")
        assert flat.contrast < normal.contrast * 0.4, name
        # Mean luma barely moves: contrast is measured around it.
        assert abs(flat.brightness - normal.brightness) <= 0.05, name
        assert flat.quality_score < normal.quality_score, name


async def test_scores_stay_within_0_and_1(pool: ImagingPool, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    images = {
        "black.png": Image.new("RGB", (300, 200), (0, 0, 0)),
        "white.png": Image.new("RGB", (300, 200), (255, 255, 255)),
        "noise.png": Image.fromarray(rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)),
        "checker.png": Image.fromarray(
            (np.indices((300, 300)).sum(axis=0) % 2 * 255).astype(np.uint8)
        ),
        "tiny.png": Image.new("RGB", (2, 1), (10, 200, 30)),
        "detailed.jpg": detailed(1200, 800),
    }
    for name, image in images.items():
        image.save(tmp_path / name)
        result = await analysed(pool, tmp_path / name)
        for value in scores(result):
            assert 0.0 <= value <= 1.0, name
            assert value == round(value, 2), name
    black = await analysed(pool, tmp_path / "black.png")
    white = await analysed(pool, tmp_path / "white.png")
    assert (black.brightness, white.brightness) == (0.0, 1.0)


async def test_blur_score_does_not_depend_on_the_input_resolution(
    pool: ImagingPool, tmp_path: Path
) -> None:
    # Softened so that the score sits mid-curve, where a resolution effect would show.
    large = detailed(2400, 1600).filter(ImageFilter.GaussianBlur(6))
    large.save(tmp_path / "large.jpg", quality=90)
    large.resize((1200, 800), Image.Resampling.LANCZOS).save(tmp_path / "half.jpg", quality=90)
    first = await analysed(pool, tmp_path / "large.jpg")
    second = await analysed(pool, tmp_path / "half.jpg")
    assert 0.2 <= first.blur_score <= 0.8
    assert abs(first.blur_score - second.blur_score) <= 0.1
    assert abs(first.quality_score - second.quality_score) <= 0.1
    for name in ("coffee", "astronaut"):
        image = photo(name)
        for side in (1600, 1000):
            size = (side, round(side * image.height / image.width))
            image.resize(size, Image.Resampling.LANCZOS).save(tmp_path / f"{side}.jpg")
        big = await analysed(pool, tmp_path / "1600.jpg")
        small = await analysed(pool, tmp_path / "1000.jpg")
        assert abs(big.blur_score - small.blur_score) <= 0.1, name
