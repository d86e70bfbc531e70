"""Test images, generated on the fly (no binary fixtures), and a shared worker pool."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
import pyvips
from PIL import Image

from media_service.imaging.limits import DecodeLimits
from media_service.imaging.pool import ImagingPool

RED, GREEN, BLUE = (255, 0, 0), (0, 200, 0), (0, 0, 255)
UPRIGHT_SIZE = (120, 80)

# How to store an upright image so that a viewer applying EXIF orientation N shows it
# upright: the inverse of the transform that orientation N asks the viewer to apply.
STORE_FOR_ORIENTATION: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def quadrants(size: tuple[int, int] = UPRIGHT_SIZE) -> Image.Image:
    """Blue, with a red top-left and a green top-right quadrant: every flip and turn shows."""
    width, height = size
    image = Image.new("RGB", size, BLUE)
    image.paste(RED, (0, 0, width // 2, height // 2))
    image.paste(GREEN, (width // 2, 0, width, height // 2))
    return image


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random RGB pixels: incompressible, so encoded sizes depend strongly on quality."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def save(image: Image.Image, path: Path, **params: object) -> str:
    image.save(path, **params)
    return str(path)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_with_size(png: bytes, width: int, height: int) -> bytes:
    """``png`` with its IHDR claiming another size (CRC fixed, so the chunk looks valid)."""
    assert png[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + png[24:29]
    return png[:8] + png_chunk(b"IHDR", ihdr) + png[33:]


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A real, valid 1-bit PNG of ``width``×``height`` black pixels: tens of kB on disk."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def p3_profile() -> bytes:
    """libvips' bundled Display P3 profile."""
    pixel = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb").cast("uchar")
    return bytes(pixel.icc_transform("p3").get("icc-profile-data"))


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture
def limits() -> DecodeLimits:
    return DecodeLimits()


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., str]:
    """``write(name, image_or_bytes, **save_params)`` → path of the file written."""
    pillow_heif.register_heif_opener()  # lets Pillow write HEIC (format="HEIF")

    def _write(name: str, content: Image.Image | bytes, **params: object) -> str:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
            return str(path)
        return save(content, path, **params)

    return _write


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[ImagingPool]:
    imaging_pool = ImagingPool(workers=2)
    yield imaging_pool
    await imaging_pool.close()
