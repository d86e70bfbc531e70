"""The on-the-fly rendition request: parsed, checked, normalised. Pure; no I/O.

Equal requests normalise to the same :attr:`RenditionParams.cache_name`, whatever their
order or spelling (``quality`` omitted or given as its default), so a repeat is a read of
the stored result. The signed form (:meth:`RenditionParams.signed_query`) covers what the
client asked for, including ``format=auto``, not what ``Accept`` resolved it to.
"""

from __future__ import annotations

from dataclasses import dataclass

from media_service.errors import Unprocessable
from media_service.imaging.specs import Fit, OutputFormat, RenderSpec

AUTO = "auto"


@dataclass(frozen=True, slots=True)
class RenditionParams:
    """What a client asked for (``format`` may be ``auto``)."""

    width: int | None
    height: int | None
    fit: Fit
    format: str
    quality: int | None

    def signed_query(self) -> str:
        """The canonical query a signed rendition URL covers (and carries)."""
        parts = [
            ("width", self.width),
            ("height", self.height),
            ("fit", self.fit.value),
            ("format", self.format),
            ("quality", self.quality),
        ]
        return "&".join(f"{name}={value}" for name, value in parts if value is not None)

    def resolve(self, accept: str | None, *, has_alpha: bool = False) -> RenderSpec:
        """The render to run: ``auto`` picks WebP when the client takes it, else JPEG
        (PNG for images with transparency). AVIF is only made when asked for by name:
        it costs about 100x the CPU of JPEG to encode."""
        fmt = OutputFormat(self.format) if self.format != AUTO else _negotiate(accept, has_alpha)
        return RenderSpec(self.width, self.height, self.fit, fmt, self.quality)


def cache_name(spec: RenderSpec) -> str:
    """``640x0-contain-q82.jpg``: the stored object's name for a rendition."""
    quality = spec.format.default_quality if spec.quality is None else spec.quality
    return (
        f"{spec.width or 0}x{spec.height or 0}-{spec.fit.value}-q{quality}{spec.format.extension}"
    )


def check_params(params: RenditionParams, max_side: int) -> RenditionParams:
    """422 (with the bad field's path) for requests no render should be attempted for."""
    if params.width is None and params.height is None:
        raise _invalid("width", "give a width, a height or both")
    for name in ("width", "height"):
        value = getattr(params, name)
        if value is not None and not 1 <= value <= max_side:
            raise _invalid(name, f"must be between 1 and {max_side}")
    if params.fit is not Fit.CONTAIN and (params.width is None or params.height is None):
        raise _invalid("fit", f"fit={params.fit.value} needs both width and height")
    if params.quality is not None and not 1 <= params.quality <= 100:
        raise _invalid("quality", "must be between 1 and 100")
    if params.format != AUTO and params.format not in {f.value for f in OutputFormat}:
        raise _invalid("format", "must be jpeg, webp, avif, png or auto")
    return params


def _negotiate(accept: str | None, has_alpha: bool) -> OutputFormat:
    accepted = {item.split(";")[0].strip().lower() for item in (accept or "").split(",")}
    if "image/webp" in accepted:
        return OutputFormat.WEBP
    return OutputFormat.PNG if has_alpha else OutputFormat.JPEG


def _invalid(field: str, message: str) -> Unprocessable:
    return Unprocessable(
        f"invalid rendition request: {field} {message}",
        errors=[{"loc": ["query", field], "msg": message}],
    )
