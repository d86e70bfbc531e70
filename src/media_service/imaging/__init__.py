"""Imaging backend: decode untrusted images safely and render renditions from them.

Safety rules, in the order they apply to every file:

1. The loader is chosen from the file's bytes (never its name or Content-Type) and must be
   one of the allowed formats (:class:`~media_service.imaging.limits.DecodeLimits`);
   libvips' untrusted loaders (ImageMagick, SVG, BMP via magick, FITS...) are blocked
   process-wide, so SVG and BMP are refused before anything parses them.
2. Only the header is read before the size check: width × height × frames and each side
   are compared with the limits, so a small "bomb" declaring 20000×20000 never gets a
   pixel buffer.
3. Pixels are decoded shrunk on load to what the largest rendition needs, with
   ``fail_on="error"``: a truncated or damaged file raises ``CorruptImage`` instead of
   rendering grey.
4. Output is upright (EXIF orientation applied), converted to sRGB with the embedded ICC
   profile, and carries no metadata at all (no EXIF, GPS, XMP, IPTC, comments).
5. Decoding runs in worker processes (:mod:`~media_service.imaging.pool`), one libvips
   thread each and no operation cache, so a crash or OOM kill costs one call, not the
   service.

This package imports nothing from the domain packages; errors carry a ``code`` and the
domain maps them to HTTP. Importing it does not load libvips: only ``decode``, ``render``
and the modules they use do.
"""

from __future__ import annotations

from media_service.imaging.errors import CorruptImage, ImageTooLarge, ImagingError, UnsupportedImage
from media_service.imaging.limits import DecodeLimits, RenderLimits

__all__ = [
    "CorruptImage",
    "DecodeLimits",
    "ImageTooLarge",
    "ImagingError",
    "RenderLimits",
    "UnsupportedImage",
]
