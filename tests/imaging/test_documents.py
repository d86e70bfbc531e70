"""probe_pdf on PDFs built here: by Pillow, by PDFium itself, and by hand (encrypted)."""

from __future__ import annotations

import hashlib
import io
import pickle
import time
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image

from media_service.imaging.documents import DocumentInfo, DocumentLimits, probe_pdf
from media_service.imaging.errors import ImageTooLarge
from media_service.imaging.pool import ImagingPool
from media_service.imaging.video import CorruptMedia

RED = (200, 30, 40)
BLUE = (30, 50, 210)


def image_pdf(path: Path, pages: int, size: tuple[int, int] = (200, 100)) -> Path:
    """A PDF whose first page is solid red and the others blue; 1 px = 1 pt at 72 dpi."""
    first = Image.new("RGB", size, RED)
    rest = [Image.new("RGB", (20, 20), BLUE) for _ in range(pages - 1)]
    first.save(path, save_all=True, append_images=rest, resolution=72.0)
    return path


def blank_pdf(path: Path, width: float, height: float, *, rotation: int = 0) -> Path:
    document = pdfium.PdfDocument.new()
    page = document.new_page(width, height)
    page.set_rotation(rotation)
    document.save(str(path))
    return path


def rendering(info: DocumentInfo) -> Image.Image:
    image = Image.open(io.BytesIO(info.first_page))
    assert image.format == info.first_page_format.upper() == "PNG"
    return image


def test_first_page_rendered_to_fit_the_side(tmp_path: Path) -> None:
    info = probe_pdf(str(image_pdf(tmp_path / "a.pdf", pages=3)))

    assert info.page_count == 3
    assert (info.width_pt, info.height_pt) == pytest.approx((200.0, 100.0))
    image = rendering(info)
    assert image.size == (1600, 800)
    mean = np.asarray(image.convert("RGB")).reshape(-1, 3).mean(axis=0)
    assert np.abs(mean - np.array(RED)).max() < 3


@pytest.mark.parametrize("side", [1600, 512, 37])
def test_a4_page_longest_side_is_render_side(tmp_path: Path, side: int) -> None:
    info = probe_pdf(str(blank_pdf(tmp_path / "a4.pdf", 595.28, 841.89)), render_side=side)

    image = rendering(info)
    assert image.height == side
    assert abs(image.width - side * 595.28 / 841.89) < 1
    # A blank page renders white, not transparent or black.
    assert np.asarray(image.convert("RGB")).min() == 255


def test_page_rotation_is_applied(tmp_path: Path) -> None:
    info = probe_pdf(str(blank_pdf(tmp_path / "r.pdf", 300, 100, rotation=90)), render_side=300)

    assert (info.width_pt, info.height_pt) == pytest.approx((100.0, 300.0))
    assert rendering(info).size == (100, 300)


def test_a_thousand_pages_is_quick(tmp_path: Path) -> None:
    path = image_pdf(tmp_path / "long.pdf", pages=1000)

    started = time.monotonic()
    info = probe_pdf(str(path))

    assert time.monotonic() - started < 1.5
    assert info.page_count == 1000
    assert rendering(info).size == (1600, 800)


def test_too_many_pages_refused(tmp_path: Path) -> None:
    path = image_pdf(tmp_path / "a.pdf", pages=21)

    with pytest.raises(ImageTooLarge, match="21 pages"):
        probe_pdf(str(path), DocumentLimits(max_pages=20))
    assert probe_pdf(str(path), DocumentLimits(max_pages=21)).page_count == 21


def test_absurd_page_size_refused_before_rendering(tmp_path: Path) -> None:
    path = blank_pdf(tmp_path / "huge.pdf", 14_401, 100)

    with pytest.raises(ImageTooLarge, match="14401"):
        probe_pdf(str(path))


@pytest.mark.parametrize(
    "content",
    [b"", b"%PDF-1.4\ngarbage\n%%EOF\n", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64],
    ids=["empty", "garbage", "png"],
)
def test_unreadable_files_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pdf"
    path.write_bytes(content)

    with pytest.raises(CorruptMedia, match="not a PDF or is damaged") as caught:
        probe_pdf(str(path))
    assert caught.value.code == "corrupt_media"


@pytest.mark.parametrize("keep", [0.1, 0.3, 0.6, 0.95])
def test_truncated_pdf_gives_a_result_or_corrupt_media(tmp_path: Path, keep: float) -> None:
    # PDFium rebuilds a lost cross-reference table, so a cut file may still show page 1;
    # it must never fail in any other way.
    data = image_pdf(tmp_path / "a.pdf", pages=5).read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(data[: int(len(data) * keep)])

    try:
        info = probe_pdf(str(path))
    except CorruptMedia:
        return
    assert 1 <= info.page_count <= 5
    assert max(rendering(info).size) <= 1600


def test_password_protected_pdf_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.pdf"
    path.write_bytes(encrypted_pdf(user_password=b"secret"))
    # The file itself is sound: with the password PDFium opens it.
    assert len(pdfium.PdfDocument(str(path), password="secret")) == 1

    with pytest.raises(CorruptMedia, match="password-protected"):
        probe_pdf(str(path))


def test_owner_password_only_pdf_is_rendered(tmp_path: Path) -> None:
    # Encrypted with an empty user password: any reader opens it, and so do we.
    path = tmp_path / "restricted.pdf"
    path.write_bytes(encrypted_pdf(user_password=b""))

    info = probe_pdf(str(path))

    assert (info.page_count, info.width_pt, info.height_pt) == (1, 144.0, 72.0)


def test_result_pickles(tmp_path: Path) -> None:
    info = probe_pdf(str(image_pdf(tmp_path / "a.pdf", pages=1)), render_side=64)

    assert _through_pickle(info) == info
    assert _through_pickle(DocumentLimits(max_pages=3)) == DocumentLimits(max_pages=3)


def test_render_side_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="render_side"):
        probe_pdf(str(image_pdf(tmp_path / "a.pdf", pages=1)), render_side=0)


async def test_runs_in_the_process_pool(pool: ImagingPool, tmp_path: Path) -> None:
    path = image_pdf(tmp_path / "a.pdf", pages=2)
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")

    info = await pool.run(probe_pdf, str(path), DocumentLimits())

    assert info.page_count == 2
    with pytest.raises(CorruptMedia):
        await pool.run(probe_pdf, str(empty))


# --- a PDF encrypted with the standard security handler, revision 2 (RC4, 40 bits) ---------

_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")
_PERMISSIONS = -4
_FILE_ID = bytes(range(16))


def _rc4(key: bytes, data: bytes) -> bytes:
    box = list(range(256))
    j = 0
    for i in range(256):
        j = (j + box[i] + key[i % len(key)]) % 256
        box[i], box[j] = box[j], box[i]
    out, i, j = bytearray(), 0, 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + box[i]) % 256
        box[i], box[j] = box[j], box[i]
        out.append(byte ^ box[(box[i] + box[j]) % 256])
    return bytes(out)


def _padded(password: bytes) -> bytes:
    return (password + _PAD)[:32]


def _security_entries(user_password: bytes) -> tuple[bytes, bytes]:
    """The /O and /U strings (PDF 1.7 algorithms 3.2–3.4); owner password "owner"."""
    owner = _rc4(hashlib.md5(_padded(b"owner")).digest()[:5], _padded(user_password))  # noqa: S324
    seed = _padded(user_password) + owner + _PERMISSIONS.to_bytes(4, "little", signed=True)
    key = hashlib.md5(seed + _FILE_ID).digest()[:5]  # noqa: S324
    return owner, _rc4(key, _PAD)


def encrypted_pdf(*, user_password: bytes) -> bytes:
    """A one-page (144 × 72 pt) PDF with an empty page, encrypted for ``user_password``."""
    owner, user = _security_entries(user_password)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 144 72] >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P %d >>"
        % (owner.hex().encode(), user.hex().encode(), _PERMISSIONS),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Encrypt 4 0 R /ID [<%s> <%s>] >>\n" % (
        len(objects) + 1,
        _FILE_ID.hex().encode(),
        _FILE_ID.hex().encode(),
    )
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def _through_pickle(value: object) -> object:
    # Our own objects, as the process pool sends them: pickle is the point here.
    return pickle.loads(pickle.dumps(value))  # noqa: S301
