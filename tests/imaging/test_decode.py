"""Header inspection and decoding: formats, orientation, ICC, shrink-on-load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pillow_heif
import pytest
import pyvips
from PIL import Image

from media_service.imaging.decode import (
    ImageInfo,
    decode,
    inspect_image,
    load_upright_srgb,
    open_image,
)
from media_service.imaging.errors import CorruptImage, UnsupportedImage
from media_service.imaging.limits import DecodeLimits

from .conftest import (
    RED,
    STORE_FOR_ORIENTATION,
    exif_with_orientation,
    noise,
    p3_profile,
    quadrants,
)

Write = Callable[..., str]


@pytest.mark.parametrize(
    ("name", "params", "expected_format"),
    [
        ("a.jpg", {}, "jpeg"),
        ("a.png", {}, "png"),
        ("a.webp", {}, "webp"),
        ("a.gif", {}, "gif"),
        ("a.tiff", {}, "tiff"),
        ("a.avif", {}, "avif"),
        ("a.heic", {"format": "HEIF"}, "heif"),
    ],
)
def test_inspect_names_the_format_and_size(
    write: Write, limits: DecodeLimits, name: str, params: dict[str, object], expected_format: str
) -> None:
    pillow_heif.register_heif_opener()
    info = inspect_image(write(name, quadrants(), **params), limits)
    assert (info.format, info.width, info.height, info.frames) == (expected_format, 120, 80, 1)


def test_inspect_reports_upright_size_orientation_icc_and_alpha(
    write: Write, limits: DecodeLimits
) -> None:
    stored = quadrants().transpose(Image.Transpose.ROTATE_90)  # 80×120 on disk
    path = write("o6.jpg", stored, exif=exif_with_orientation(6), icc_profile=p3_profile())
    assert inspect_image(path, limits) == ImageInfo(
        format="jpeg",
        width=120,
        height=80,
        frames=1,
        orientation=6,
        has_icc=True,
        has_alpha=False,
    )
    rgba = write("alpha.png", Image.new("RGBA", (10, 10), (1, 2, 3, 4)))
    assert inspect_image(rgba, limits).has_alpha


def test_inspect_reads_only_the_header(write: Write, limits: DecodeLimits) -> None:
    # The pixel data is cut off, but the header is intact: inspection cannot tell,
    # decoding must.
    data = Path(write("full.jpg", noise(400, 300), quality=95)).read_bytes()
    path = write("cut.jpg", data[: len(data) // 2])
    assert inspect_image(path, limits).width == 400
    with pytest.raises(CorruptImage):
        load_upright_srgb(path, limits)


def test_inspect_counts_frames(write: Write, limits: DecodeLimits) -> None:
    frames = [Image.new("RGB", (30, 20), (i * 20, 0, 0)) for i in range(7)]
    path = write("anim.gif", frames[0], save_all=True, append_images=frames[1:])
    assert inspect_image(path, limits).frames == 7


def test_disallowed_format_is_unsupported(write: Write) -> None:
    path = write("a.jpg", quadrants())
    with pytest.raises(UnsupportedImage, match="JPEG"):
        inspect_image(path, DecodeLimits(allowed=frozenset({"png"})))


def test_load_shrinks_on_load_and_turns_upright(write: Write, limits: DecodeLimits) -> None:
    stored = quadrants((1200, 800)).transpose(Image.Transpose.ROTATE_90)
    path = write("o6.jpg", stored, exif=exif_with_orientation(6), quality=95)
    image = load_upright_srgb(path, limits, target=(300, 300))
    assert (image.width, image.height) == (300, 200)
    assert image.interpretation == "srgb" and image.format == "uchar"
    assert image.get_typeof("orientation") == 0
    assert _near(image.getpoint(20, 20), RED)


@pytest.mark.parametrize("width", [1038, 1186, 1334, 1482])
def test_exact_decode_gives_the_planned_size_where_fitting_rounds_otherwise(
    write: Write, limits: DecodeLimits, width: int
) -> None:
    # 4000×3000 to these widths: fitting the box render used to decode to came out one
    # pixel off the plan (1038 wide: 1038×779, planned 1038×778), and a second resize
    # fixed it; an exact decode gives the planned size at once.
    path = write("big.jpg", quadrants((4000, 3000)), quality=80)
    planned = (width, round(width * 3000 / 4000))
    image = decode(open_image(path, limits), target=planned, exact=True)
    assert (image.width, image.height) == planned
    assert image.interpretation == "srgb"


def test_load_without_target_is_full_size(write: Write, limits: DecodeLimits) -> None:
    image = load_upright_srgb(write("a.png", quadrants()), limits)
    assert (image.width, image.height, image.bands) == (120, 80, 3)


def test_load_never_enlarges(write: Write, limits: DecodeLimits) -> None:
    image = load_upright_srgb(write("a.png", quadrants()), limits, target=(1000, 1000))
    assert (image.width, image.height) == (120, 80)


def test_icc_profile_is_honoured(write: Write, limits: DecodeLimits) -> None:
    # The same numbers, once untagged (sRGB) and once tagged Display P3: P3's primaries
    # are wider, so in sRGB the tagged orange is more saturated (more red, less blue).
    orange = Image.new("RGB", (32, 32), (200, 100, 50))
    plain = load_upright_srgb(write("plain.png", orange), limits).getpoint(5, 5)
    tagged_path = write("p3.png", orange, icc_profile=p3_profile())
    tagged = load_upright_srgb(tagged_path, limits)
    red, _, blue = tagged.getpoint(5, 5)
    assert plain == [200, 100, 50]
    assert red >= 210 and blue <= 40
    assert tagged.get_typeof("icc-profile-data") == 0  # converted, not merely re-tagged


def test_cmyk_jpeg_becomes_srgb(write: Write, limits: DecodeLimits) -> None:
    path = write("cmyk.jpg", Image.new("CMYK", (16, 16), (0, 255, 255, 0)))  # pure red ink
    image = load_upright_srgb(path, limits)
    red, green, blue = image.getpoint(4, 4)
    assert image.bands == 3 and red > 180 and green < 90 and blue < 90


def test_heic_is_decoded_with_its_profile(write: Write, limits: DecodeLimits) -> None:
    orange = Image.new("RGB", (64, 48), (200, 100, 50))
    path = write("p3.heic", orange, format="HEIF", quality=95, icc_profile=p3_profile())
    pillow_heif.register_heif_opener()
    image = load_upright_srgb(path, limits, target=(32, 32))
    red, _, blue = image.getpoint(5, 5)
    assert (image.width, image.height) == (32, 24)
    assert red >= 208 and blue <= 42


def test_heic_orientation_comes_out_upright(write: Write, limits: DecodeLimits) -> None:
    # pillow-heif turns EXIF orientation into the HEIF rotation (irot) it applies on decode.
    stored = quadrants().transpose(Image.Transpose.ROTATE_90)
    pillow_heif.register_heif_opener()
    path = write("o6.heic", stored, format="HEIF", quality=95, exif=exif_with_orientation(6))
    info = inspect_image(path, limits)
    image = load_upright_srgb(path, limits)
    assert (info.width, info.height) == (image.width, image.height) == (120, 80)
    assert _near(image.getpoint(10, 10), RED)


def test_avif_with_alpha_decodes(write: Write, limits: DecodeLimits) -> None:
    path = write("a.avif", Image.new("RGBA", (40, 30), (255, 0, 0, 128)))
    image = load_upright_srgb(path, limits)
    assert image.bands == 4 and abs(image.getpoint(3, 3)[3] - 128) <= 3


def test_sixteen_bit_and_grey_become_eight_bit_rgb(write: Write, limits: DecodeLimits) -> None:
    grey16 = (pyvips.Image.black(20, 10) + 40000).cast("ushort")
    path = write("g16.png", b"")
    grey16.copy(interpretation="grey16").pngsave(path)
    image = load_upright_srgb(path, limits)
    assert (image.bands, image.format, image.interpretation) == (3, "uchar", "srgb")
    assert abs(image.getpoint(1, 1)[0] - 40000 / 257) <= 2


def _near(actual: list[float], expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual[:3], expected, strict=True))


def test_orientation_table_matches_pillow() -> None:
    # Checks the test helper itself: Pillow's exif_transpose undoes each stored form.
    from PIL import ImageOps

    upright = quadrants()
    for orientation, method in STORE_FOR_ORIENTATION.items():
        stored = upright.transpose(method) if method is not None else upright.copy()
        stored.info["exif"] = exif_with_orientation(orientation)
        stored.getexif()[0x0112] = orientation
        assert ImageOps.exif_transpose(stored).tobytes() == upright.tobytes()
