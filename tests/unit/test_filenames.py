"""Client file names: display-safe, bounded, stable, and safe inside a header."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from media_service.media.filenames import (
    FALLBACK_NAME,
    content_disposition,
    sanitize_file_name,
)

# Names built from the characters that cause trouble, plus anything at all.
NASTY = st.sampled_from(
    [
        *"/\\.\"'<>:|?*%; \t\r\n\x00\x1b\x7f",
        *["\u202e", "\u200b", "\u200d", "\ufeff", "\u2028", "\u00a0", "\u0301", "\ud800"],
        *["e\u0301", "..", "../", "%2e", "\u1100\u1161", "q\u0307\u0323"],
    ]
)
NAMES = st.one_of(
    st.text(),
    st.lists(st.one_of(NASTY, st.text(max_size=3)), max_size=40).map("".join),
)
MAX_LENGTHS = st.integers(min_value=1, max_value=300)


def is_unsafe(ch: str) -> bool:
    return ch in '/\\"<>:|?*' or unicodedata.category(ch).startswith("C")


@settings(max_examples=400)
@given(raw=NAMES, max_length=MAX_LENGTHS)
@example(raw="a" * 15 + " bbbb", max_length=16)  # cut right after a space
@example(raw="x." + "e" * 16, max_length=16)  # an extension that fills the limit
@example(raw="e\x00\u0301.jpg", max_length=255)  # removing NUL joins e and its accent
@example(raw="a" * 300 + ".\u0301", max_length=255)
def test_sanitised_names_are_safe_bounded_and_stable(raw: str, max_length: int) -> None:
    name = sanitize_file_name(raw, max_length=max_length)
    assert name
    assert len(name) <= max_length
    assert not any(is_unsafe(ch) for ch in name), ascii(name)
    assert name == name.strip()
    assert not name.startswith(".")
    assert unicodedata.is_normalized("NFC", name)
    assert sanitize_file_name(name, max_length=max_length) == name, ascii(name)


@given(raw=NAMES)
def test_content_disposition_is_a_single_safe_ascii_header(raw: str) -> None:
    name = sanitize_file_name(raw)
    for inline in (True, False):
        value = content_disposition(name, inline=inline)
        assert value.isascii() and value.isprintable()
        match = re.fullmatch(
            r'(inline|attachment); filename="([^"\\]+)"; filename\*=UTF-8\'\'([A-Za-z0-9%._~-]+)',
            value,
        )
        assert match, value
        assert match.group(1) == ("inline" if inline else "attachment")
        assert unquote(match.group(3)) == name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, FALLBACK_NAME),
        ("", FALLBACK_NAME),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\Desktop\\photo.jpg", "photo.jpg"),
        ("a.php\x00.jpg", "a.php.jpg"),
        ("photo.jpg.php", "photo.jpg.php"),
        ("%2e%2e%2fpasswd", "%2e%2e%2fpasswd"),
        ('x"\r\ny.jpg', "x_y.jpg"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),
        ("Cafe\u0301.jpg", "Caf\u00e9.jpg"),
        ("  ..hidden", "hidden"),
        ("...", FALLBACK_NAME),
        ("a   b\t\tc.jpg", "a bc.jpg"),  # control characters go, spaces collapse
        ("\u200b\u200d", FALLBACK_NAME),
    ],
)
def test_known_names(raw: str | None, expected: str) -> None:
    assert sanitize_file_name(raw) == expected


def test_long_names_keep_their_extension() -> None:
    name = sanitize_file_name("a" * 10_000 + ".jpeg", max_length=255)
    assert name == "a" * 250 + ".jpeg"
    no_ext = sanitize_file_name("b" * 10_000, max_length=255)
    assert no_ext == "b" * 255
    long_ext = sanitize_file_name("c" * 300 + "." + "d" * 40, max_length=100)
    assert len(long_ext) == 100 and long_ext.startswith("c")


def test_disposition_has_an_ascii_fallback_for_non_ascii_names() -> None:
    value = content_disposition("Fête – été.jpg", inline=False)
    assert value.startswith('attachment; filename="Fete  ete.jpg"; ')
    assert value.endswith("filename*=UTF-8''F%C3%AAte%20%E2%80%93%20%C3%A9t%C3%A9.jpg")
    assert content_disposition("写真.jpg", inline=True).startswith('inline; filename=".jpg"')
    assert 'filename="file"' in content_disposition("写真", inline=True)
