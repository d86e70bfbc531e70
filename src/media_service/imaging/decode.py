"""Open untrusted images safely, then decode them upright and in sRGB.

Order matters: the loader is chosen from the file's bytes and checked against the
allow-list, then the header alone (no pixel) is read and its size checked against
:class:`DecodeLimits`; only then are pixels decoded, shrunk on load when a smaller image is
wanted, with ``fail_on="error"`` so that a damaged file fails instead of coming out grey.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyvips  # type: ignore[import-untyped, unused-ignore]

from media_service.imaging._vips import LOADER_FORMATS, VipsError, call, find_loader
from media_service.imaging.colour import to_srgb, without_fields
from media_service.imaging.errors import CorruptImage, ImageTooLarge, UnsupportedImage
from media_service.imaging.heif import decode_heif
from media_service.imaging.limits import DecodeLimits

# Fail on truncation and decode errors rather than return the grey libvips fills in.
_FAIL_ON = "error"
_LOAD_OPTIONS = f"fail_on={_FAIL_ON}"


@dataclass(frozen=True)
class ImageInfo:
    """What the header says. ``width``/``height`` are upright (EXIF orientation applied)."""

    format: str
    width: int
    height: int
    frames: int
    orientation: int
    has_icc: bool
    has_alpha: bool


@dataclass(frozen=True)
class OpenedImage:
    """An image whose header passed every check, with what is needed to decode it."""

    path: str
    loader: str
    info: ImageInfo


def inspect_image(path: str, limits: DecodeLimits) -> ImageInfo:
    """Read and check the header of the image at ``path`` without decoding any pixel.

    Raises :class:`UnsupportedImage`, :class:`ImageTooLarge` or :class:`CorruptImage`.
    """
    return open_image(path, limits).info


def load_upright_srgb(
    path: str, limits: DecodeLimits, *, target: tuple[int, int] | None = None
) -> pyvips.Image:
    """Decode the image at ``path`` upright, in 8-bit sRGB, first frame only, in memory.

    With ``target`` (width, height) the image is shrunk on load to fit inside that box
    (never enlarged), so memory stays proportional to the target, not to the original.
    """
    return decode(open_image(path, limits), target=target)


def open_image(path: str, limits: DecodeLimits) -> OpenedImage:
    """Choose the loader, read the header and check it against ``limits``.

    A missing file is the caller's bug, not a bad image: it raises ``FileNotFoundError``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    loader = find_loader(path)
    format_name = LOADER_FORMATS.get(loader) if loader else None
    if loader is None or format_name is None:
        raise UnsupportedImage("the file is not an image in an accepted format")
    header = _read_header(path, loader)
    if format_name == "heif" and _field(header, "heif-compression") == "av1":
        format_name = "avif"
    if format_name not in limits.allowed:
        raise UnsupportedImage(f"{format_name.upper()} images are not accepted")
    info = _info(header, format_name)
    _check_size(info, limits)
    return OpenedImage(path=path, loader=loader, info=info)


def decode(
    opened: OpenedImage, *, target: tuple[int, int] | None = None, exact: bool = False
) -> pyvips.Image:
    """Decode an opened image: see :func:`load_upright_srgb`. ``exact``: ``target`` is the
    size to decode to (no larger than the upright image), not a box to fit it into."""
    width, height = target or (opened.info.width, opened.info.height)
    size = "force" if exact else "down"
    try:
        if opened.info.format == "heif":
            image = decode_heif(opened.path).thumbnail_image(width, height=height, size=size)
        else:
            # From a Source, not a filename: libvips would parse "[...]" in a filename as
            # options. Shrink-on-load works the same (measured: same speed as from a file).
            # thumbnail_source ignores its own fail_on argument (libvips 8.18, measured);
            # the loader only gets it through the option string.
            source = pyvips.Source.new_from_file(opened.path)
            image = pyvips.Image.thumbnail_source(
                source, width, height=height, size=size, option_string=_LOAD_OPTIONS
            )
        # Rotation is done: drop the tag so that nothing downstream rotates a second time.
        upright = without_fields(image, ("orientation",))
        return to_srgb(upright).copy_memory()
    except VipsError as exc:
        raise CorruptImage(f"the image cannot be decoded: {reason(exc, opened.path)}") from exc


def reason(exc: Exception, path: str | None = None) -> str:
    """The first informative line of a libvips error, fit for a client to read.

    Messages may quote the file name; a server path is no business of the client's.
    """
    text = str(getattr(exc, "detail", "") or exc)
    if path:
        text = text.replace(path, "<file>")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else "unknown error")[:200]


def _read_header(path: str, loader: str) -> pyvips.Image:
    try:
        # Sequential access: libvips reads only the header now, pixels on demand later.
        return call(loader, path, access="sequential", fail_on=_FAIL_ON)
    except VipsError as exc:
        raise CorruptImage(f"the image header cannot be read: {reason(exc, path)}") from exc


def _info(header: pyvips.Image, format_name: str) -> ImageInfo:
    orientation = _field(header, "orientation")
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1
    frames = _field(header, "n-pages")
    width, height = int(header.width), int(header.height)
    if orientation >= 5:  # 5..8 turn the image by 90°
        width, height = height, width
    return ImageInfo(
        format=format_name,
        width=width,
        height=height,
        frames=max(frames, 1) if isinstance(frames, int) else 1,
        orientation=orientation,
        has_icc=header.get_typeof("icc-profile-data") != 0,
        has_alpha=bool(header.hasalpha()),
    )


def _check_size(info: ImageInfo, limits: DecodeLimits) -> None:
    if info.width < 1 or info.height < 1:
        raise CorruptImage("the image header declares no pixels")
    if max(info.width, info.height) > limits.max_side:
        raise ImageTooLarge(
            f"the image is {info.width}×{info.height} pixels; "
            f"sides longer than {limits.max_side} are not accepted"
        )
    pixels = info.width * info.height * info.frames
    if pixels > limits.max_pixels:
        raise ImageTooLarge(
            f"the image has {info.width}×{info.height} pixels × {info.frames} frame(s) "
            f"= {pixels:,}, over the limit of {limits.max_pixels:,}"
        )


def _field(image: pyvips.Image, name: str) -> object:
    return image.get(name) if image.get_typeof(name) != 0 else None
