"""The built-in processing modes and their parameters, checked. Pure: no libvips, no I/O.

An :class:`Edit` is what the imaging worker applies (it is pickled into the pool). Crop
boxes can only be checked against the upright image, which the worker sees after
decoding: :func:`resolve_crop` raises :class:`InvalidEdit` there, and the service turns
that into a 422 naming the parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Mode(StrEnum):
    """What a STYLED version is made with."""

    AUTO_ENHANCE = "auto_enhance"  # levels stretched, a little more colour, sharpened
    BLACK_AND_WHITE = "black_and_white"
    SEPIA = "sepia"
    ROTATE = "rotate"  # by 90, 180 or 270 degrees clockwise
    CROP = "crop"  # a box in pixels or fractions of the upright image
    VIVID = "vivid"
    WARM = "warm"
    COOL = "cool"
    VINTAGE = "vintage"
    HIGH_CONTRAST = "high_contrast"


ANGLES = (90, 180, 270)


class InvalidEdit(ValueError):
    """The parameters do not fit the image (e.g. a crop box outside it).

    ``field`` names the parameter, for the problem body's ``loc``.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True, slots=True)
class CropBox:
    """A crop box as asked for: pixels (``unit="px"``) or fractions of the side."""

    x: float
    y: float
    width: float
    height: float
    unit: str = "px"


@dataclass(frozen=True, slots=True)
class Edit:
    """One mode with its parameters, ready for the worker."""

    mode: Mode
    angle: int | None = None
    crop: CropBox | None = None

    def params(self) -> dict[str, object]:
        """The parameters as recorded with the version (defaults filled in)."""
        if self.angle is not None:
            return {"angle": self.angle}
        if self.crop is not None:
            box = self.crop
            return {
                "x": box.x,
                "y": box.y,
                "width": box.width,
                "height": box.height,
                "unit": box.unit,
            }
        return {}


def resolve_crop(box: CropBox, width: int, height: int) -> tuple[int, int, int, int]:
    """``(left, top, width, height)`` in pixels of a ``width`` × ``height`` image.

    Fractions are rounded to whole pixels. Raises :class:`InvalidEdit` for a box that is
    empty or reaches outside the image.
    """
    if not all(math.isfinite(value) for value in (box.x, box.y, box.width, box.height)):
        raise InvalidEdit("crop", "coordinates must be finite numbers")
    if box.unit == "fraction":
        left, top = round(box.x * width), round(box.y * height)
        right, bottom = round((box.x + box.width) * width), round((box.y + box.height) * height)
    else:
        if not all(float(value).is_integer() for value in (box.x, box.y, box.width, box.height)):
            raise InvalidEdit("crop", "pixel coordinates must be whole numbers")
        left, top = int(box.x), int(box.y)
        right, bottom = left + int(box.width), top + int(box.height)
    if left < 0 or top < 0 or right > width or bottom > height:
        raise InvalidEdit("crop", f"the box reaches outside the {width}×{height} image")
    if right <= left or bottom <= top:
        raise InvalidEdit("crop", "the box is less than one pixel wide or high")
    return left, top, right - left, bottom - top
