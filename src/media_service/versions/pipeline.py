"""What runs inside an imaging worker process for versions. Module-level functions only:
they are pickled by name into the pool (``state.imaging.run``).

The source is decoded the safe way (:func:`load_upright_srgb`: allow-listed loaders,
header checked against the decode limits, upright, sRGB) at full size; the result is
encoded without any metadata, as JPEG, or PNG when it has transparency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyvips  # type: ignore[import-untyped, unused-ignore]

from media_service.imaging.decode import decode, load_upright_srgb, open_image
from media_service.imaging.encode import encode
from media_service.imaging.limits import DecodeLimits
from media_service.imaging.specs import OutputFormat
from media_service.versions.modes import Edit, Mode, resolve_crop

QUALITY = 90  # a version is a photo in its own right, not a preview
CHECK_SIDE = 256  # uploads are checked by decoding every byte, shrunk to this box
SEPIA = [[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]]
# A light sharpening kernel (sums to one); libvips' own sharpen works in Lab, 10x the cost.
_SHARPEN = pyvips.Image.new_from_array([[-1, -1, -1], [-1, 17, -1], [-1, -1, -1]], scale=9)
Colours = Callable[[pyvips.Image], pyvips.Image]


@dataclass(frozen=True)
class Made:
    """An encoded version and its upright size."""

    data: bytes
    format: OutputFormat
    width: int
    height: int


@dataclass(frozen=True)
class Checked:
    """What decoding an uploaded version found: its format and upright size."""

    format: str
    width: int
    height: int


def render_edit(path: str, edit: Edit, limits: DecodeLimits) -> Made:
    """Apply ``edit`` to the image at ``path``. Raises the imaging errors, and
    :class:`~media_service.versions.modes.InvalidEdit` for a crop outside the image."""
    image = load_upright_srgb(path, limits)
    if edit.mode is Mode.ROTATE:
        image = image.rot(f"d{edit.angle}")
    elif edit.mode is Mode.CROP:
        assert edit.crop is not None
        image = image.crop(*resolve_crop(edit.crop, int(image.width), int(image.height)))
    else:
        image = _recoloured(image, _COLOURS[edit.mode])
    if image.hasalpha():
        data, fmt = encode(image, OutputFormat.PNG, QUALITY).data, OutputFormat.PNG
    else:
        # Without the optimised Huffman tables of renditions: for a full-size image the
        # second pass doubles the time (12 MP: 0.2 s → 0.4 s) to save a few per cent.
        data, fmt = bytes(image.jpegsave_buffer(Q=QUALITY, keep="none")), OutputFormat.JPEG
    return Made(data, fmt, int(image.width), int(image.height))


def check_image(path: str, limits: DecodeLimits) -> Checked:
    """Decode the image at ``path`` completely (shrunk on load) to prove it is usable.
    Raises the imaging errors for anything that is not a decodable, allowed image."""
    opened = open_image(path, limits)
    info = opened.info
    decode(opened, target=(min(info.width, CHECK_SIDE), min(info.height, CHECK_SIDE)))
    return Checked(info.format, info.width, info.height)


def _recoloured(image: pyvips.Image, colours: Colours) -> pyvips.Image:
    """``colours`` applied to the colour bands; an alpha band is kept as it was."""
    if image.hasalpha():
        return colours(image[:3]).bandjoin(image[3])
    return colours(image)


def _uchar(image: pyvips.Image) -> pyvips.Image:
    # Casting clips to 0..255, which is what every colour operation here wants.
    return image.cast("uchar").copy(interpretation="srgb")


def _grey(image: pyvips.Image) -> pyvips.Image:
    return image.colourspace("b-w").colourspace("srgb")


def _sepia(image: pyvips.Image) -> pyvips.Image:
    return _uchar(image.recomb(SEPIA))


def _saturated(image: pyvips.Image, factor: float) -> pyvips.Image:
    # Away from (or towards) the pixel's own grey: a fraction of the cost of a trip
    # through LCh, and the same to the eye at these strengths.
    grey = image.colourspace("b-w")
    return _uchar(image * factor + grey * (1.0 - factor))


def _contrast(image: pyvips.Image, factor: float, lift: float = 0.0) -> pyvips.Image:
    return _uchar(image.linear(factor, 128.0 * (1.0 - factor) + lift))


def _tinted(image: pyvips.Image, red: float, blue: float) -> pyvips.Image:
    return _uchar(image.linear([red, 1.0, blue], [0.0, 0.0, 0.0]))


def _auto_enhance(image: pyvips.Image) -> pyvips.Image:
    """Stretch the levels so that 1 % of pixels are black and 1 % white (unless the
    image is nearly flat), add a little colour, sharpen lightly."""
    # Every 4th pixel each way is plenty for a histogram, at a sixteenth of the cost (every
    # pixel along a side shorter than 4: subsampling it would leave nothing).
    grey = image.colourspace("b-w")
    grey = grey.subsample(min(4, grey.width), min(4, grey.height))
    low, high = grey.percent(1), grey.percent(99)
    if high - low >= 16:
        scale = 255.0 / (high - low)
        image = _uchar(image.linear(scale, -low * scale))
    return _uchar(_saturated(image, 1.15).conv(_SHARPEN, precision="integer"))


def _vintage(image: pyvips.Image) -> pyvips.Image:
    faded = _contrast(image, 0.85, lift=12.0)
    return _uchar(faded * 0.4 + _sepia(faded) * 0.6)


_COLOURS: dict[Mode, Colours] = {
    Mode.AUTO_ENHANCE: _auto_enhance,
    Mode.BLACK_AND_WHITE: _grey,
    Mode.SEPIA: _sepia,
    Mode.VIVID: lambda image: _contrast(_saturated(image, 1.35), 1.1),
    Mode.WARM: lambda image: _tinted(image, 1.08, 0.88),
    Mode.COOL: lambda image: _tinted(image, 0.90, 1.08),
    Mode.VINTAGE: _vintage,
    Mode.HIGH_CONTRAST: lambda image: _contrast(image, 1.45),
}
