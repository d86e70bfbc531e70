"""Face detection (dlib's HOG frontal detector + 5-point landmarks) and eye-aligned crops.

Everything runs offline: the landmark model ships in ``face-recognition-models``. Faces are
found on a copy shrunk on load to about ``max_side`` and reported in the pixels of the
full-size upright image (EXIF orientation applied), so a stored face stays valid for any
rendition of the same file. dlib objects are built once per worker process and are not
shared between threads.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

# dlib ships no type information.
import dlib  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import pyvips  # type: ignore[import-untyped, unused-ignore]

from media_service.imaging.decode import decode, open_image
from media_service.imaging.encode import encode
from media_service.imaging.errors import CorruptImage
from media_service.imaging.limits import DecodeLimits
from media_service.imaging.specs import OutputFormat, Rendered

Point = tuple[float, float]

# dlib scores detections with an SVM margin (0 is its default threshold; good frontal faces
# score 1 to 3). We collect down to -0.5 and map margin m to 1 / (1 + e^(-2m)): 0 → 0.5,
# -0.5 → 0.27, 1 → 0.88, 2 → 0.98. The default min_confidence of 0.5 is dlib's own cut.
_SCORE_FLOOR = -0.5
_SCORE_SLOPE = 2.0

# Where the eyes sit in a crop with margin 0: the ArcFace 112 × 112 template (eye centres
# at x 38.3 and 73.5, y 51.6), as fractions of the side. A margin m widens the view by m of
# the face on each side, as dlib's get_face_chip padding does.
_EYE_DISTANCE = 0.3146
_EYE_HEIGHT = 0.4607
CROP_SIDES = range(32, 1025)


@dataclass(frozen=True)
class Face:
    """A face in upright source pixels.

    ``box`` is (x, y, width, height), clipped to the image. ``left_eye`` and ``right_eye``
    are the eye centres on the image's left and right (the person's right and left eye).
    ``confidence`` is 0..1, mapped from dlib's detection score (see ``_SCORE_SLOPE``).
    """

    box: tuple[int, int, int, int]
    confidence: float
    left_eye: Point
    right_eye: Point

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return {
            "box": list(self.box),
            "confidence": self.confidence,
            "left_eye": list(self.left_eye),
            "right_eye": list(self.right_eye),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Face:
        """Read what :meth:`to_dict` wrote. Raises ``ValueError`` for anything else."""
        try:
            x, y, width, height = (int(value) for value in data["box"])
            left_x, left_y = (float(value) for value in data["left_eye"])
            right_x, right_y = (float(value) for value in data["right_eye"])
            confidence = float(data["confidence"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a stored face: {exc}") from exc
        numbers = (left_x, left_y, right_x, right_y, confidence)
        if width < 0 or height < 0 or not all(math.isfinite(n) for n in numbers):
            raise ValueError("not a stored face: negative size or non-finite number")
        return cls((x, y, width, height), confidence, (left_x, left_y), (right_x, right_y))


def detect_faces(
    path: str,
    limits: DecodeLimits,
    *,
    max_side: int = 1600,
    min_confidence: float = 0.5,
    upsample: int | None = None,
) -> list[Face]:
    """Find frontal faces in the image at ``path``, largest box first (then left to right).

    The image is decoded upright and shrunk on load to fit ``max_side``; dlib finds faces
    down to about 80 px in that copy, or 40 px with ``upsample=1`` (4× slower). By default
    it upsamples only copies under 1000 px. Raises the ``imaging.errors`` of decoding.
    """
    opened = open_image(path, limits)
    image = decode(opened, target=(max_side, max_side))
    pixels = _rgb_array(image)
    if upsample is None:
        upsample = 1 if max(image.width, image.height) < 1000 else 0
    rects, scores, _ = _detector().run(pixels, upsample, _SCORE_FLOOR)
    scale = (opened.info.width / image.width, opened.info.height / image.height)
    size = (opened.info.width, opened.info.height)
    faces = [
        _face(pixels, rect, score, scale, size)
        for rect, score in zip(rects, scores, strict=True)
        if _confidence(score) >= min_confidence
    ]
    return sorted(faces, key=lambda face: (-face.box[2] * face.box[3], face.box[0]))


def aligned_crop(
    path: str,
    face: Face,
    size: int,
    limits: DecodeLimits,
    *,
    fmt: OutputFormat = OutputFormat.JPEG,
    margin: float = 0.4,
    quality: int | None = None,
) -> Rendered:
    """A ``size`` × ``size`` crop of ``face``, turned so that its eyes are level.

    The eyes are placed as in the ArcFace template shrunk by ``margin`` (0 is the tight
    recognition crop; 0.4 shows the whole head). Areas outside the photo are black. Output
    is sRGB with no metadata. Raises ``ValueError`` for a size outside 32..1024, a margin
    outside 0..2 or a face whose eyes coincide, and the ``imaging.errors`` of decoding.
    """
    if size not in CROP_SIDES:
        raise ValueError(f"size must be {CROP_SIDES.start}..{CROP_SIDES.stop - 1}, not {size}")
    if not 0 <= margin <= 2:
        raise ValueError(f"margin must be 0..2, not {margin}")
    eye_distance = math.dist(face.left_eye, face.right_eye)
    if not (math.isfinite(eye_distance) and eye_distance > 0):
        raise ValueError("the face's eyes must be two distinct points")
    wanted = size * _EYE_DISTANCE / (1 + 2 * margin)
    opened = open_image(path, limits)
    # Shrink on load to no less than 1.5× the final scale; the affine resample then only
    # reduces a little, which bicubic interpolation does without aliasing.
    shrink = min(1.0, 1.5 * wanted / eye_distance)
    full = (opened.info.width, opened.info.height)
    target = (math.ceil(full[0] * shrink), math.ceil(full[1] * shrink))
    image = _opaque(decode(opened, target=target))
    scale = (image.width / full[0], image.height / full[1])
    left, right = _rescale(face.left_eye, scale), _rescale(face.right_eye, scale)
    crop = _align(image, left, right, size, wanted, (margin + _EYE_HEIGHT) / (1 + 2 * margin))
    return _encode(crop, OutputFormat(fmt), quality)


@functools.cache
def _detector() -> Any:
    return dlib.get_frontal_face_detector()


@functools.cache
def _predictor() -> Any:
    return dlib.shape_predictor(str(_models_dir() / "shape_predictor_5_face_landmarks.dat"))


def _models_dir() -> Path:
    # Found without importing the package: its __init__ needs pkg_resources, which recent
    # setuptools no longer has.
    spec = find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _rgb_array(image: pyvips.Image) -> np.ndarray[Any, np.dtype[np.uint8]]:
    if image.bands > 3:
        image = image.extract_band(0, n=3)
    data = image.write_to_memory()
    return np.ndarray(shape=(image.height, image.width, 3), dtype=np.uint8, buffer=data)


def _confidence(score: float) -> float:
    return 1.0 / (1.0 + math.exp(-_SCORE_SLOPE * score))


def _face(
    pixels: np.ndarray[Any, np.dtype[np.uint8]],
    rect: Any,
    score: float,
    scale: tuple[float, float],
    size: tuple[int, int],
) -> Face:
    """A detection mapped from the shrunk copy to full-size upright pixels."""
    shape = _predictor()(pixels, rect)
    # The 5-point model numbers the image-right eye's corners 0-1 and the image-left's 2-3.
    right = _mean_point(shape, 0, 1)
    left = _mean_point(shape, 2, 3)
    x0, y0 = _to_full((rect.left(), rect.top()), scale, corner=True)
    x1, y1 = _to_full((rect.right() + 1, rect.bottom() + 1), scale, corner=True)
    box_x0, box_y0 = max(0, round(x0)), max(0, round(y0))
    box_x1, box_y1 = min(size[0], round(x1)), min(size[1], round(y1))
    box = (box_x0, box_y0, box_x1 - box_x0, box_y1 - box_y0)
    return Face(box, _confidence(score), _to_full(left, scale), _to_full(right, scale))


def _mean_point(shape: Any, first: int, second: int) -> Point:
    a, b = shape.part(first), shape.part(second)
    return ((a.x + b.x) / 2, (a.y + b.y) / 2)


def _to_full(point: Point, scale: tuple[float, float], *, corner: bool = False) -> Point:
    """Shrunk-copy coordinates to full-size ones: pixel corners scale directly, pixel
    centres (landmarks) are half a pixel in from their corner at either size."""
    shift = 0.0 if corner else 0.5
    return (
        round((point[0] + shift) * scale[0] - shift, 2),
        round((point[1] + shift) * scale[1] - shift, 2),
    )


def _rescale(point: Point, scale: tuple[float, float]) -> Point:
    return ((point[0] + 0.5) * scale[0] - 0.5, (point[1] + 0.5) * scale[1] - 0.5)


def _opaque(image: pyvips.Image) -> pyvips.Image:
    return image.flatten(background=[0, 0, 0]) if image.hasalpha() else image


def _align(
    image: pyvips.Image, left: Point, right: Point, size: int, wanted: float, eye_height: float
) -> pyvips.Image:
    """Rotate and scale about the eyes' midpoint so that they land level on the template."""
    angle = math.atan2(right[1] - left[1], right[0] - left[0])
    factor = wanted / math.dist(left, right)
    cos, sin = factor * math.cos(angle), factor * math.sin(angle)
    # Rotation by -angle: the vector from the left eye to the right eye becomes (d, 0).
    matrix = [cos, sin, -sin, cos]
    mid_x, mid_y = (left[0] + right[0]) / 2, (left[1] + right[1]) / 2
    out_x, out_y = size / 2 - 0.5, size * eye_height - 0.5
    try:
        return image.affine(
            matrix,
            oarea=[0, 0, size, size],
            odx=out_x - (cos * mid_x + sin * mid_y),
            ody=out_y - (-sin * mid_x + cos * mid_y),
            interpolate=pyvips.Interpolate.new("bicubic"),
            extend="black",
        )
    except pyvips.Error as exc:
        raise CorruptImage(f"the face cannot be cropped: {exc}") from exc


def _encode(image: pyvips.Image, fmt: OutputFormat, quality: int | None) -> Rendered:
    chosen = quality if quality is not None else fmt.default_quality
    try:
        encoded = encode(image.copy_memory(), fmt, chosen)
    except pyvips.Error as exc:
        raise CorruptImage(f"the face crop cannot be encoded: {exc}") from exc
    return Rendered(encoded.data, fmt, int(image.width), int(image.height), encoded.quality)
