"""Detect a file's format from its first bytes, never from its name or Content-Type.

Only allow-listed formats are recognised; anything else (HTML, SVG, scripts, archives,
unknown containers) is ``None`` and the upload is refused with 415.
"""

from __future__ import annotations

from dataclasses import dataclass

from media_service.media.models import FileType

SNIFF_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Format:
    """An allowed format: its name, the Content-Type we serve it with, and its family."""

    name: str
    content_type: str
    file_type: FileType
    extension: str


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("jpeg", "image/jpeg", FileType.IMAGE, ".jpg"),
        Format("png", "image/png", FileType.IMAGE, ".png"),
        Format("webp", "image/webp", FileType.IMAGE, ".webp"),
        Format("gif", "image/gif", FileType.IMAGE, ".gif"),
        Format("heic", "image/heic", FileType.IMAGE, ".heic"),
        Format("heif", "image/heif", FileType.IMAGE, ".heif"),
        Format("avif", "image/avif", FileType.IMAGE, ".avif"),
        Format("tiff", "image/tiff", FileType.IMAGE, ".tiff"),
        Format("mp4", "video/mp4", FileType.VIDEO, ".mp4"),
        Format("mov", "video/quicktime", FileType.VIDEO, ".mov"),
        Format("webm", "video/webm", FileType.VIDEO, ".webm"),
        Format("pdf", "application/pdf", FileType.DOCUMENT, ".pdf"),
    )
}

_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"}
_HEIF_BRANDS = {b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_MP4_BRANDS = {
    b"isom",
    b"iso2",
    b"iso4",
    b"iso5",
    b"iso6",
    b"mp41",
    b"mp42",
    b"avc1",
    b"dash",
    b"M4V ",
    b"f4v ",
    b"mmp4",
    b"MSNV",
    b"3gp4",
    b"3gp5",
    b"3g2a",
}
_MOV_BRANDS = {b"qt  "}
# MP4 audio (AAC, audiobooks, protected audio) lists "isom"/"mp42" as compatible brands
# too; it has no pictures, so it is not a video.
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}


def sniff(head: bytes) -> Format | None:
    """The allowed format that ``head`` (the file's first bytes) starts, or ``None``."""
    if head.startswith(b"\xff\xd8\xff"):
        return FORMATS["jpeg"]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return FORMATS["png"]
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return FORMATS["gif"]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return FORMATS["webp"]
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return FORMATS["tiff"]
    if head.startswith(b"%PDF-"):
        return FORMATS["pdf"]
    if head[4:8] == b"ftyp":
        return _sniff_iso_bmff(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _sniff_ebml(head)
    return None


def _sniff_iso_bmff(head: bytes) -> Format | None:
    """HEIC/HEIF/AVIF images and MP4/MOV videos share the ISO base media ``ftyp`` box."""
    box_size = int.from_bytes(head[0:4], "big")
    if box_size < 16 or box_size > len(head):
        box_size = min(len(head), 256)
    major = head[8:12]
    if major in _AUDIO_BRANDS:
        return None
    compatible = {head[i : i + 4] for i in range(16, box_size - 3, 4)}
    brands = [major, *sorted(compatible)]
    for brand_set, name in (
        (_AVIF_BRANDS, "avif"),
        (_HEIC_BRANDS, "heic"),
        (_HEIF_BRANDS, "heif"),
    ):
        if major in brand_set:
            return FORMATS[name]
    if major in _MOV_BRANDS:
        return FORMATS["mov"]
    if major in _MP4_BRANDS:
        return FORMATS["mp4"]
    for brand in brands:  # unknown major brand: decide by the compatible ones
        if brand in _AVIF_BRANDS:
            return FORMATS["avif"]
        if brand in _HEIC_BRANDS:
            return FORMATS["heic"]
    if any(brand in _MP4_BRANDS for brand in brands):
        return FORMATS["mp4"]
    return None


def _sniff_ebml(head: bytes) -> Format | None:
    """Matroska and WebM share EBML; only the ``webm`` DocType is allowed."""
    doctype = head.find(b"\x42\x82", 4, 64)
    if doctype < 0:
        return None
    length_byte = head[doctype + 2] if len(head) > doctype + 2 else 0
    length = length_byte & 0x7F if length_byte & 0x80 else 0
    value = head[doctype + 3 : doctype + 3 + length]
    return FORMATS["webm"] if value == b"webm" else None
