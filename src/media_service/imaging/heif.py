"""Decode HEIC (HEVC-coded HEIF) with pillow-heif and hand the pixels to libvips.

pyvips-binary has no HEVC decoder, so libvips can read a HEIC header but not its pixels.
libheif applies the container's rotation and mirroring (``irot``/``imir``) while decoding,
which is the HEIF way of recording orientation, so the result is already upright.
"""

from __future__ import annotations

from typing import Any

import pillow_heif

from media_service.imaging._vips import BLOB_TYPE, Image
from media_service.imaging.errors import CorruptImage

_INTERPRETATION = {1: "b-w", 2: "b-w", 3: "srgb", 4: "srgb"}


def decode_heif(path: str) -> Any:
    """The primary image of the HEIF file at ``path`` as an upright 8-bit pyvips image.

    The embedded ICC profile, if any, is attached as ``icc-profile-data``.
    """
    try:
        heif = pillow_heif.open_heif(path, convert_hdr_to_8bit=True)
        data, stride = heif.data, heif.stride
        width, height = heif.size
        bands = len(heif.mode.split(";")[0])
        icc = heif.info.get("icc_profile")
    except (RuntimeError, ValueError, OSError) as exc:
        raise CorruptImage(f"the HEIF image cannot be decoded: {exc}") from exc
    # Rows may be padded to ``stride`` bytes: view them as one band, crop off the padding,
    # then fold groups of ``bands`` bytes back into pixels, all without copying in Python.
    rows = Image.new_from_memory(data, stride, height, 1, "uchar")
    image = rows.crop(0, 0, width * bands, height).bandfold(factor=bands)
    image = image.copy(interpretation=_INTERPRETATION.get(bands, "srgb"))
    if icc:
        image.set_type(BLOB_TYPE, "icc-profile-data", bytes(icc))
    return image
