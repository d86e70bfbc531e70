"""Image dimensions from the first bytes of a file, without decoding any pixels."""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image

from media_service.errors import Unprocessable
from media_service.imaging.limits import DecodeLimits
from media_service.media.models import FileType
from media_service.media.sniff import Format


class ImageTooLarge(Unprocessable):
    code = "image_too_large"
    title = "The image has more pixels than allowed"


class CorruptImage(Unprocessable):
    code = "corrupt_image"
    title = "The image cannot be read"


_PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "tiff": "TIFF"}
# What Pillow's header parsers raise on hostile bytes (Image.open catches the same set
# plus OSError/ValueError, which its plugins raise for unsupported or broken headers).
_PARSE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)


MAX_SIDE = DecodeLimits.max_side  # what preprocessing and renditions will decode


@dataclass(frozen=True, slots=True)
class Dimensions:
    width: int
    height: int


def probe_dimensions(
    fmt: Format, head: bytes, *, complete: bool, max_pixels: int
) -> Dimensions | None:
    """Width and height of an image from its header bytes.

    ``None`` for videos and documents, or when the header lies beyond ``head``.
    Raises :class:`ImageTooLarge` above ``max_pixels`` (a decompression bomb is refused
    before any pixel is decoded) or with a side longer than the decoder takes (1 ×
    100,000,000 is within the pixels, but no rendition of it could ever be made), and
    :class:`CorruptImage` when ``head`` is the whole file and still has no readable
    header. CPU-bound: call it from a worker thread.
    """
    if fmt.file_type is not FileType.IMAGE:
        return None
    size = _read_size(fmt, head)
    if size is None:
        if complete:
            raise CorruptImage(f"the {fmt.name.upper()} header cannot be read")
        return None
    width, height = size
    if width <= 0 or height <= 0:
        raise CorruptImage("the image declares no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(f"{width}x{height} exceeds the limit of {max_pixels} pixels")
    if max(width, height) > MAX_SIDE:
        raise ImageTooLarge(f"{width}x{height} has a side longer than {MAX_SIDE} pixels")
    return Dimensions(width, height)


def _read_size(fmt: Format, head: bytes) -> tuple[int, int] | None:
    if fmt.name in {"heic", "heif", "avif"}:
        return _read_heif_size(head)
    # The plugin of the sniffed format reads the header directly. Image.open would try
    # every plugin and apply Pillow's own pixel limit (about 179 MP) before ours, which
    # would override ``max_image_pixels`` and hide the declared size from the message.
    Image.init()
    factory, _ = Image.OPEN[_PILLOW_FORMATS[fmt.name]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with factory(io.BytesIO(head), "") as image:
                return image.size
        except _PARSE_ERRORS:
            return None


def _read_heif_size(head: bytes) -> tuple[int, int] | None:
    import pillow_heif

    try:
        heif = pillow_heif.open_heif(io.BytesIO(head), convert_hdr_to_8bit=True)
        return int(heif.size[0]), int(heif.size[1])
    except (ValueError, RuntimeError, OSError, EOFError):
        return None
