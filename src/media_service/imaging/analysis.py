"""Pixel analysis of one photo: quality scores, dominant colours, perceptual hash, text.

Everything except OCR comes from one decode, shrunk on load to a fixed size
(:data:`ANALYSIS_SIDE`): the sharpness measure depends on resolution, so a 48 MP and a
2 MP copy of one photo must be measured at the same size to score the same, and shrinking
on load keeps the decode close to the cost of reading the file. OCR needs more pixels
(small print), so it decodes a second, larger copy, and only when Tesseract is installed.
Runs inside an imaging worker process (see :mod:`~media_service.imaging.pool`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyvips  # type: ignore[import-untyped, unused-ignore]
import structlog

from media_service.imaging.decode import OpenedImage, decode, open_image
from media_service.imaging.limits import DecodeLimits
from media_service.imaging.ocr import OcrFailed, OcrResult, read_text, tesseract_available
from media_service.imaging.palette import NamedColour, dominant_colours
from media_service.imaging.phash import perceptual_hash
from media_service.imaging.quality import luma, measure_quality

ANALYSIS_SIDE = 512  # longest side of the copy every score is measured on
OCR_SIDE = 1600  # longest side of the copy Tesseract reads (text 10 px high in a 4000 px scan)
_PALETTE_SIDE = 64

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PixelAnalysis:
    """What the pixels of one image say about it.

    Scores are 0.00..1.00 (see :class:`~media_service.imaging.quality.QualityScores`;
    ``blur_score`` 1.0 means *sharp*). ``width`` and ``height`` are of the full-size upright
    image. ``text`` is ``None`` when OCR was not asked for, Tesseract is not installed, or it
    failed; OCR boxes are in full-size upright pixels.
    """

    blur_score: float
    brightness: float
    contrast: float
    quality_score: float
    colours: list[NamedColour]
    perceptual_hash: str
    width: int
    height: int
    text: OcrResult | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "blur_score": self.blur_score,
            "brightness": self.brightness,
            "contrast": self.contrast,
            "quality_score": self.quality_score,
            "colours": [colour.to_dict() for colour in self.colours],
            "perceptual_hash": self.perceptual_hash,
            "width": self.width,
            "height": self.height,
            "text": self.text.to_dict() if self.text else None,
        }


def analyse_pixels(
    path: str, limits: DecodeLimits, *, ocr: bool = True, languages: str = "eng"
) -> PixelAnalysis:
    """Analyse the image at ``path`` (checked against ``limits`` before any pixel is read).

    Transparent areas count as white, as most viewers show them. Raises the
    ``imaging.errors`` of decoding; an OCR failure only leaves ``text`` as ``None``.
    """
    opened = open_image(path, limits)
    image = _opaque(decode(opened, target=(ANALYSIS_SIDE, ANALYSIS_SIDE)))
    grey = luma(_pixels(image))
    scores = measure_quality(grey)
    return PixelAnalysis(
        blur_score=scores.blur_score,
        brightness=scores.brightness,
        contrast=scores.contrast,
        quality_score=scores.quality_score,
        colours=dominant_colours(_pixels(_shrunk(image, _PALETTE_SIDE))),
        perceptual_hash=perceptual_hash(grey),
        width=opened.info.width,
        height=opened.info.height,
        text=_text(opened, languages) if ocr else None,
    )


def _text(opened: OpenedImage, languages: str) -> OcrResult | None:
    if tesseract_available() is None:
        return None
    image = _opaque(decode(opened, target=(OCR_SIDE, OCR_SIDE)))
    try:
        result = read_text(image, languages=languages)
    except OcrFailed as exc:
        # The scores and colours are still worth keeping; the text is simply unknown.
        log.warning("ocr_failed", error=str(exc))
        return None
    if result is None:
        return None
    return result.scaled(opened.info.width / image.width, opened.info.height / image.height)


def _opaque(image: pyvips.Image) -> pyvips.Image:
    if not image.hasalpha():
        return image
    return image.flatten(background=[255, 255, 255]).cast("uchar")


def _shrunk(image: pyvips.Image, side: int) -> pyvips.Image:
    scale = side / max(image.width, image.height)
    # A linear kernel after libvips' box shrink: no ringing, so no colour that is not there.
    return image.resize(scale, kernel="linear") if scale < 1 else image


def _pixels(image: pyvips.Image) -> np.ndarray[Any, np.dtype[np.uint8]]:
    data = image.write_to_memory()
    return np.ndarray(shape=(image.height, image.width, image.bands), dtype=np.uint8, buffer=data)
