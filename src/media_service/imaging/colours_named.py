"""Plain names for colours, and the sRGB → CIELAB conversion they are chosen in.

Names come from a small fixed vocabulary (:data:`COLOUR_NAMES`) so that they can be searched
("blue photos"). A colour with little chroma is black, grey or white by its lightness alone;
any other colour takes the name of the nearest prototype in CIELAB (ΔE 1976), where distance
follows perceived difference far better than in RGB. Several prototypes per name cover its
light, dark, vivid and muted variants (a dark orange is brown, a pale yellow is beige).
"""

from __future__ import annotations

from typing import Any

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

COLOUR_NAMES = (
    "black", "white", "grey", "red", "orange", "yellow", "green",
    "teal", "blue", "purple", "pink", "brown", "beige",
)  # fmt: skip

# Below this chroma (C*ab) a colour reads as neutral. Kept low because beige and cream are
# barely chromatic themselves (C* ≈ 11-20) and must still reach their prototypes.
_NEUTRAL_CHROMA = 10.0
_BLACK_BELOW = 22.0  # L* under which any low-chroma colour is black
_WHITE_ABOVE = 90.0  # L* above which any low-chroma colour is white
_ALWAYS_BLACK = 12.0  # L* under which even a saturated colour looks black
_DARK = (20.0, 20.0)  # (L*, C*) under which a dark, muted colour (navy shadow) looks black

_PROTOTYPES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "red": ((255, 0, 0), (220, 20, 60), (178, 34, 34), (139, 0, 0), (205, 92, 92), (255, 99, 71)),
    "orange": ((255, 165, 0), (255, 140, 0), (255, 127, 80), (244, 164, 96)),
    "yellow": ((255, 255, 0), (255, 215, 0), (240, 230, 140), (255, 255, 153), (218, 190, 0)),
    "green": (
        (0, 128, 0), (0, 200, 0), (0, 255, 0), (34, 139, 34), (144, 238, 144),
        (107, 142, 35), (85, 107, 47), (154, 205, 50), (0, 100, 0), (46, 139, 87),
    ),
    "teal": ((0, 128, 128), (64, 224, 208), (0, 255, 255), (32, 178, 170), (0, 139, 139)),
    "blue": (
        (0, 0, 255), (30, 144, 255), (0, 0, 139), (135, 206, 235), (70, 130, 180),
        (65, 105, 225), (25, 25, 112), (100, 149, 237), (173, 216, 230), (0, 0, 205),
    ),
    "purple": ((128, 0, 128), (148, 0, 211), (147, 112, 219), (75, 0, 130), (186, 85, 211)),
    "pink": ((255, 192, 203), (255, 105, 180), (255, 20, 147), (219, 112, 147), (255, 0, 255)),
    "brown": ((139, 69, 19), (160, 82, 45), (101, 67, 33), (128, 0, 0), (165, 42, 42)),
    "beige": ((245, 245, 220), (222, 184, 135), (210, 180, 140), (255, 228, 196), (238, 214, 175)),
}  # fmt: skip

# sRGB (D65) linear → XYZ, and the D65 white point.
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_EPSILON = (6 / 29) ** 3


def srgb_to_lab(rgb: Any) -> FloatArray:
    """CIELAB (D65) of sRGB colours given as ``uint8``-range values, shape ``(..., 3)``."""
    values = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)
    xyz = (linear @ _RGB_TO_XYZ.T) / _WHITE
    f = np.where(xyz > _EPSILON, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lightness = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def colour_name(rgb: tuple[int, int, int]) -> str:
    """The plain name (one of :data:`COLOUR_NAMES`) of an sRGB colour."""
    lightness, a, b = (float(v) for v in srgb_to_lab(rgb))
    chroma = float(np.hypot(a, b))
    if lightness < _ALWAYS_BLACK or (lightness < _DARK[0] and chroma < _DARK[1]):
        return "black"
    if chroma < _NEUTRAL_CHROMA:
        if lightness < _BLACK_BELOW:
            return "black"
        return "white" if lightness > _WHITE_ABOVE else "grey"
    distances = np.linalg.norm(_PROTOTYPE_LAB - np.array([lightness, a, b]), axis=1)
    return _PROTOTYPE_NAMES[int(np.argmin(distances))]


_PROTOTYPE_NAMES = [name for name, colours in _PROTOTYPES.items() for _ in colours]
_PROTOTYPE_LAB = srgb_to_lab([colour for colours in _PROTOTYPES.values() for colour in colours])
