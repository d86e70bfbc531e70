"""Limits applied to every decode and every render request."""

from __future__ import annotations

from dataclasses import dataclass, field

# Our format names (as in ``media_service.media.sniff``), not libvips loader names.
DEFAULT_ALLOWED: frozenset[str] = frozenset({"jpeg", "png", "webp", "gif", "heif", "avif", "tiff"})


@dataclass(frozen=True)
class DecodeLimits:
    """What an input image may be before any pixel of it is decoded.

    ``max_pixels`` counts width × height × frames, so a 3000-frame GIF of small frames is
    as large as one huge still image.
    """

    max_pixels: int = 100_000_000
    max_side: int = 65_500
    allowed: frozenset[str] = field(default=DEFAULT_ALLOWED)


@dataclass(frozen=True)
class RenderLimits:
    """The largest rendition a client may ask for; the caller answers 422 above these."""

    max_width: int = 8192
    max_height: int = 8192

    def allows(self, width: int | None, height: int | None) -> bool:
        """Whether a rendition of this box (``None``: side not given) may be rendered."""
        return (width is None or width <= self.max_width) and (
            height is None or height <= self.max_height
        )
