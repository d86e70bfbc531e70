"""PDF page count, page size and a rendering of the first page, with PDFium.

PDFium is not thread-safe: call :func:`probe_pdf` only inside an imaging worker process
(the pool runs one task at a time per process), never from threads of one process.
Only page 1 is loaded and rendered, so a document's size costs nothing beyond its page
count; forms and JavaScript are never initialised, so no script in the file runs.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

# pypdfium2 ships no type information.
import pypdfium2 as pdfium  # type: ignore[import-untyped, unused-ignore]
import pypdfium2.raw as pdfium_c  # type: ignore[import-untyped, unused-ignore]
from PIL import Image

from media_service.imaging.errors import ImageTooLarge
from media_service.imaging.video import CorruptMedia

_LOAD_ERRORS = {
    pdfium_c.FPDF_ERR_FILE: "the file cannot be read",
    pdfium_c.FPDF_ERR_FORMAT: "the file is not a PDF or is damaged",
    pdfium_c.FPDF_ERR_PASSWORD: "the PDF is password-protected",
    pdfium_c.FPDF_ERR_SECURITY: "the PDF uses an unsupported encryption scheme",
}


@dataclass(frozen=True)
class DocumentLimits:
    """What a PDF may be. 14,400 pt (200 in) is the largest page the PDF format allows."""

    max_pages: int = 5000
    max_page_side_pt: float = 14_400.0


@dataclass(frozen=True)
class DocumentInfo:
    """A PDF's page count, its first page's size in points (as displayed) and its rendering."""

    page_count: int
    width_pt: float
    height_pt: float
    first_page: bytes
    first_page_format: str


def probe_pdf(
    path: str, limits: DocumentLimits = DocumentLimits(), *, render_side: int = 1600
) -> DocumentInfo:
    """Count the pages of the PDF at ``path`` and render page 1 as PNG.

    The rendering fits in ``render_side`` × ``render_side`` pixels, on white. Raises
    :class:`CorruptMedia` for an empty, damaged or password-protected file and
    :class:`ImageTooLarge` for more than ``limits.max_pages`` pages or a first page whose
    side is over ``limits.max_page_side_pt``. Synchronous CPU work: run it in the pool.
    """
    if render_side < 1:
        raise ValueError(f"render_side must be positive, not {render_side}")
    document = _open(path)
    try:
        page_count = _page_count(document, limits)
        page = _first_page(document)
        try:
            width, height = _page_size(page, limits)
            image = _render(page, _scale(width, height, render_side))
        finally:
            page.close()
    finally:
        document.close()
    return DocumentInfo(page_count, width, height, _encode_png(image), "png")


def _open(path: str) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        reason = _LOAD_ERRORS.get(getattr(exc, "err_code", None), "the PDF cannot be opened")
        raise CorruptMedia(reason) from exc


def _page_count(document: pdfium.PdfDocument, limits: DocumentLimits) -> int:
    count = len(document)
    if count < 1:
        raise CorruptMedia("the PDF has no pages")
    if count > limits.max_pages:
        raise ImageTooLarge(f"the PDF has {count} pages, over the limit of {limits.max_pages}")
    return count


def _first_page(document: pdfium.PdfDocument) -> pdfium.PdfPage:
    try:
        return document[0]
    except pdfium.PdfiumError as exc:
        raise CorruptMedia("the first page of the PDF cannot be loaded") from exc


def _page_size(page: pdfium.PdfPage, limits: DocumentLimits) -> tuple[float, float]:
    """Width and height in points, after the page's own rotation."""
    width, height = page.get_size()
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        raise CorruptMedia(f"the first page has an impossible size ({width} x {height} pt)")
    if max(width, height) > limits.max_page_side_pt:
        raise ImageTooLarge(
            f"the first page is {width:.0f} x {height:.0f} pt, over the limit of "
            f"{limits.max_page_side_pt:.0f} pt per side"
        )
    return width, height


def _scale(width: float, height: float, render_side: int) -> float:
    # PDFium's bitmap size is ceil(side × scale): shave off a hair so that rounding error
    # can never make the longest side render_side + 1.
    return render_side * (1 - 1e-9) / max(width, height)


def _render(page: pdfium.PdfPage, scale: float) -> Image.Image:
    try:
        bitmap = page.render(scale=scale)
    except pdfium.PdfiumError as exc:
        raise CorruptMedia("the first page of the PDF cannot be rendered") from exc
    try:
        image: Image.Image = bitmap.to_pil()
        # to_pil shares the bitmap's buffer, which close() frees: keep a copy.
        return image.convert("RGB")
    finally:
        bitmap.close()


def _encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
