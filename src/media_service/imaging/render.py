"""Render renditions (resized, upright, sRGB, metadata-free) from an image file.

:func:`render_many` decodes once, shrunk on load to the largest rendition needed, and
derives every rendition from that in-memory image: the thumbnail + preview made after an
upload cost one JPEG decode, not two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyvips  # type: ignore[import-untyped, unused-ignore]

from media_service.imaging.decode import ImageInfo, decode, open_image, reason
from media_service.imaging.encode import encode
from media_service.imaging.errors import CorruptImage
from media_service.imaging.geometry import Plan, plan
from media_service.imaging.limits import DecodeLimits
from media_service.imaging.specs import Fit, OutputFormat, Rendered, RenderSpec

__all__ = ["Fit", "OutputFormat", "RenderSpec", "Rendered", "render", "render_many"]


def render(path: str, spec: RenderSpec, limits: DecodeLimits) -> Rendered:
    """Render one rendition of the image at ``path``. Raises the ``imaging.errors``.

    A shrinking rendition is decoded straight to its planned size: fitting a box rounds
    differently from the plan in about one width in four (a 4000×3000 JPEG to 1001–1600
    px), and a second full resize of the decoded image corrected it.
    """
    opened = open_image(path, limits)
    p = plan(opened.info.width, opened.info.height, spec)
    # Not for fill (its size breaks the aspect ratio) nor for sizes it does not shrink to.
    exact = spec.fit is not Fit.FILL and p.scale_from(opened.info.width, opened.info.height) < 1
    target = p.resize if exact else _decode_target(opened.info, [p])
    return _render_one(decode(opened, target=target, exact=exact), spec, p)


def render_many(path: str, specs: Sequence[RenderSpec], limits: DecodeLimits) -> list[Rendered]:
    """Render several renditions of the image at ``path`` from a single decode.

    Results are in the order of ``specs``. Raises the ``imaging.errors``.
    """
    if not specs:
        return []
    opened = open_image(path, limits)
    plans = [plan(opened.info.width, opened.info.height, spec) for spec in specs]
    base = decode(opened, target=_decode_target(opened.info, plans))
    return [_render_one(base, spec, p) for spec, p in zip(specs, plans, strict=True)]


def _decode_target(info: ImageInfo, plans: Sequence[Plan]) -> tuple[int, int]:
    # Shrink on load only as far as the largest rendition allows; enlarging, if asked
    # for, happens later from the full-size image.
    scale = min(1.0, max(p.scale_from(info.width, info.height) for p in plans))
    return (math.ceil(info.width * scale), math.ceil(info.height * scale))


def _render_one(base: pyvips.Image, spec: RenderSpec, p: Plan) -> Rendered:
    image = _resized(base, p)
    try:
        encoded = encode(image, spec.format, spec.effective_quality, spec.max_bytes)
    except pyvips.Error as exc:
        raise CorruptImage(f"the image cannot be rendered: {reason(exc)}") from exc
    return Rendered(
        data=encoded.data,
        format=spec.format,
        width=int(image.width),
        height=int(image.height),
        quality=encoded.quality,
        fits_budget=encoded.fits_budget,
    )


def _resized(base: pyvips.Image, p: Plan) -> pyvips.Image:
    width, height = p.resize
    image = base
    if (base.width, base.height) != (width, height):
        # thumbnail_image premultiplies alpha and picks the reduce kernels; "force" makes
        # the size exact, which fill needs and which keeps rounding identical everywhere.
        image = base.thumbnail_image(width, height=height, size="force")
    out_w, out_h = p.output
    if (out_w, out_h) != (width, height):
        image = image.crop((width - out_w) // 2, (height - out_h) // 2, out_w, out_h)
    return image
