"""EXIF extraction: every field from every supported container, and hostile EXIF."""

from __future__ import annotations

import io
import json
import pickle
import struct
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pillow_heif
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image, PngImagePlugin
from PIL.TiffImagePlugin import IFDRational

from media_service.metadata.exif import ExifData, read_exif

B, G = ExifTags.Base, ExifTags.GPS
TAKEN_AT = datetime(2024, 5, 17, 14, 3, 27, 123000, tzinfo=timezone(timedelta(hours=2)))


def camera_exif(*, lat_ref: str = "S", lon_ref: str = "E") -> Image.Exif:
    """EXIF as a camera writes it: every field the typed columns take."""
    exif = Image.Exif()
    exif[B.Make] = "Canon\x00"
    exif[B.Model] = "EOS R5"
    exif[B.Orientation] = 6
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    sub[B.LensModel] = "RF35mm F1.8 MACRO IS STM"
    sub[B.FocalLength] = IFDRational(35, 1)
    sub[B.FocalLengthIn35mmFilm] = 56
    sub[B.FNumber] = IFDRational(18, 10)
    sub[B.ExposureTime] = IFDRational(1, 250)
    sub[B.ISOSpeedRatings] = 400
    sub[B.Flash] = 0x19  # fired, auto mode
    sub[B.DateTimeOriginal] = "2024:05:17 14:03:27"
    sub[B.OffsetTimeOriginal] = "+02:00"
    sub[B.SubsecTimeOriginal] = "123"
    sub[B.UserComment] = b"ASCII\x00\x00\x00holiday"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[G.GPSLatitudeRef] = lat_ref
    gps[G.GPSLatitude] = (IFDRational(33, 1), IFDRational(51, 1), IFDRational(2448, 100))
    gps[G.GPSLongitudeRef] = lon_ref
    gps[G.GPSLongitude] = (IFDRational(151, 1), IFDRational(12, 1), IFDRational(5508, 100))
    gps[G.GPSAltitudeRef] = b"\x00"
    gps[G.GPSAltitude] = IFDRational(585, 10)
    return exif


def save(path: Path, fmt: str, exif: Image.Exif | bytes | None, **options: object) -> Path:
    """A small photo in ``fmt`` carrying ``exif``."""
    pillow_heif.register_heif_opener()
    image = Image.new("RGB", (64, 48), (200, 120, 40))
    if exif is not None:
        # Pillow's TIFF writer only nests the sub-IFDs when given serialised EXIF.
        options["exif"] = exif.tobytes() if isinstance(exif, Image.Exif) else exif
    image.save(path, fmt, **options)
    return path


def jpeg_with_app1(payload: bytes) -> bytes:
    """A JPEG whose EXIF APP1 segment carries ``payload`` (after "Exif\\0\\0") verbatim."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16)).save(out, "JPEG")
    jpeg = out.getvalue()
    segment = b"Exif\x00\x00" + payload
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + jpeg[2:]


def tiff_block(entries: list[tuple[int, int, int, bytes]], tail: bytes = b"") -> bytes:
    """A little-endian TIFF header and one IFD of raw ``(tag, type, count, value)`` entries."""
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + tail


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def assert_camera_fields(data: ExifData, *, orientation: int = 6) -> None:
    assert data.camera_make == "Canon"
    assert data.camera_model == "EOS R5"
    assert data.lens_model == "RF35mm F1.8 MACRO IS STM"
    assert data.focal_length == "35 mm"
    assert data.aperture == "f/1.8"
    assert data.shutter_speed == "1/250 s"
    assert data.iso == 400
    assert data.flash_used is True
    assert data.latitude == pytest.approx(-(33 + 51 / 60 + 24.48 / 3600))
    assert data.longitude == pytest.approx(151 + 12 / 60 + 55.08 / 3600)
    assert data.altitude == pytest.approx(58.5)
    assert data.taken_at == TAKEN_AT
    assert data.taken_at is not None and data.taken_at.utcoffset() == timedelta(hours=2)
    assert data.taken_offset_minutes == 120
    assert data.orientation == orientation
    assert data.full["Exif"]["FocalLengthIn35mmFilm"] == 56
    assert data.full["Exif"]["UserComment"] == "holiday"
    assert "_errors" not in data.full


def assert_json_safe(data: ExifData) -> None:
    encoded = json.dumps(data.full, allow_nan=False)
    assert "\\u0000" not in encoded
    assert len(encoded) <= 70 * 1024


# -- every container -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "suffix", "orientation"),
    [
        ("JPEG", "jpg", 6),
        ("PNG", "png", 6),
        ("WEBP", "webp", 6),
        ("TIFF", "tiff", 6),
        ("AVIF", "avif", 6),
        # libheif applies HEIF's own rotation while decoding, so pillow-heif resets the EXIF
        # orientation to 1: what a viewer must still apply to the decoded pixels.
        ("HEIF", "heic", 1),
    ],
)
def test_every_field_from_every_container(
    tmp_path: Path, fmt: str, suffix: str, orientation: int
) -> None:
    path = save(tmp_path / f"photo.{suffix}", fmt, camera_exif())

    data = read_exif(str(path))

    assert_camera_fields(data, orientation=orientation)
    assert data.full["IFD0"]["Model"] == "EOS R5"
    assert data.full["GPS"]["GPSLatitudeRef"] == "S"
    assert_json_safe(data)


@pytest.mark.parametrize(("fmt", "suffix"), [("JPEG", "jpg"), ("PNG", "png"), ("HEIF", "heic")])
def test_photo_without_exif_gives_nothing(tmp_path: Path, fmt: str, suffix: str) -> None:
    path = save(tmp_path / f"plain.{suffix}", fmt, None)

    assert read_exif(str(path)) == ExifData()


def test_result_is_picklable_for_worker_processes(tmp_path: Path) -> None:
    data = read_exif(str(save(tmp_path / "a.jpg", "JPEG", camera_exif())))

    assert pickle.loads(pickle.dumps(data)) == data  # noqa: S301 (our own bytes)


def test_south_and_west_are_negative(tmp_path: Path) -> None:
    north_west = read_exif(
        str(save(tmp_path / "nw.jpg", "JPEG", camera_exif(lat_ref="N", lon_ref="W")))
    )

    assert north_west.latitude == pytest.approx(33.8568)
    assert north_west.longitude == pytest.approx(-151.2153)


def test_png_text_chunks_are_kept(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", "Sunset\x00 at the pier")
    info.add_text("Author", "Ana", zip=True)
    path = save(tmp_path / "text.png", "PNG", camera_exif(), pnginfo=info)

    data = read_exif(str(path))

    assert data.full["PNG"] == {"Description": "Sunset at the pier", "Author": "Ana"}
    assert data.camera_make == "Canon"


def test_png_exif_after_the_pixels_is_found_without_decoding_them(tmp_path: Path) -> None:
    png = io.BytesIO()
    Image.new("RGB", (64, 48)).save(png, "PNG")
    data = png.getvalue()
    iend = data.rindex(b"IEND") - 4
    exif_chunk = png_chunk(b"eXIf", camera_exif().tobytes()[6:])
    # Garbage pixel data: if anything decoded it, the read would fail and say so.
    idat = data.index(b"IDAT") - 4
    (idat_length,) = struct.unpack(">I", data[idat : idat + 4])
    broken = png_chunk(b"IDAT", b"\x00" * idat_length)
    path = tmp_path / "late.png"
    path.write_bytes(
        data[:idat] + broken + data[idat + 12 + idat_length : iend] + exif_chunk + data[iend:]
    )

    result = read_exif(str(path))

    assert_camera_fields(result)


def test_png_raw_profile_text_chunk_is_read_as_exif(tmp_path: Path) -> None:
    # ImageMagick stores EXIF as hex in a "Raw profile type exif" text chunk.
    blob = camera_exif().tobytes()
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", f"\nexif\n{len(blob):8d}\n{blob.hex()}\n", zip=True)
    path = save(tmp_path / "raw.png", "PNG", None, pnginfo=info)

    data = read_exif(str(path))

    assert data.camera_model == "EOS R5"
    assert data.iso == 400
    assert "PNG" not in data.full  # the hex copy is not kept twice


# -- field rules ---------------------------------------------------------------------------


def exif_with(
    tmp_path: Path, edit: Callable[[Image.Exif], None], name: str = "edited.jpg"
) -> ExifData:
    exif = camera_exif()
    edit(exif)
    fmt = "PNG" if name.endswith(".png") else "JPEG"
    return read_exif(str(save(tmp_path / name, fmt, exif)))


def test_shutter_speeds_and_apertures_read_like_a_camera_display(tmp_path: Path) -> None:
    def long_exposure(exif: Image.Exif) -> None:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        sub[B.ExposureTime] = IFDRational(2, 1)
        sub[B.FNumber] = IFDRational(8, 1)
        sub[B.FocalLength] = IFDRational(42, 10)
        sub[B.Flash] = 0x10  # did not fire

    data = exif_with(tmp_path, long_exposure)

    assert (data.shutter_speed, data.aperture, data.focal_length) == ("2 s", "f/8", "4.2 mm")
    assert data.flash_used is False


def test_apex_values_stand_in_for_missing_exposure_and_f_number(tmp_path: Path) -> None:
    def apex_only(exif: Image.Exif) -> None:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        del sub[B.ExposureTime], sub[B.FNumber]
        sub[B.ShutterSpeedValue] = IFDRational(7, 1)  # 2^-7 s = 1/128 s
        sub[B.ApertureValue] = IFDRational(4, 1)  # 2^(4/2) = f/4

    data = exif_with(tmp_path, apex_only)

    assert (data.shutter_speed, data.aperture) == ("1/128 s", "f/4")


def test_zero_denominators_are_absent_not_errors(tmp_path: Path) -> None:
    def zeros(exif: Image.Exif) -> None:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        for tag in (B.FocalLength, B.FNumber, B.ExposureTime):
            sub[tag] = IFDRational(0, 0)
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps[G.GPSLatitude] = (IFDRational(0, 0), IFDRational(0, 0), IFDRational(0, 0))
        gps[G.GPSAltitude] = IFDRational(1, 0)

    data = exif_with(tmp_path, zeros)

    assert (data.focal_length, data.aperture, data.shutter_speed) == (None, None, None)
    assert (data.latitude, data.longitude, data.altitude) == (None, None, None)
    assert data.camera_make == "Canon"
    assert_json_safe(data)


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [
        ((IFDRational(95, 1), IFDRational(0, 1), IFDRational(0, 1)), None),  # beyond the pole
        ((IFDRational(0, 1), IFDRational(0, 1), IFDRational(0, 1)), (0, 0, 0)),  # Null Island
    ],
)
def test_impossible_positions_are_dropped(
    tmp_path: Path, latitude: tuple[IFDRational, ...], longitude: tuple[int, ...] | None
) -> None:
    def position(exif: Image.Exif) -> None:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps[G.GPSLatitude] = latitude
        if longitude is not None:
            gps[G.GPSLongitude] = tuple(IFDRational(v, 1) for v in longitude)

    data = exif_with(tmp_path, position)

    assert (data.latitude, data.longitude) == (None, None)


def test_altitude_below_sea_level_is_negative(tmp_path: Path) -> None:
    data = exif_with(
        tmp_path, lambda e: e.get_ifd(ExifTags.IFD.GPSInfo).update({G.GPSAltitudeRef: b"\x01"})
    )

    assert data.altitude == pytest.approx(-58.5)


def test_time_without_offset_is_naive_local_time(tmp_path: Path) -> None:
    def no_offset(exif: Image.Exif) -> None:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        del sub[B.OffsetTimeOriginal], sub[B.SubsecTimeOriginal]

    data = exif_with(tmp_path, no_offset)

    assert data.taken_at == datetime(2024, 5, 17, 14, 3, 27)
    assert data.taken_at is not None and data.taken_at.tzinfo is None
    assert data.taken_offset_minutes is None


def test_offset_time_stands_in_for_offset_time_original(tmp_path: Path) -> None:
    def general_offset(exif: Image.Exif) -> None:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        del sub[B.OffsetTimeOriginal]
        sub[B.OffsetTime] = "-05:30"

    data = exif_with(tmp_path, general_offset)

    assert data.taken_offset_minutes == -330
    assert data.taken_at is not None and data.taken_at.utcoffset() == timedelta(minutes=-330)


@pytest.mark.parametrize(
    "value", ["0000:00:00 00:00:00", "    :  :     :  :  ", "2024:13:45 99:00:00"]
)
def test_blank_or_impossible_dates_fall_back_to_the_digitized_time(
    tmp_path: Path, value: str
) -> None:
    def bad_date(exif: Image.Exif) -> None:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        sub[B.DateTimeOriginal] = value
        sub[B.DateTimeDigitized] = "2023:01:02 03:04:05"
        sub[B.OffsetTimeOriginal] = "+99:00"

    data = exif_with(tmp_path, bad_date)

    assert data.taken_at == datetime(2023, 1, 2, 3, 4, 5)
    assert data.taken_offset_minutes is None


@pytest.mark.parametrize(
    ("value", "offset"), [("9999:12:31 23:59:59", "-14:00"), ("9999:12:31 12:00:00", "-12:00")]
)
def test_a_time_whose_offset_leaves_the_calendar_is_kept_as_local_time(
    tmp_path: Path, value: str, offset: str
) -> None:
    """Converted to UTC it would not exist (the analysis job failed on OverflowError and
    the photo was dead-lettered): kept as the camera's wall time, offset unknown."""

    def edge_of_time(exif: Image.Exif) -> None:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        sub[B.DateTimeOriginal] = value
        sub[B.OffsetTimeOriginal] = offset
        del sub[B.SubsecTimeOriginal]

    data = exif_with(tmp_path, edge_of_time)

    assert data.taken_at == datetime.strptime(value, "%Y:%m:%d %H:%M:%S")
    assert data.taken_offset_minutes is None


def test_text_is_cleaned_and_fits_its_column(tmp_path: Path) -> None:
    def messy(exif: Image.Exif) -> None:
        # UTF-8 bytes, which Pillow reads back as Latin-1.
        exif[B.Make] = "  Ünïcode Cameras\x00\x00 ".encode()
        exif[B.Model] = "M" * 5000
        exif[B.Orientation] = 9  # not an orientation

    data = exif_with(tmp_path, messy)

    assert data.camera_make == "Ünïcode Cameras"
    assert data.camera_model == "M" * 100
    assert data.orientation is None
    assert "Model" not in data.full["IFD0"]  # over the ~1 kB cap for one value
    assert_json_safe(data)


def test_full_drops_maker_notes_and_long_binary_and_hexes_short_binary(tmp_path: Path) -> None:
    def binary(exif: Image.Exif) -> None:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        sub[B.MakerNote] = b"Nikon\x00" + bytes(range(256)) * 4
        sub[B.ComponentsConfiguration] = b"\x01\x02\x03\x00"
        sub[B.SceneType] = b"\x01"
        sub[B.ImageUniqueID] = "a" * 32
        sub[0xA420 + 0x100] = bytes(range(200))  # an unknown binary tag

    full = exif_with(tmp_path, binary).full

    assert "MakerNote" not in full["Exif"]
    assert full["Exif"]["ComponentsConfiguration"] == "01020300"
    assert full["Exif"]["SceneType"] == "01"
    assert "0xA520" not in full["Exif"]


def test_full_is_capped_at_about_64_kb(tmp_path: Path) -> None:
    def many_tags(exif: Image.Exif) -> None:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        for offset in range(120):  # private tags, 900 characters each: ~110 kB in all
            sub[0xC000 + offset] = f"{offset:03d}" + "x" * 897

    data = exif_with(tmp_path, many_tags, name="big.png")  # JPEG's APP1 holds 64 kB at most

    assert 50 * 1024 < len(json.dumps(data.full)) <= 70 * 1024
    assert any("cut" in error for error in data.full["_errors"])
    assert data.iso == 400


# -- hostile input -------------------------------------------------------------------------


def write(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def test_truncated_app1_segment(tmp_path: Path) -> None:
    payload = camera_exif().tobytes()[6:]
    for cut in (4, 8, 20, 60, len(payload) // 2, len(payload) - 3):
        data = read_exif(write(tmp_path, f"cut{cut}.jpg", jpeg_with_app1(payload[:cut])))
        assert isinstance(data, ExifData)
        assert_json_safe(data)


def test_truncated_file_still_gives_the_exif(tmp_path: Path) -> None:
    jpeg = save(tmp_path / "whole.jpg", "JPEG", camera_exif()).read_bytes()
    scan = jpeg.index(b"\xff\xda")
    (header_length,) = struct.unpack(">H", jpeg[scan + 2 : scan + 4])
    cut = scan + 2 + header_length + 20  # the pixel data is cut short: no decode happens

    assert_camera_fields(read_exif(write(tmp_path, "cut.jpg", jpeg[:cut])))


def test_random_bytes_as_exif(tmp_path: Path) -> None:
    noise = bytes((i * 7919 + 13) % 256 for i in range(4000))
    data = read_exif(write(tmp_path, "noise.jpg", jpeg_with_app1(noise)))

    assert data.camera_make is None
    assert data.full["_errors"] == ["IFD0: the EXIF block is not readable TIFF data"]
    assert_json_safe(data)


def test_gps_pointer_out_of_the_file(tmp_path: Path) -> None:
    block = tiff_block([(B.Make, 2, 4, b"Sony"), (B.GPSInfo, 4, 1, struct.pack("<I", 0x7FFF_FF00))])
    data = read_exif(write(tmp_path, "gps.jpg", jpeg_with_app1(block)))

    assert data.camera_make == "Sony"
    assert (data.latitude, data.longitude) == (None, None)


def test_huge_counts_and_offsets(tmp_path: Path) -> None:
    block = tiff_block(
        [
            (B.Make, 2, 0xFFFF_FFFF, struct.pack("<I", 30)),  # 4 GB of ASCII
            (B.Model, 2, 6, struct.pack("<I", 0xFFFF_FFF0)),  # past the end
            (B.ImageDescription, 5, 0x4000_0000, struct.pack("<I", 8)),  # 8 GB of rationals
            (B.Orientation, 3, 1, struct.pack("<H", 3)),
        ]
    )
    data = read_exif(write(tmp_path, "huge.jpg", jpeg_with_app1(block)))

    assert data.orientation == 3
    assert (data.camera_make, data.camera_model) == (None, None)
    assert data.full["_errors"]  # Pillow's "possibly corrupt" warnings are recorded


def test_exif_ifd_pointing_back_to_ifd0_does_not_loop(tmp_path: Path) -> None:
    block = tiff_block([(B.Make, 2, 4, b"Leic"), (B.ExifOffset, 4, 1, struct.pack("<I", 8))])
    data = read_exif(write(tmp_path, "loop.jpg", jpeg_with_app1(block)))

    assert data.camera_make == "Leic"


def test_ifd_claiming_65535_entries(tmp_path: Path) -> None:
    block = b"II*\x00" + struct.pack("<IH", 8, 0xFFFF) + b"\x0f\x01\x02\x00" * 10
    data = read_exif(write(tmp_path, "entries.jpg", jpeg_with_app1(block)))

    assert isinstance(data, ExifData)
    assert_json_safe(data)


def test_declared_decompression_bomb_still_gives_its_exif(tmp_path: Path) -> None:
    jpeg = save(tmp_path / "small.jpg", "JPEG", camera_exif()).read_bytes()
    sof = jpeg.index(b"\xff\xc0")
    # 60000 × 60000 declared in the frame header: Image.open would refuse to open it.
    bomb = jpeg[: sof + 5] + struct.pack(">HH", 60000, 60000) + jpeg[sof + 9 :]

    with pytest.raises(Image.DecompressionBombError):
        Image.open(write(tmp_path, "bomb.jpg", bomb))
    assert_camera_fields(read_exif(str(tmp_path / "bomb.jpg")))


def test_not_an_image_is_reported_not_raised(tmp_path: Path) -> None:
    data = read_exif(write(tmp_path, "page.jpg", b"<html><script>alert(1)</script></html>"))

    assert data.camera_make is None
    assert data.full["_errors"][0].startswith("open:")


def test_missing_file_raises() -> None:
    with pytest.raises(FileNotFoundError):
        read_exif("/nonexistent/photo.jpg")


VALID_PAYLOAD = camera_exif().tobytes()[6:]


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.integers(min_value=0, max_value=len(VALID_PAYLOAD)),
    length=st.integers(min_value=0, max_value=64),
    noise=st.binary(min_size=0, max_size=64),
)
def test_random_bytes_spliced_into_exif_never_raise(
    fuzz_dir: Path, start: int, length: int, noise: bytes
) -> None:
    payload = VALID_PAYLOAD[:start] + noise + VALID_PAYLOAD[start + length :]
    path = fuzz_dir / "fuzz.jpg"
    path.write_bytes(jpeg_with_app1(payload))

    data = read_exif(str(path))

    assert_json_safe(data)
    assert data.latitude is None or -90 <= data.latitude <= 90
    assert data.longitude is None or -180 <= data.longitude <= 180
    assert data.orientation is None or 1 <= data.orientation <= 8
