"""Dominant colours: k-means in CIELAB on a small copy of the image, deterministic.

Clustering runs in CIELAB so that "one colour" means "looks like one colour". k-means++
starts from a fixed seed, so the same pixels always give the same palette. Clusters closer
than ``_MERGE_DELTA_E`` are merged (k-means splits one big flat area into several
near-identical clusters), specks under ``_MIN_SHARE`` are dropped, and every pixel is finally
given to the nearest colour kept, so the shares add up to 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from media_service.imaging.colours_named import colour_name, srgb_to_lab

UInt8Array = np.ndarray[Any, np.dtype[np.uint8]]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.intp]]

MAX_COLOURS = 5
_CLUSTERS = 8  # more than MAX_COLOURS: merging and dropping bring the count down
_ITERATIONS = 15
_SEED = 0
_MAX_SAMPLES = 4096  # a 64 × 64 copy; larger inputs are sampled on a regular grid
_MERGE_DELTA_E = 12.0  # ΔE76 under which two clusters are one colour to the eye
_MIN_SHARE = 0.02


@dataclass(frozen=True)
class NamedColour:
    """One dominant colour: its mean sRGB ``hex`` ("#1e90ff"), the ``share`` of the image
    it covers (0..1; the shares of one palette add up to about 1) and its plain ``name``."""

    hex: str
    share: float
    name: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"hex": self.hex, "share": self.share, "name": self.name}


def dominant_colours(rgb: UInt8Array, *, max_colours: int = MAX_COLOURS) -> list[NamedColour]:
    """Up to ``max_colours`` dominant colours of an ``H × W × 3`` sRGB image, largest first.

    Meant for a copy of about 64 × 64 pixels (the shares are of that copy); larger arrays
    are sampled on a regular grid to that many pixels. Raises ``ValueError`` when
    ``max_colours`` is under 1.
    """
    if max_colours < 1:
        raise ValueError(f"max_colours must be at least 1, not {max_colours}")
    pixels = _samples(rgb)
    if len(pixels) == 0:
        return []
    lab = srgb_to_lab(pixels)
    centres = _kmeans(lab, _kmeans_plus_plus(lab, _CLUSTERS))
    centres = _merge(lab, centres)
    centres = _keep(lab, centres, max_colours)
    labels = _assign(lab, centres)
    colours = [_colour(pixels[labels == k], len(pixels)) for k in range(len(centres))]
    return sorted(colours, key=lambda colour: (-colour.share, colour.hex))


def _samples(rgb: UInt8Array) -> UInt8Array:
    height, width = rgb.shape[:2]
    step = max(1, math.ceil(math.sqrt(height * width / _MAX_SAMPLES)))
    return np.ascontiguousarray(rgb[::step, ::step, :3]).reshape(-1, 3)


def _kmeans_plus_plus(lab: FloatArray, count: int) -> FloatArray:
    """Seeds spread by k-means++; fewer than ``count`` when the image has fewer colours."""
    rng = np.random.default_rng(_SEED)
    centres = [lab[int(rng.integers(len(lab)))]]
    nearest = _squared_distances(lab, np.array(centres))[:, 0]
    while len(centres) < count and nearest.sum() > 0:
        chosen = lab[int(rng.choice(len(lab), p=nearest / nearest.sum()))]
        centres.append(chosen)
        nearest = np.minimum(nearest, ((lab - chosen) ** 2).sum(axis=1))
    return np.array(centres)


def _kmeans(lab: FloatArray, centres: FloatArray) -> FloatArray:
    """Lloyd's iterations until the assignment stops changing; empty clusters are dropped."""
    labels: IntArray | None = None
    for _ in range(_ITERATIONS):
        new_labels = _assign(lab, centres)
        if labels is not None and np.array_equal(labels, new_labels):
            break
        labels = new_labels
        centres = _means(lab, labels, len(centres))
    return centres


def _means(lab: FloatArray, labels: IntArray, count: int) -> FloatArray:
    """The mean of each cluster, without the clusters that lost all their pixels."""
    sizes = np.bincount(labels, minlength=count)
    sums = np.stack([np.bincount(labels, lab[:, i], minlength=count) for i in range(3)], axis=1)
    used = sizes > 0
    means: FloatArray = sums[used] / sizes[used, None]
    return means


def _merge(lab: FloatArray, centres: FloatArray) -> FloatArray:
    """Merge the closest pair of clusters while it is under ``_MERGE_DELTA_E`` apart."""
    centres = centres.copy()
    counts = np.bincount(_assign(lab, centres), minlength=len(centres)).astype(np.float64)
    while len(centres) > 1:
        distances = np.sqrt(_squared_distances(centres, centres))
        np.fill_diagonal(distances, np.inf)
        first, second = np.unravel_index(int(np.argmin(distances)), distances.shape)
        if distances[first, second] >= _MERGE_DELTA_E:
            break
        total = counts[first] + counts[second]
        merged = (centres[first] * counts[first] + centres[second] * counts[second]) / total
        centres[first], counts[first] = merged, total
        centres, counts = np.delete(centres, second, axis=0), np.delete(counts, second)
    return centres


def _keep(lab: FloatArray, centres: FloatArray, max_colours: int) -> FloatArray:
    """The largest clusters, at most ``max_colours``, each covering at least ``_MIN_SHARE``."""
    counts = np.bincount(_assign(lab, centres), minlength=len(centres))
    order = np.argsort(-counts, kind="stable")
    kept = [k for k in order[:max_colours] if counts[k] >= _MIN_SHARE * len(lab)]
    return centres[kept or order[:1]]


def _assign(lab: FloatArray, centres: FloatArray) -> IntArray:
    """The nearest centre of each point. |p|² is the same for every centre, so
    argmin |p - c|² = argmin (|c|² - 2 p·c): no N × K × 3 array, no per-point norm."""
    scores = (centres**2).sum(axis=1)[None, :] - 2 * (lab @ centres.T)
    labels: IntArray = np.argmin(scores, axis=1)
    return labels


def _squared_distances(points: FloatArray, centres: FloatArray) -> FloatArray:
    # |p - c|² = |p|² - 2 p·c + |c|², clipped at 0 against rounding.
    products = points @ centres.T
    squares = (points**2).sum(axis=1)[:, None] + (centres**2).sum(axis=1)[None, :]
    distances: FloatArray = np.maximum(squares - 2 * products, 0.0)
    return distances


def _colour(members: UInt8Array, total: int) -> NamedColour:
    red, green, blue = (round(float(v)) for v in members.mean(axis=0))
    return NamedColour(
        hex=f"#{red:02x}{green:02x}{blue:02x}",
        share=round(len(members) / total, 3),
        name=colour_name((red, green, blue)),
    )
