"""Read a photo's EXIF from its header, without decoding a single pixel.

Runs inside imaging worker processes, so the API is one module-level function returning a
frozen, picklable :class:`ExifData`. EXIF is attacker-controlled: whatever fails to parse is
skipped and described in ``full["_errors"]``; :func:`read_exif` raises only when the file
itself cannot be opened (a missing file is the caller's bug, not bad EXIF).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import struct
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import IO, Any, TypeVar

from PIL import ExifTags, Image, ImageFile

T = TypeVar("T")

# Formats the service accepts as photos (see media.sniff); never any other Pillow plugin.
_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "HEIF", "AVIF", "GIF")
_IFD, _T, _G = ExifTags.IFD, ExifTags.Base, ExifTags.GPS
# (time, sub-seconds, offset) tags, best first: when the shutter fired, then when digitised.
_TIME_TAGS = (
    (_T.DateTimeOriginal, _T.SubsecTimeOriginal, _T.OffsetTimeOriginal),
    (_T.DateTimeDigitized, _T.SubsecTimeDigitized, _T.OffsetTimeDigitized),
)
# Pointers, thumbnails, strip/tile layouts and binary blobs: no meaning to a reader.
_DROPPED_TAGS = frozenset(
    {
        _T.ExifOffset, _T.GPSInfo, _IFD.Interop, _T.MakerNote, _T.JpegIFOffset,
        _T.JpegIFByteCount, _T.StripOffsets, _T.StripByteCounts, _T.TileOffsets,
        _T.TileByteCounts, _T.PrintImageMatching, _T.XMLPacket, _T.InterColorProfile,
        _T.IPTCNAA, _T.ImageResources,
    }
)  # fmt: skip
_MAX_VALUE_CHARS = 1024  # a value longer than this, JSON-encoded, is cut or dropped
_MAX_FULL_CHARS = 64 * 1024  # the whole ``full`` dictionary, JSON-encoded
_MAX_HEX_BYTES = 32  # binary values up to this size are kept as hex, longer ones dropped
_MAX_LIST_ITEMS = 64
_MAX_PNG_CHUNKS = 100_000  # chunk headers walked to find a late eXIf (libpng writes 8 KB IDATs)
_MAX_PNG_EXIF = 1024 * 1024
_DATETIME = re.compile(r"\s*(\d{4})[:\-/](\d\d)[:\-/](\d\d)[ T](\d\d):(\d\d):(\d\d)")
_NO_POSITION: tuple[float | None, float | None] = (None, None)
_NO_TIME: tuple[datetime | None, int | None] = (None, None)
_OFFSET = re.compile(r"\s*([+-])(\d\d):?(\d\d)\s*$")


@dataclass(frozen=True)
class ExifData:
    """What a photo's EXIF says, in the shapes of the ``photo_metadata`` columns.

    ``taken_at`` is naive local time, or aware when the camera recorded its UTC offset
    (then ``taken_offset_minutes`` holds it) and that offset keeps it within the calendar in
    UTC (9999-12-31 23:59 at -14:00 stays naive, its offset unknown). ``full`` holds every
    readable tag, JSON-safe, grouped as ``IFD0``/``Exif``/``GPS`` (plus ``PNG`` text
    chunks), and ``_errors`` listing what could not be read.
    """

    camera_make: str | None = None
    camera_model: str | None = None
    lens_model: str | None = None
    focal_length: str | None = None
    aperture: str | None = None
    shutter_speed: str | None = None
    iso: int | None = None
    flash_used: bool | None = None
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None
    taken_at: datetime | None = None
    taken_offset_minutes: int | None = None
    orientation: int | None = None
    full: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Tags:
    """The IFDs as read, and what went wrong while reading them."""

    ifd0: dict[int, Any] = field(default_factory=dict)
    exif: dict[int, Any] = field(default_factory=dict)
    gps: dict[int, Any] = field(default_factory=dict)
    png_text: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def attempt(self, what: str, read: Callable[[], T], default: T) -> T:
        """``read()``, or ``default`` with the failure noted: hostile EXIF must never raise."""
        try:
            return read()
        except Exception as exc:  # any parser failure on hostile bytes degrades to "unread"
            self.errors.append(_clip(f"{what}: {type(exc).__name__}: {exc}", 200))
            return default


# -- reading ------------------------------------------------------------------------------


def read_exif(path: str) -> ExifData:
    """The EXIF of the JPEG, HEIC/HEIF, AVIF, PNG, WebP or TIFF file at ``path``.

    Reads headers only. Raises ``OSError`` only if the file cannot be opened; an unknown
    format or broken EXIF gives the fields that could be read, and ``full["_errors"]``.
    """
    tags = _Tags()
    with open(path, "rb") as fp, warnings.catch_warnings(record=True) as caught:
        # Pillow warns (corrupt EXIF, decompression bomb) instead of raising: keep the notes.
        warnings.simplefilter("always")
        image = tags.attempt("open", lambda: _open_header(fp, path), None)
        if image is not None:
            _read_tags(image, tags)
    tags.errors.extend(_clip(f"warning: {w.message}", 200) for w in caught)
    return tags.attempt("EXIF values", lambda: _to_exif_data(tags), None) or ExifData(
        full={"_errors": tags.errors}
    )


def _open_header(fp: IO[bytes], path: str) -> ImageFile.ImageFile:
    """Identify the file among the allowed formats and parse its header.

    Like ``Image.open`` without the decompression-bomb check: no pixel is decoded here, and
    a huge declared size must not hide the EXIF. Changing ``Image.MAX_IMAGE_PIXELS``
    instead would switch the check off for every decoder in the process.
    """
    _register_plugins()
    prefix = fp.read(16)
    for name in _FORMATS:
        factory, accept = Image.OPEN[name]
        verdict = accept(prefix) if accept is not None else True
        if not verdict or isinstance(verdict, str):  # a string: recognised but unsupported
            continue
        fp.seek(0)
        return factory(fp, path)
    raise ValueError("not a JPEG, HEIF, AVIF, PNG, WebP, TIFF or GIF file")


def _register_plugins() -> None:
    """Make sure Pillow knows every format in ``_FORMATS`` (HEIF comes from pillow-heif)."""
    if "HEIF" not in Image.OPEN:
        import pillow_heif  # here, not at import: registering an opener is a side effect

        pillow_heif.register_heif_opener()
    if not all(name in Image.OPEN for name in _FORMATS):
        Image.init()


def _read_tags(image: ImageFile.ImageFile, tags: _Tags) -> None:
    """Fill ``tags`` from ``image``'s EXIF IFDs and PNG text chunks."""
    if image.format == "PNG":
        info = image.info.items()
        tags.png_text = {k: v for k, v in info if isinstance(k, str) and isinstance(v, str)}
        tags.attempt("PNG eXIf", lambda: _find_late_png_exif(image), None)
    exif = tags.attempt("IFD0", image.getexif, Image.Exif())
    tags.ifd0 = tags.attempt("IFD0", lambda: dict(exif), {})
    if not tags.ifd0 and image.info.get("exif") and not tags.errors:
        # Pillow's JPEG reader already swallowed the parse error while looking for DPI.
        tags.errors.append("IFD0: the EXIF block is not readable TIFF data")
    tags.exif = tags.attempt("Exif IFD", lambda: dict(exif.get_ifd(_IFD.Exif)), {})
    tags.gps = tags.attempt("GPS IFD", lambda: dict(exif.get_ifd(_IFD.GPSInfo)), {})


def _find_late_png_exif(image: ImageFile.ImageFile) -> None:
    """Put an ``eXIf`` chunk stored after the pixel data into ``image.info``.

    Pillow sees such a chunk only after decoding every pixel (its ``getexif`` calls
    ``load``); walking the chunk headers finds it with a few seeks.
    """
    if "exif" in image.info or "Raw profile type exif" in image.info:
        return
    assert image.fp is not None
    # An empty value also stops PngImageFile.getexif from decoding the pixels to look.
    image.info["exif"] = _find_png_chunk(image.fp, b"eXIf") or b""


def _find_png_chunk(fp: IO[bytes], wanted: bytes) -> bytes | None:
    """The data of the first ``wanted`` chunk of the PNG in ``fp``, read by seeking."""
    fp.seek(8)
    for _ in range(_MAX_PNG_CHUNKS):
        header = fp.read(8)
        if len(header) < 8:
            return None
        length, kind = struct.unpack(">I4s", header)
        if kind == wanted:
            return fp.read(length) if length <= _MAX_PNG_EXIF else None
        if kind == b"IEND":
            return None
        fp.seek(length + 4, 1)  # data and CRC
    return None


# -- typed fields --------------------------------------------------------------------------


def _to_exif_data(tags: _Tags) -> ExifData:
    """The typed fields and the JSON-safe ``full`` dictionary from the raw tags."""
    ifd0, exif, gps = tags.ifd0, tags.exif, tags.gps
    latitude, longitude = tags.attempt("GPS position", lambda: _position(gps), _NO_POSITION)
    taken_at, offset = tags.attempt("date", lambda: _taken_at(exif), _NO_TIME)
    return ExifData(
        camera_make=_text(ifd0.get(_T.Make), 100),
        camera_model=_text(ifd0.get(_T.Model), 100),
        lens_model=_text(exif.get(_T.LensModel), 100),
        focal_length=_focal_length(exif.get(_T.FocalLength)),
        aperture=_aperture(exif.get(_T.FNumber), exif.get(_T.ApertureValue)),
        shutter_speed=_shutter_speed(exif.get(_T.ExposureTime), exif.get(_T.ShutterSpeedValue)),
        iso=_iso(exif.get(_T.ISOSpeedRatings), exif.get(_T.ISOSpeed)),
        flash_used=_flash_used(exif.get(_T.Flash)),
        latitude=latitude,
        longitude=longitude,
        altitude=_altitude(gps.get(_G.GPSAltitude), gps.get(_G.GPSAltitudeRef)),
        taken_at=taken_at,
        taken_offset_minutes=offset,
        orientation=_integer(ifd0.get(_T.Orientation), 1, 8),
        full=_full(tags),
    )


def _number(value: Any) -> float | None:
    """A finite float from an int, float or rational (0/0 is ``None``), else ``None``."""
    if isinstance(value, tuple | list) and len(value) == 1:
        value = value[0]
    # IFDRational subclasses numbers.Rational, not float, so it is let through by duck type.
    plain_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not plain_number and not hasattr(value, "denominator"):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _integer(value: Any, low: int, high: int) -> int | None:
    """An integer tag value within ``low..high``, else ``None``."""
    number = _number(value)
    if number is None or number != int(number) or not low <= number <= high:
        return None
    return int(number)


def _text(value: Any, limit: int) -> str | None:
    """A tag's text without NULs or surrounding blanks, cut to ``limit``; ``None`` if empty."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    # Pillow decodes EXIF ASCII as Latin-1; cameras and phones write UTF-8 there too.
    with contextlib.suppress(UnicodeError):
        value = value.encode("latin-1").decode("utf-8")
    value = value.replace("\x00", " ").strip()
    return value[:limit] or None


def _decimal(number: float) -> str:
    """``35`` for 35.0, ``4.2`` for 4.2: one decimal at most, none when it is zero."""
    return f"{round(number, 1):g}"


def _focal_length(value: Any) -> str | None:
    """The FocalLength rational as "35 mm"."""
    length = _number(value)
    return f"{_decimal(length)} mm" if length is not None and 0 < length < 100_000 else None


def _aperture(f_number: Any, apex: Any) -> str | None:
    """FNumber as "f/1.8", or the APEX ApertureValue (f = 2^(Av/2)) when FNumber is absent."""
    number = _number(f_number)
    if number is None and (av := _number(apex)) is not None and -2 < av < 64:
        number = 2 ** (av / 2)
    return f"f/{_decimal(number)}" if number is not None and 0 < number < 1000 else None


def _shutter_speed(exposure: Any, apex: Any) -> str | None:
    """ExposureTime as "1/250 s" or "2 s", or else the APEX ShutterSpeedValue (t = 2^-Tv)."""
    seconds = _number(exposure)
    if seconds is None and (tv := _number(apex)) is not None and -32 < tv < 64:
        seconds = 2.0**-tv
    if seconds is None or not 0 < seconds < 1_000_000:
        return None
    if seconds >= 0.3:  # 1/3 s and longer read better as decimals ("0.5 s", "2 s")
        return f"{_decimal(seconds)} s"
    return f"1/{_decimal(1 / seconds)} s"


def _iso(ratings: Any, iso_speed: Any) -> int | None:
    """The first ISOSpeedRatings value (it may be a list), or ISOSpeed."""
    if isinstance(ratings, tuple | list):
        ratings = ratings[0] if ratings else None
    return _integer(ratings, 1, 10_000_000) or _integer(iso_speed, 1, 10_000_000)


def _flash_used(value: Any) -> bool | None:
    """Bit 0 of the Flash tag: whether the flash fired."""
    flash = _integer(value, 0, 0xFFFF)
    return None if flash is None else bool(flash & 1)


def _coordinate(value: Any, ref: Any, refs: str, limit: float) -> float | None:
    """Signed decimal degrees from degrees/minutes/seconds and a hemisphere letter."""
    parts = list(value) if isinstance(value, tuple | list) else [value]
    numbers = [_number(part) for part in parts[:3]]
    if not numbers or any(n is None or n < 0 for n in numbers):
        return None
    degrees = sum(n / 60**i for i, n in enumerate(n for n in numbers if n is not None))
    hemisphere = _text(ref, 1)
    if hemisphere is not None and hemisphere.upper() not in refs:
        return None
    if hemisphere is not None and hemisphere.upper() == refs[1]:
        degrees = -degrees
    return degrees if -limit <= degrees <= limit else None


def _altitude(value: Any, ref: Any) -> float | None:
    """Metres above sea level; GPSAltitudeRef 1 means below it."""
    altitude = _number(value)
    if altitude is None or not 0 <= altitude <= 100_000:
        return None
    if isinstance(ref, bytes):
        ref = ref[0] if ref else 0
    return -altitude if ref == 1 else altitude


def _position(gps: Mapping[int, Any]) -> tuple[float | None, float | None]:
    """Latitude and longitude, or ``(None, None)`` when absent, unreadable or out of range."""
    latitude = _coordinate(gps.get(_G.GPSLatitude), gps.get(_G.GPSLatitudeRef), "NS", 90)
    longitude = _coordinate(gps.get(_G.GPSLongitude), gps.get(_G.GPSLongitudeRef), "EW", 180)
    # Cameras without a fix often write 0/0 ("Null Island"): nobody photographs there.
    if latitude is None or longitude is None or (latitude == 0 and longitude == 0):
        return None, None
    return latitude, longitude


def _taken_at(exif: Mapping[int, Any]) -> tuple[datetime | None, int | None]:
    """When the photo was taken, and the UTC offset in minutes if the camera recorded it."""
    for time_tag, subsec_tag, offset_tag in _TIME_TAGS:
        local = _exif_datetime(exif.get(time_tag), exif.get(subsec_tag))
        if local is None:
            continue
        offset = _offset_minutes(exif.get(offset_tag) or exif.get(_T.OffsetTime))
        if offset is None:
            return local, None
        aware = local.replace(tzinfo=timezone(timedelta(minutes=offset)))
        try:
            aware.astimezone(UTC)
        except OverflowError:  # 9999-12-31 23:59 at -14:00 is past the last UTC instant
            return local, None
        return aware, offset
    return None, None


def _exif_datetime(value: Any, subsec: Any) -> datetime | None:
    """An EXIF "2024:05:17 14:03:27" (plus sub-seconds "123") as a naive datetime, or None."""
    match = _DATETIME.match(_text(value, 64) or "")
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        moment = datetime(year, month, day, hour, minute, second)
    except ValueError:  # "0000:00:00 00:00:00", month 13 and friends
        return None
    digits = re.match(r"\d+", _text(subsec, 32) or "")
    if digits is not None:
        moment = moment.replace(microsecond=int(digits.group()[:6].ljust(6, "0")))
    return moment if moment.year >= 1800 else None


def _offset_minutes(value: Any) -> int | None:
    """An offset "+02:00" as 120, "-05:30" as -330; anything beyond ±14 hours is ``None``."""
    match = _OFFSET.match(_text(value, 16) or "")
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    total = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or total > 14 * 60:
        return None
    return -total if sign == "-" else total


# -- the JSON-safe dump -------------------------------------------------------------------


def _full(tags: _Tags) -> dict[str, Any]:
    """Every readable tag, JSON-safe, grouped, with sizes capped (see module constants)."""
    full: dict[str, Any] = {}
    budget = _MAX_FULL_CHARS
    groups = (
        ("IFD0", _named(tags.ifd0, ExifTags.TAGS)),
        ("Exif", _named(tags.exif, ExifTags.TAGS)),
        ("GPS", _named(tags.gps, ExifTags.GPSTAGS)),
        ("PNG", ((k, v) for k, v in tags.png_text.items() if not k.startswith("Raw profile"))),
    )
    for group, items in groups:
        for name, raw in items:
            value = _json_value(raw)
            size = len(json.dumps(value)) + len(name) + 6 if value is not None else 0
            if value is None or size > _MAX_VALUE_CHARS:
                continue
            if size > budget:
                tags.errors.append(f"metadata cut at {_MAX_FULL_CHARS} characters")
                break
            budget -= size
            full.setdefault(group, {})[_clip(name, 64)] = value
    if tags.errors:
        full["_errors"] = tags.errors[:20]
    return full


def _named(ifd: Mapping[int, Any], names: Mapping[int, str]) -> Iterable[tuple[str, Any]]:
    """``(tag name, value)`` pairs, without the tags ``full`` never keeps."""
    for tag, value in ifd.items():
        if isinstance(tag, int) and tag not in _DROPPED_TAGS and not isinstance(value, dict):
            yield names.get(tag, f"0x{tag:04X}"), value


def _json_value(value: Any, depth: int = 0) -> Any:
    """``value`` as str/int/float/list, or ``None`` when it has no JSON-safe form."""
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, str):
        return _clip(value.replace("\x00", "").strip(), _MAX_VALUE_CHARS)
    if isinstance(value, bytes):
        return _bytes_value(value)
    if isinstance(value, tuple | list) and depth < 2:
        items = [_json_value(item, depth + 1) for item in value[:_MAX_LIST_ITEMS]]
        return [item for item in items if item is not None]
    number = _number(value)
    if number is not None and hasattr(value, "denominator") and value.denominator == 1:
        return int(number)
    return number


def _bytes_value(value: bytes) -> str | None:
    """Readable text (UserComment's charset prefix removed), short hex, or ``None``."""
    if value[:8] in (b"ASCII\x00\x00\x00", b"UNICODE\x00", b"\x00" * 8):
        charset, value = value[:8], value[8:]
        text = value.decode("utf-16" if charset == b"UNICODE\x00" else "utf-8", "replace")
        return _clip(text.replace("\x00", "").strip(), _MAX_VALUE_CHARS)
    stripped = value.rstrip(b"\x00")
    if stripped.isascii() and all(32 <= byte < 127 for byte in stripped):
        return stripped.decode("ascii").strip()
    return value.hex() if len(value) <= _MAX_HEX_BYTES else None


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
