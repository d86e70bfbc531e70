"""Where each rendition's pixels come from: pure arithmetic, no libvips."""

from __future__ import annotations

from dataclasses import dataclass

from media_service.imaging.specs import Fit, RenderSpec


@dataclass(frozen=True)
class Plan:
    """Resize the upright source to ``resize``, then crop the centre to ``output``."""

    resize: tuple[int, int]
    output: tuple[int, int]

    def scale_from(self, width: int, height: int) -> float:
        """The largest scale factor this plan applies to a ``width``×``height`` source."""
        return max(self.resize[0] / width, self.resize[1] / height)


def plan(width: int, height: int, spec: RenderSpec) -> Plan:
    """The plan that renders ``spec`` from an upright ``width``×``height`` source."""
    if spec.fit is Fit.FILL:
        return _fill(width, height, spec)
    box_w = spec.width / width if spec.width else float("inf")
    box_h = spec.height / height if spec.height else float("inf")
    scale = max(box_w, box_h) if spec.fit is Fit.COVER else min(box_w, box_h)
    if not spec.upscale:
        scale = min(scale, 1.0)
    resize = (_side(width * scale), _side(height * scale))
    if spec.fit is Fit.CONTAIN:
        return Plan(resize, resize)
    # cover: both sides are set (RenderSpec checks it); crop what overflows the box.
    assert spec.width is not None and spec.height is not None
    return Plan(resize, (min(spec.width, resize[0]), min(spec.height, resize[1])))


def _fill(width: int, height: int, spec: RenderSpec) -> Plan:
    assert spec.width is not None and spec.height is not None
    # Without upscale, shrink the whole box until it fits in the source, so the requested
    # aspect ratio is kept and no axis is enlarged.
    shrink = 1.0 if spec.upscale else min(1.0, width / spec.width, height / spec.height)
    size = (_side(spec.width * shrink), _side(spec.height * shrink))
    return Plan(size, size)


def _side(value: float) -> int:
    return max(1, round(value))
