"""What the imaging worker does for versions, on real images: upright, metadata-free,
alpha kept, limits applied, bad parameters and bad files refused (also across the pool)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from media_service.imaging.errors import CorruptImage, ImageTooLarge, UnsupportedImage
from media_service.imaging.limits import DecodeLimits
from media_service.imaging.pool import ImagingPool
from media_service.imaging.specs import OutputFormat
from media_service.versions.modes import CropBox, Edit, InvalidEdit, Mode
from media_service.versions.pipeline import check_image, render_edit

LIMITS = DecodeLimits()
RED, GREEN, BLUE = (230, 20, 20), (20, 200, 20), (20, 20, 230)


def upright() -> Image.Image:
    """120 × 80, blue, with a red top-left and a green top-right quadrant."""
    image = Image.new("RGB", (120, 80), BLUE)
    image.paste(RED, (0, 0, 60, 40))
    image.paste(GREEN, (60, 0, 120, 40))
    return image


def sideways_jpeg(path: Path) -> str:
    """The upright image stored turned, with EXIF Orientation 6 and GPS, as cameras do."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.0)})
    upright().transpose(Image.Transpose.ROTATE_90).save(path, "JPEG", quality=95, exif=exif)
    return str(path)


def colour(image: Image.Image, x: int, y: int) -> tuple[int, ...]:
    value = image.convert("RGBA").getpixel((x, y))
    assert isinstance(value, tuple)
    return tuple(int(v) for v in value)


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_versions_are_made_from_the_upright_image_and_carry_no_metadata(tmp_path: Path) -> None:
    source = sideways_jpeg(tmp_path / "p.jpg")
    made = render_edit(source, Edit(Mode.SEPIA), LIMITS)
    image = opened(made.data)
    assert made.format is OutputFormat.JPEG and image.format == "JPEG"
    assert image.size == (made.width, made.height) == (120, 80)
    assert not image.getexif() and b"GPS" not in made.data
    red, green, blue, _ = colour(image, 10, 10)
    assert red > green > blue  # sepia of red


def test_rotate_and_crop_work_on_what_people_see(tmp_path: Path) -> None:
    source = sideways_jpeg(tmp_path / "p.jpg")
    turned = opened(render_edit(source, Edit(Mode.ROTATE, angle=90), LIMITS).data)
    assert turned.size == (80, 120)
    assert colour(turned, 70, 10)[0] > 180  # red (top-left) went to the top right
    assert colour(turned, 70, 110)[1] > 150  # green (top-right) to the bottom right
    upside = opened(render_edit(source, Edit(Mode.ROTATE, angle=180), LIMITS).data)
    assert colour(upside, 110, 70)[0] > 180
    box = CropBox(60, 0, 60, 40)
    cropped = opened(render_edit(source, Edit(Mode.CROP, crop=box), LIMITS).data)
    assert cropped.size == (60, 40) and colour(cropped, 30, 20)[1] > 150
    half = CropBox(0, 0.5, 1, 0.5, "fraction")
    bottom = opened(render_edit(source, Edit(Mode.CROP, crop=half), LIMITS).data)
    assert bottom.size == (120, 40) and colour(bottom, 60, 20)[2] > 180


def test_colour_modes_change_colours_as_named(tmp_path: Path) -> None:
    source = str(tmp_path / "p.png")
    upright().save(source)

    def at(mode: Mode, x: int = 10, y: int = 10) -> tuple[int, ...]:
        return colour(opened(render_edit(source, Edit(mode), LIMITS).data), x, y)

    grey = at(Mode.BLACK_AND_WHITE)
    assert max(grey[:3]) - min(grey[:3]) <= 2
    assert at(Mode.WARM, 10, 70)[2] < BLUE[2] < at(Mode.COOL, 10, 70)[2]
    assert at(Mode.HIGH_CONTRAST)[0] >= RED[0]
    vivid, plain = at(Mode.VIVID, 70, 10), GREEN
    assert vivid[1] - max(vivid[0], vivid[2]) > plain[1] - max(plain[0], plain[2])


def test_auto_enhance_stretches_a_dull_image(tmp_path: Path) -> None:
    source = str(tmp_path / "dull.png")
    dull = Image.new("RGB", (100, 100), (110, 110, 110))
    dull.paste((140, 140, 140), (50, 0, 100, 100))
    dull.save(source)
    image = opened(render_edit(source, Edit(Mode.AUTO_ENHANCE), LIMITS).data)
    dark, light = colour(image, 20, 50)[0], colour(image, 80, 50)[0]
    assert light - dark > 150  # 30 levels apart before


@pytest.mark.parametrize("size", [(1, 1), (3, 1), (1, 3), (100, 3), (5, 2)])
@pytest.mark.parametrize(
    "mode",
    [mode for mode in Mode if mode not in (Mode.ROTATE, Mode.CROP)],  # those take parameters
    ids=lambda mode: mode.value,
)
def test_every_colour_mode_renders_a_tiny_image(
    tmp_path: Path, size: tuple[int, int], mode: Mode
) -> None:
    """Auto-enhance subsampled every 4th pixel, which left nothing of a side under 4 px
    (a 500 for such a photo, found by fuzzing)."""
    source = str(tmp_path / "tiny.png")
    Image.new("RGB", size, (90, 120, 150)).save(source)
    image = opened(render_edit(source, Edit(mode), LIMITS).data)
    assert image.size == size


def test_transparency_is_kept_as_png(tmp_path: Path) -> None:
    source = str(tmp_path / "a.png")
    Image.new("RGBA", (40, 30), (200, 40, 40, 90)).save(source)
    made = render_edit(source, Edit(Mode.SEPIA), LIMITS)
    assert made.format is OutputFormat.PNG
    image = opened(made.data)
    assert image.mode == "RGBA" and colour(image, 5, 5)[3] == 90


def test_limits_and_bad_files_are_refused(tmp_path: Path) -> None:
    source = sideways_jpeg(tmp_path / "p.jpg")
    with pytest.raises(ImageTooLarge):
        render_edit(source, Edit(Mode.SEPIA), DecodeLimits(max_pixels=5000))
    with pytest.raises(InvalidEdit) as refused:
        render_edit(source, Edit(Mode.CROP, crop=CropBox(100, 0, 30, 10)), LIMITS)
    assert refused.value.field == "crop" and "120×80" in refused.value.message
    assert (check_image(source, LIMITS).width, check_image(source, LIMITS).height) == (120, 80)
    data = Path(source).read_bytes()
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImage):
        check_image(str(truncated), LIMITS)
    svg = tmp_path / "x.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    with pytest.raises(UnsupportedImage):
        check_image(str(svg), LIMITS)


@pytest.fixture
async def pool() -> AsyncIterator[ImagingPool]:
    workers = ImagingPool(1)
    try:
        yield workers
    finally:
        await workers.close()


async def test_errors_cross_the_process_boundary_intact(tmp_path: Path, pool: ImagingPool) -> None:
    source = sideways_jpeg(tmp_path / "p.jpg")
    made = await pool.run(render_edit, source, Edit(Mode.ROTATE, angle=270), LIMITS)
    assert (made.width, made.height) == (80, 120)
    with pytest.raises(InvalidEdit) as refused:
        await pool.run(render_edit, source, Edit(Mode.CROP, crop=CropBox(0, 0, 0.5, 9)), LIMITS)
    assert refused.value.field == "crop"
