"""Technical quality of a photo: sharpness, brightness, contrast and one combined score.

Every function takes the luma of the *analysis image* (longest side
:data:`~media_service.imaging.analysis.ANALYSIS_SIDE`), never of the original: the variance
of the Laplacian grows with resolution, so it is only comparable between photos measured
at one fixed size. All scores are 0..1 and rounded to 2 decimals; the formulas and the
reasons for their constants are in ``docs/metadata.md`` ("Quality scores").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float32]]
UInt8Array = np.ndarray[Any, np.dtype[np.uint8]]

# Rec. 709 luma weights, applied to gamma-encoded sRGB (what a viewer sees as brightness).
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)

# Variance of the Laplacian (luma 0..255, 512 px) → blur_score, linear in log10 between
# these: 10 or less is a smear (a photo blurred with sigma 2 px), 1000 is crisp detail.
_VOL_SOFT = 10.0
_VOL_SHARP = 1000.0

# Brightness within this distance of mid-grey is not penalised; beyond it the exposure
# term falls linearly to 0 at black (0.0) or white (1.0).
_EXPOSURE_TOLERANCE = 0.15
# Contrast (normalised RMS) at or above this counts as fully contrasted; ordinary photos
# measure 0.25-0.6, haze and fog 0.1-0.2.
_CONTRAST_FULL = 0.3
# Weights of the combined score: sharpness matters most, a bad exposure or a flat image less.
_WEIGHTS = (0.6, 0.2, 0.2)  # sharpness, exposure, contrast


@dataclass(frozen=True)
class QualityScores:
    """Scores of one image, each 0.00..1.00.

    ``blur_score`` is a *sharpness* score: 1.0 means sharp, 0.0 means fully blurred.
    ``brightness`` is the mean luma (0 black, 1 white); ``contrast`` the RMS contrast
    (1 would be half black, half white); ``quality_score`` combines the three.
    """

    blur_score: float
    brightness: float
    contrast: float
    quality_score: float


def luma(rgb: UInt8Array) -> FloatArray:
    """Rec. 709 luma (0..255, float32) of an ``H × W × 3`` sRGB ``uint8`` array."""
    # Weighted sum per channel, not a matrix product: no multi-threaded BLAS in a worker.
    channels = np.asarray(rgb, dtype=np.float32)
    grey: FloatArray = (
        channels[..., 0] * _LUMA[0] + channels[..., 1] * _LUMA[1] + channels[..., 2] * _LUMA[2]
    )
    return grey


def laplacian_variance(grey: FloatArray) -> float:
    """Variance of the 4-neighbour Laplacian of ``grey`` (OpenCV's ``Laplacian``, ksize 1).

    Edges and fine texture make it large; blur removes them. Images narrower than 3 px
    have no inner pixel and measure 0.
    """
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    centre = grey[1:-1, 1:-1]
    laplacian = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * centre
    return float(laplacian.var(dtype=np.float64))


def blur_score(variance: float) -> float:
    """Sharpness 0..1 from a variance of the Laplacian: log-linear from 10 (0) to 1000 (1)."""
    if variance <= _VOL_SOFT:
        return 0.0
    span = math.log10(_VOL_SHARP / _VOL_SOFT)
    return _clamp(math.log10(variance / _VOL_SOFT) / span)


def exposure_score(brightness: float) -> float:
    """1 for a brightness near mid-grey, falling linearly to 0 at black or white."""
    excess = abs(brightness - 0.5) - _EXPOSURE_TOLERANCE
    return _clamp(1.0 - max(0.0, excess) / (0.5 - _EXPOSURE_TOLERANCE))


def measure_quality(grey: FloatArray) -> QualityScores:
    """All scores of a luma image (0..255) at the fixed analysis size."""
    sharpness = blur_score(laplacian_variance(grey))
    brightness = float(grey.mean(dtype=np.float64)) / 255.0
    # The largest standard deviation values in 0..1 can have is 0.5 (half 0, half 1).
    contrast = _clamp(float(grey.std(dtype=np.float64)) / 255.0 / 0.5)
    parts = (sharpness, exposure_score(brightness), min(1.0, contrast / _CONTRAST_FULL))
    combined = sum(weight * part for weight, part in zip(_WEIGHTS, parts, strict=True))
    return QualityScores(
        blur_score=round(sharpness, 2),
        brightness=round(_clamp(brightness), 2),
        contrast=round(contrast, 2),
        quality_score=round(_clamp(combined), 2),
    )


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))
