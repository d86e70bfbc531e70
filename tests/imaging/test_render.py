"""Renditions: orientation, colour, formats, metadata, fit, budgets, one-decode speed."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pillow_heif
import pytest
import pyvips
from PIL import Image

from media_service.imaging.limits import DecodeLimits
from media_service.imaging.render import (
    Fit,
    OutputFormat,
    Rendered,
    RenderSpec,
    render,
    render_many,
)

from .conftest import (
    BLUE,
    GREEN,
    RED,
    STORE_FOR_ORIENTATION,
    decoded,
    exif_with_orientation,
    noise,
    p3_profile,
    quadrants,
)

Write = Callable[..., str]


def near(pixel: object, expected: tuple[int, ...], tolerance: int = 40) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - e) <= tolerance for a, e in zip(pixel, expected, strict=False))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(
    write: Write, limits: DecodeLimits, orientation: int
) -> None:
    method = STORE_FOR_ORIENTATION[orientation]
    upright = quadrants((240, 160))
    stored = upright.transpose(method) if method is not None else upright
    path = write(f"o{orientation}.jpg", stored, quality=95, exif=exif_with_orientation(orientation))
    result = render(path, RenderSpec(120, 120, format=OutputFormat.PNG), limits)
    image = decoded(result.data).convert("RGB")
    assert (result.width, result.height) == image.size == (120, 80)
    assert near(image.getpixel((10, 10)), RED)  # top-left
    assert near(image.getpixel((110, 10)), GREEN)  # top-right
    assert near(image.getpixel((10, 70)), BLUE)  # bottom-left
    assert near(image.getpixel((110, 70)), BLUE)


def test_icc_tagged_input_is_converted_to_srgb(write: Write, limits: DecodeLimits) -> None:
    orange = Image.new("RGB", (64, 64), (200, 100, 50))
    spec = RenderSpec(32, 32, format=OutputFormat.PNG)
    plain = decoded(render(write("plain.png", orange), spec, limits).data)
    tagged = decoded(render(write("p3.png", orange, icc_profile=p3_profile()), spec, limits).data)
    assert plain.getpixel((5, 5)) == (200, 100, 50)
    red, _, blue = tagged.getpixel((5, 5))
    assert red >= 210 and blue <= 40  # wider gamut seen through sRGB: more saturated
    assert "icc_profile" not in tagged.info  # untagged output means sRGB


@pytest.mark.parametrize("output", list(OutputFormat))
@pytest.mark.parametrize("source", ["a.heic", "a.avif", "a.webp", "a.tiff", "a.gif"])
def test_inputs_render_to_every_format(
    write: Write, limits: DecodeLimits, source: str, output: OutputFormat
) -> None:
    pillow_heif.register_heif_opener()
    path = write(source, quadrants(), **({"format": "HEIF"} if source.endswith("heic") else {}))
    result = render(path, RenderSpec(60, 60, format=output), limits)
    image = decoded(result.data)
    assert image.format == output.name if output is not OutputFormat.AVIF else "AVIF"
    assert image.size == (result.width, result.height) == (60, 40)
    assert near(image.convert("RGB").getpixel((8, 8)), RED, tolerance=60)
    assert result.content_type == f"image/{output.value}"
    assert result.quality == output.default_quality


def test_format_names_and_extensions() -> None:
    assert [f.extension for f in OutputFormat] == [".jpg", ".webp", ".avif", ".png"]
    assert OutputFormat.JPEG.content_type == "image/jpeg"


@pytest.mark.parametrize("output", [OutputFormat.PNG, OutputFormat.WEBP, OutputFormat.AVIF])
def test_alpha_is_kept_where_the_format_has_it(
    write: Write, limits: DecodeLimits, output: OutputFormat
) -> None:
    image = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (0, 0, 20, 40))
    result = render(write("a.png", image), RenderSpec(20, 20, format=output), limits)
    out = decoded(result.data).convert("RGBA")
    assert out.getpixel((2, 10))[3] >= 250 and out.getpixel((17, 10))[3] <= 5


def test_jpeg_flattens_alpha_on_white(write: Write, limits: DecodeLimits) -> None:
    transparent = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    out = decoded(render(write("a.png", transparent), RenderSpec(20, 20), limits).data)
    assert out.mode == "RGB" and near(out.getpixel((10, 10)), (255, 255, 255), tolerance=3)


XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>Secret Person'
    b"</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>"
)


def jpeg_with_all_metadata(write: Write) -> str:
    exif = Image.Exif()
    exif[0x010F] = "SecretCamera"  # Make
    exif[0x0112] = 1
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    path = write(
        "meta.jpg",
        quadrants(),
        exif=exif.tobytes(),
        comment=b"secret comment",
        xmp=XMP,
        icc_profile=p3_profile(),
    )
    source = Image.open(path)  # the test's premise: the input really carries it all
    assert source.getexif().get_ifd(0x8825) and b"secret" in source.info["comment"]
    assert "xmp" in source.info
    return path


@pytest.mark.parametrize("output", list(OutputFormat))
def test_no_metadata_survives(write: Write, limits: DecodeLimits, output: OutputFormat) -> None:
    result = render(jpeg_with_all_metadata(write), RenderSpec(60, 60, format=output), limits)
    for marker in (b"GPS", b"Exif", b"secret", b"Secret", b"xmpmeta", b"SecretCamera"):
        assert marker not in result.data
    out = decoded(result.data)
    assert not out.getexif()
    assert not {"comment", "xmp", "exif", "icc_profile"} & set(out.info)


@pytest.mark.parametrize(
    ("fit", "box", "size"),
    [
        (Fit.CONTAIN, (100, 100), (100, 50)),
        (Fit.COVER, (100, 100), (100, 100)),
        (Fit.FILL, (100, 100), (100, 100)),
        (Fit.CONTAIN, (None, 25), (50, 25)),
    ],
)
def test_fit_modes(
    write: Write,
    limits: DecodeLimits,
    fit: Fit,
    box: tuple[int | None, int | None],
    size: tuple[int, int],
) -> None:
    # 400×200: a red left quarter, a blue right quarter, green in the middle.
    image = Image.new("RGB", (400, 200), GREEN)
    image.paste(RED, (0, 0, 100, 200))
    image.paste(BLUE, (300, 0, 400, 200))
    spec = RenderSpec(*box, fit=fit, format=OutputFormat.PNG)
    result = render(write("bands.png", image), spec, limits)
    out = decoded(result.data)
    assert out.size == (result.width, result.height) == size
    left = out.getpixel((2, size[1] // 2))
    if fit is Fit.COVER:  # the centre 200×200 is kept: only green
        assert near(left, GREEN) and near(out.getpixel((97, 50)), GREEN)
    else:
        assert near(left, RED) and near(out.getpixel((size[0] - 3, size[1] // 2)), BLUE)
    if fit is Fit.FILL:  # stretched vertically: the quarter is still a quarter wide
        assert near(out.getpixel((22, 50)), RED) and near(out.getpixel((28, 50)), GREEN)


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        (RenderSpec(1000, 1000), (120, 80)),
        (RenderSpec(1000, 1000, upscale=True), (1000, 667)),
        (RenderSpec(500, 100, fit=Fit.COVER), (120, 80)),
        (RenderSpec(60, 60, fit=Fit.COVER), (60, 60)),
        (RenderSpec(240, 40, fit=Fit.FILL), (120, 20)),
        (RenderSpec(240, 40, fit=Fit.FILL, upscale=True), (240, 40)),
        (RenderSpec(None, 40), (60, 40)),
    ],
)
def test_no_upscale_unless_asked(
    write: Write, limits: DecodeLimits, spec: RenderSpec, size: tuple[int, int]
) -> None:
    result = render(write("a.png", quadrants()), spec, limits)
    assert (result.width, result.height) == decoded(result.data).size == size


def test_byte_budget_lowers_quality_until_it_fits(write: Write, limits: DecodeLimits) -> None:
    path = write("noise.png", noise(600, 400))
    unbounded = render(path, RenderSpec(600, 400), limits)
    budget = int(len(unbounded.data) * 0.7)
    fitted = render(path, RenderSpec(600, 400, max_bytes=budget), limits)
    assert fitted.fits_budget and len(fitted.data) <= budget
    assert 40 <= fitted.quality < unbounded.quality == 82


def test_impossible_budget_reports_it(write: Write, limits: DecodeLimits) -> None:
    path = write("noise.png", noise(300, 200))
    for output in (OutputFormat.WEBP, OutputFormat.PNG):
        result = render(path, RenderSpec(300, 200, format=output, max_bytes=500), limits)
        assert not result.fits_budget and len(result.data) > 500
    assert render(path, RenderSpec(300, 200, max_bytes=500), limits).quality == 40


def test_quality_changes_size(write: Write, limits: DecodeLimits) -> None:
    path = write("noise.png", noise(300, 200))
    for output in (OutputFormat.JPEG, OutputFormat.WEBP, OutputFormat.AVIF):
        high = render(path, RenderSpec(300, 200, format=output, quality=90), limits)
        low = render(path, RenderSpec(300, 200, format=output, quality=30), limits)
        assert len(low.data) < len(high.data) * 0.8 and low.quality == 30


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": None, "height": None},
        {"width": 0, "height": 10},
        {"width": 10, "height": 70_000},
        {"width": 10, "height": None, "fit": Fit.COVER},
        {"width": None, "height": 10, "fit": Fit.FILL},
        {"width": 10, "height": 10, "quality": 0},
        {"width": 10, "height": 10, "quality": 101},
        {"width": 10, "height": 10, "max_bytes": 0},
        {"width": True, "height": 10},
    ],
)
def test_spec_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"width|height|quality|max_bytes"):
        RenderSpec(**kwargs)  # type: ignore[arg-type]


def test_render_many_matches_separate_renders(write: Write, limits: DecodeLimits) -> None:
    path = write("photo.jpg", quadrants((1600, 1200)), quality=95)
    specs = [
        RenderSpec(256, 256, format=OutputFormat.WEBP),
        RenderSpec(1440, 1440),
        RenderSpec(100, 100, fit=Fit.COVER, format=OutputFormat.PNG),
    ]
    many = render_many(path, specs, limits)
    assert [(r.width, r.height, r.format) for r in many] == [
        (256, 192, OutputFormat.WEBP),
        (1440, 1080, OutputFormat.JPEG),
        (100, 100, OutputFormat.PNG),
    ]
    for together, spec in zip(many, specs, strict=True):
        alone = render(path, spec, limits)
        assert (alone.width, alone.height) == (together.width, together.height)
        assert near(decoded(together.data).convert("RGB").getpixel((5, 5)), RED)
    assert render_many(path, [], limits) == []


def _raw_ingest(path: str) -> None:
    # What hand-written pyvips would do for the same two outputs, with one decode.
    preview = pyvips.Image.thumbnail(path, 1440, fail_on="error").copy_memory()
    preview.jpegsave_buffer(Q=82, optimize_coding=True, keep="none")
    preview.thumbnail_image(256).webpsave_buffer(Q=80, keep="none")


def _ours(path: str, limits: DecodeLimits) -> list[Rendered]:
    specs = [RenderSpec(256, 256, format=OutputFormat.WEBP), RenderSpec(1440, 1440)]
    return render_many(path, specs, limits)


def test_render_many_is_close_to_raw_pyvips_speed(write: Write, limits: DecodeLimits) -> None:
    pyvips.cache_set_max(0)  # the raw run must not be served from libvips' cache
    path = write("12mp.jpg", noise(4000, 3000).resize((4000, 3000)), quality=90)
    raw_times, our_times = [], []
    for _ in range(5):  # alternate, so that a busy machine slows both alike
        start = time.perf_counter()
        _raw_ingest(path)
        raw_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        _ours(path, limits)
        our_times.append(time.perf_counter() - start)
    ratio = statistics.median(raw_times) / statistics.median(our_times)
    assert ratio >= 0.8, f"render_many reaches {ratio:.0%} of raw pyvips throughput"
