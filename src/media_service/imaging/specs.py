"""What a rendition request looks like, and what comes back. Pure data, no libvips."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MAX_SIDE = 65_500  # what the encoders (JPEG, WebP) can write at all
MIN_BUDGET_QUALITY = 40  # a byte budget never pushes quality below this


class Fit(StrEnum):
    """How the image is fitted into the requested box."""

    COVER = "cover"  # fill the box, crop the overflow around the centre
    CONTAIN = "contain"  # fit inside the box, keeping the aspect ratio
    FILL = "fill"  # stretch to exactly the box


class OutputFormat(StrEnum):
    """Formats a rendition can be encoded in."""

    JPEG = "jpeg"
    WEBP = "webp"
    AVIF = "avif"
    PNG = "png"

    @property
    def content_type(self) -> str:
        """The MIME type to serve the rendition with."""
        return f"image/{self.value}"

    @property
    def extension(self) -> str:
        """The file extension, with its dot."""
        return ".jpg" if self is OutputFormat.JPEG else f".{self.value}"

    @property
    def default_quality(self) -> int:
        """The encoder quality used when the request names none (PNG is lossless: 100)."""
        return _DEFAULT_QUALITY[self]


_DEFAULT_QUALITY = {
    OutputFormat.JPEG: 82,
    OutputFormat.WEBP: 80,
    OutputFormat.AVIF: 50,
    OutputFormat.PNG: 100,
}


@dataclass(frozen=True)
class RenderSpec:
    """One rendition: a box, how to fit into it, and how to encode.

    At least one of ``width``/``height`` is needed; ``cover`` and ``fill`` need both.
    ``max_bytes`` is a budget: quality is lowered step by step (never below 40) until the
    output fits, and :attr:`Rendered.fits_budget` says whether it did. PNG is lossless, so
    its ``quality`` is ignored. Raises ``ValueError`` for values out of range.
    """

    width: int | None
    height: int | None
    fit: Fit = Fit.CONTAIN
    format: OutputFormat = OutputFormat.JPEG
    quality: int | None = None
    max_bytes: int | None = None
    upscale: bool = False

    def __post_init__(self) -> None:
        if self.width is None and self.height is None:
            raise ValueError("a rendition needs a width, a height or both")
        for name in ("width", "height"):
            _check_range(name, getattr(self, name), 1, MAX_SIDE)
        if self.fit is not Fit.CONTAIN and (self.width is None or self.height is None):
            raise ValueError(f"fit={self.fit.value} needs both a width and a height")
        _check_range("quality", self.quality, 1, 100)
        _check_range("max_bytes", self.max_bytes, 1, None)

    @property
    def effective_quality(self) -> int:
        """The quality to encode with before any byte budget applies."""
        return self.quality if self.quality is not None else self.format.default_quality


def _check_range(name: str, value: object, low: int, high: int | None) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {bound}, not {value}")


@dataclass(frozen=True)
class Rendered:
    """An encoded rendition. ``quality`` is the one actually used (after any budget)."""

    data: bytes
    format: OutputFormat
    width: int
    height: int
    quality: int
    fits_budget: bool = True

    @property
    def content_type(self) -> str:
        """The MIME type to serve :attr:`data` with."""
        return self.format.content_type
