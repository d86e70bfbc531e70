"""Bring any decoded image to 8-bit sRGB, honouring its embedded ICC profile."""

from __future__ import annotations

from typing import Any

from media_service.imaging._vips import VipsError

_ICC = "icc-profile-data"


def to_srgb(image: Any) -> Any:
    """``image`` as 8-bit sRGB (with its alpha band, if any), without an attached profile.

    An embedded profile (Display P3, AdobeRGB, a CMYK press profile...) is used to convert
    the pixels; an unusable profile is ignored rather than failing the whole image, since
    the pixels are still viewable as if they were sRGB.
    """
    if image.get_typeof(_ICC) != 0:
        image = _import_profile(image)
    elif image.interpretation == "cmyk":
        # CMYK with no profile: libvips' bundled generic CMYK profile beats naive inversion.
        image = image.icc_transform("srgb", input_profile="cmyk")
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")
        if image.format != "uchar":
            image = image.cast("uchar")
    return without_fields(image, (_ICC,))


def _import_profile(image: Any) -> Any:
    try:
        return image.icc_transform("srgb", embedded=True, intent="relative")
    except VipsError:
        # lcms refused the profile when building the transform (it checks eagerly).
        return without_fields(image, (_ICC,))


def without_fields(image: Any, names: tuple[str, ...]) -> Any:
    """A copy of ``image`` with the named metadata fields removed (when present)."""
    present = [name for name in names if image.get_typeof(name) != 0]
    if not present:
        return image
    image = image.copy()
    for name in present:
        image.remove(name)
    return image
