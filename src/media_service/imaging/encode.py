"""Encode an sRGB image to bytes, with no metadata, optionally within a byte budget."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyvips  # type: ignore[import-untyped, unused-ignore]

from media_service.imaging.specs import MIN_BUDGET_QUALITY, OutputFormat

BUDGET_STEP = 8  # quality points per retry: at most six encodes from 82 down to 40
WHITE = [255, 255, 255]


@dataclass(frozen=True)
class Encoded:
    """Encoded bytes, the quality used and whether they fit the byte budget."""

    data: bytes
    quality: int
    fits_budget: bool


def encode(
    image: pyvips.Image, format: OutputFormat, quality: int, max_bytes: int | None = None
) -> Encoded:
    """Encode ``image`` (8-bit sRGB) as ``format``.

    No EXIF, XMP, IPTC, comment or ICC profile is written (``keep="none"``): the pixels are
    sRGB, which is what a profile-less image means. Alpha is flattened on white for JPEG.
    """
    if format is OutputFormat.JPEG and image.hasalpha():
        image = image.flatten(background=WHITE)
    save = _SAVERS[format]
    data = save(image, quality)
    if max_bytes is None or format is OutputFormat.PNG:
        return Encoded(data, quality, max_bytes is None or len(data) <= max_bytes)
    for lower in _lower_qualities(quality):
        if len(data) <= max_bytes:
            break
        data, quality = save(image, lower), lower
    return Encoded(data, quality, len(data) <= max_bytes)


def _lower_qualities(quality: int) -> Iterator[int]:
    while quality > MIN_BUDGET_QUALITY:
        quality = max(quality - BUDGET_STEP, MIN_BUDGET_QUALITY)
        yield quality


def _jpeg(image: pyvips.Image, quality: int) -> bytes:
    return bytes(image.jpegsave_buffer(Q=quality, optimize_coding=True, keep="none"))


def _webp(image: pyvips.Image, quality: int) -> bytes:
    return bytes(image.webpsave_buffer(Q=quality, keep="none"))


def _avif(image: pyvips.Image, quality: int) -> bytes:
    # libvips' default AVIF effort takes ~5 s for 1920 px; effort 2 takes ~0.8 s.
    return bytes(
        image.heifsave_buffer(Q=quality, compression="av1", effort=2, bitdepth=8, keep="none")
    )


def _png(image: pyvips.Image, quality: int) -> bytes:
    return bytes(image.pngsave_buffer(compression=6, keep="none"))


_SAVERS: dict[OutputFormat, Callable[[pyvips.Image, int], bytes]] = {
    OutputFormat.JPEG: _jpeg,
    OutputFormat.WEBP: _webp,
    OutputFormat.AVIF: _avif,
    OutputFormat.PNG: _png,
}
