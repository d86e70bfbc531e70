"""Perceptual hash: stable under resizing, recompression and brightening; apart otherwise."""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from skimage import data

from media_service.imaging.analysis import analyse_pixels
from media_service.imaging.limits import DecodeLimits
from media_service.imaging.phash import hamming_distance, perceptual_hash
from media_service.imaging.pool import ImagingPool
from media_service.imaging.quality import luma

LIMITS = DecodeLimits()
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "horse")
analyse = functools.partial(analyse_pixels, ocr=False)


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(data, name)()).convert("RGB")


def scaled(factor: float) -> Callable[[Image.Image], Image.Image]:
    def resize(image: Image.Image) -> Image.Image:
        size = (round(image.width * factor), round(image.height * factor))
        return image.resize(size, Image.Resampling.LANCZOS)

    return resize


def brightened(factor: float) -> Callable[[Image.Image], Image.Image]:
    return lambda image: ImageEnhance.Brightness(image).enhance(factor)


# Each copy is saved as JPEG; "quality" is the JPEG quality of that save.
COPIES: dict[str, tuple[Callable[[Image.Image], Image.Image], int]] = {
    "half size": (scaled(0.5), 90),
    "1.7× larger": (scaled(1.7), 90),
    "quality 60": (lambda image: image, 60),
    "brightened 10 %": (brightened(1.1), 90),
    "brightened 15 %, quality 60": (brightened(1.15), 60),
    "resized and recompressed": (scaled(0.6), 60),
}


async def hash_of(pool: ImagingPool, path: Path) -> str:
    return (await pool.run(analyse, str(path), LIMITS)).perceptual_hash


async def test_hash_is_64_bits_in_hex_and_deterministic(pool: ImagingPool, tmp_path: Path) -> None:
    photo("astronaut").save(tmp_path / "a.jpg", quality=90)
    first, second = await hash_of(pool, tmp_path / "a.jpg"), await hash_of(pool, tmp_path / "a.jpg")
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert first == second


async def test_altered_copies_stay_close(pool: ImagingPool, tmp_path: Path) -> None:
    for name in PHOTOS:
        original = photo(name)
        original.save(tmp_path / "original.jpg", quality=90)
        reference = await hash_of(pool, tmp_path / "original.jpg")
        for label, (change, quality) in COPIES.items():
            change(original).save(tmp_path / "copy.jpg", quality=quality)
            distance = hamming_distance(reference, await hash_of(pool, tmp_path / "copy.jpg"))
            assert distance <= 6, f"{name}, {label}: {distance}"


async def test_different_photos_are_far_apart(pool: ImagingPool, tmp_path: Path) -> None:
    hashes = []
    for name in PHOTOS:
        photo(name).save(tmp_path / f"{name}.jpg", quality=90)
        hashes.append(await hash_of(pool, tmp_path / f"{name}.jpg"))
    distances = [hamming_distance(a, b) for a, b in itertools.combinations(hashes, 2)]
    assert min(distances) > 20
    assert 26 <= float(np.mean(distances)) <= 38  # unrelated hashes differ in about half the bits


def test_hash_of_an_array_does_not_depend_on_its_scale() -> None:
    grey = luma(np.asarray(photo("chelsea")))
    doubled = np.kron(grey, np.ones((2, 2), np.float32))  # exactly the same picture, 2× larger
    assert perceptual_hash(doubled) == perceptual_hash(grey)
    # A uniform offset only moves the DC coefficient.
    assert perceptual_hash(grey + 20) == perceptual_hash(grey)
    assert hamming_distance(perceptual_hash(grey), perceptual_hash(grey[:, ::-1])) > 10


def test_tiny_and_flat_images_hash_without_error() -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", perceptual_hash(np.full((1, 1), 7.0, np.float32)))
    assert re.fullmatch(r"[0-9a-f]{16}", perceptual_hash(np.zeros((3, 500), np.float32)))


def test_hamming_distance() -> None:
    assert hamming_distance("0" * 16, "f" * 16) == 64
    assert hamming_distance("00000000000000ff", "000000000000000f") == 4
    assert hamming_distance("0123456789ABCDEF", "0123456789abcdef") == 0
    a, b = "8f0e1d2c3b4a5968", "0f0e1d2c3b4a5961"
    assert hamming_distance(a, b) == hamming_distance(b, a) == 3  # 8→0, 8→1 (1000 ^ 0001)


@pytest.mark.parametrize("bad", ["", "0" * 15, "0" * 17, "g" * 16, "0x" + "0" * 14, " " + "0" * 15])
def test_hamming_distance_refuses_what_is_not_a_hash(bad: str) -> None:
    with pytest.raises(ValueError, match="perceptual hash"):
        hamming_distance(bad, "0" * 16)
