"""Format detection from content: allowed formats in, everything else out."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from media_service.media.models import FileType
from media_service.media.sniff import FORMATS, SNIFF_BYTES, sniff


def pillow_bytes(fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (1, 2, 3)).save(buffer, fmt, **options)
    return buffer.getvalue()


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + b"\0\0\0\x08free"


def ebml(doctype: bytes) -> bytes:
    element = b"\x42\x86\x81\x01" + b"\x42\xf7\x81\x01" + b"\x42\x82"
    element += bytes([0x80 | len(doctype)]) + doctype
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(element)]) + element + b"\x18\x53\x80\x67"


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "hello")
    return buffer.getvalue()


ALLOWED = {
    "jpeg": pillow_bytes("JPEG"),
    "png": pillow_bytes("PNG"),
    "gif": pillow_bytes("GIF"),
    "webp": pillow_bytes("WEBP"),
    "tiff": pillow_bytes("TIFF"),
    "tiff-big-endian": b"MM\x00*\x00\x00\x00\x08",
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
    "mp4": ftyp(b"isom", b"isom", b"iso2", b"avc1", b"mp41"),
    "mp4-unknown-major": ftyp(b"XYZ1", b"mp42"),
    "mov": ftyp(b"qt  ", b"qt  "),
    "heic": ftyp(b"heic", b"mif1", b"heic"),
    "heif": ftyp(b"mif1", b"mif1"),
    "heic-by-compatible": ftyp(b"XYZ1", b"heic"),
    "avif": ftyp(b"avif", b"mif1", b"avif"),
    "webm": ebml(b"webm"),
}


@pytest.mark.parametrize("case", list(ALLOWED))
def test_allowed_formats_are_recognised(case: str) -> None:
    name = case.split("-")[0]
    detected = sniff(ALLOWED[case])
    assert detected is FORMATS[name]


REFUSED = {
    "empty": b"",
    "html": b"<!DOCTYPE html><html><body>hi</body></html>",
    "html-bom": b"\xef\xbb\xbf<html><script>alert(1)</script>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "xml": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x/>',
    "zip": zip_bytes(),
    "matroska": ebml(b"matroska"),
    "ebml-without-doctype": b"\x1a\x45\xdf\xa3\x84\x42\x86\x81\x01" + b"\0" * 64,
    "bmp": pillow_bytes("BMP"),
    "ico": pillow_bytes("ICO"),
    "elf": b"\x7fELF\x02\x01\x01" + b"\0" * 64,
    "shell": b"#!/bin/sh\nrm -rf /\n",
    "php": b"<?php system($_GET['c']); ?>",
    "riff-wave": b"RIFF\x24\x00\x00\x00WAVEfmt ",
    "riff-avi": b"RIFF\x24\x00\x00\x00AVI LIST",
    "m4a-audio": ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"),
    "ftyp-unknown-brands": ftyp(b"abcd", b"efgh"),
    "ftyp-truncated": b"\0\0\0\x18ftyp",
    "jpeg-prefix-too-short": b"\xff\xd8",
    "png-prefix-too-short": b"\x89PNG\r\n",
    "gzip": b"\x1f\x8b\x08\x00" + b"\0" * 20,
    "pdf-later-in-file": b"garbage first\n%PDF-1.7\n",
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_other_content_is_refused(case: str) -> None:
    assert sniff(REFUSED[case]) is None


@given(st.binary(max_size=SNIFF_BYTES + 64))
def test_any_bytes_give_an_allowed_format_or_none(data: bytes) -> None:
    detected = sniff(data)
    assert detected is None or detected in FORMATS.values()
    assert sniff(data[:SNIFF_BYTES]) == detected or len(data) <= SNIFF_BYTES


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_text_starting_with_markup_is_never_a_media_format(text: str) -> None:
    for prefix in ("<", " <", "\ufeff<", "<?xml", "<svg", "<html"):
        assert sniff((prefix + text).encode()) is None


def test_every_format_belongs_to_its_family() -> None:
    for fmt in FORMATS.values():
        assert fmt.extension.startswith(".")
        family = fmt.content_type.split("/")[0]
        expected = {"image": FileType.IMAGE, "video": FileType.VIDEO}.get(family)
        assert fmt.file_type is (expected or FileType.DOCUMENT)
