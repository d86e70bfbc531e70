"""Text in images, read by the Tesseract command-line program when the system has it.

Tesseract is a system package (``tesseract-ocr`` on Debian), not a Python one: it is run
as a subprocess, with a timeout, on a greyscale PNG that this service wrote from pixels it
decoded itself, so Tesseract's own image readers never see an uploaded file. Without the
program, :func:`read_text` returns ``None`` and the rest of the analysis carries on.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import pyvips  # type: ignore[import-untyped, unused-ignore]

from media_service.imaging.errors import ImagingError

DEFAULT_TIMEOUT = 60.0
_LANGUAGES = re.compile(r"[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*")  # "eng", "eng+deu", "chi_sim"
_VERSION = re.compile(r"tesseract\s+v?(\S+)", re.IGNORECASE)
_TSV_COLUMNS = 12
_WORD_LEVEL = "5"


class OcrFailed(ImagingError):
    """Tesseract was found but failed, or ran past its timeout."""

    code: ClassVar[str] = "ocr_failed"


@dataclass(frozen=True)
class OcrResult:
    """Text found in an image.

    ``text`` has one line per line of text and a blank line between paragraphs. ``boxes``
    has one dict per word: ``word``, ``x``, ``y``, ``w``, ``h`` (pixels of the image read)
    and ``confidence`` (0..1, Tesseract's 0..100 divided by 100). ``language`` is the
    Tesseract language setting used ("eng", "eng+deu").
    """

    text: str
    boxes: list[dict[str, Any]]
    language: str

    def scaled(self, x_scale: float, y_scale: float) -> OcrResult:
        """The same result with boxes in another image's pixels (e.g. the full-size one)."""
        boxes = [
            {
                **box,
                "x": round(box["x"] * x_scale),
                "y": round(box["y"] * y_scale),
                "w": round(box["w"] * x_scale),
                "h": round(box["h"] * y_scale),
            }
            for box in self.boxes
        ]
        return replace(self, boxes=boxes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"text": self.text, "boxes": self.boxes, "language": self.language}


def tesseract_available() -> str | None:
    """Tesseract's version ("5.3.0") when the program is installed, else ``None`` (cached)."""
    found = _tesseract()
    return found[1] if found else None


def read_text(
    image: pyvips.Image | str, *, languages: str = "eng", timeout: float = DEFAULT_TIMEOUT
) -> OcrResult | None:
    """Read the text of ``image``: a decoded pyvips image, or the path of an image file
    written by this service (a path is handed to Tesseract as it is: never an upload).

    Returns ``None`` when Tesseract is not installed. Raises ``ValueError`` for a malformed
    ``languages`` and :class:`OcrFailed` when Tesseract fails or exceeds ``timeout`` s.
    """
    if not _LANGUAGES.fullmatch(languages):
        raise ValueError(f"not a Tesseract language setting: {languages!r}")
    found = _tesseract()
    if found is None:
        return None
    if isinstance(image, str):
        return parse_tsv(_run(found[0], Path(image).absolute(), languages, timeout), languages)
    with tempfile.TemporaryDirectory(prefix="ocr-") as folder:
        png = Path(folder) / "page.png"
        _grey(image).pngsave(str(png), compression=1)
        return parse_tsv(_run(found[0], png, languages, timeout), languages)


def parse_tsv(tsv: str, language: str) -> OcrResult:
    """Words, boxes and text from Tesseract's ``tsv`` output (malformed rows are skipped)."""
    boxes: list[dict[str, Any]] = []
    lines: list[tuple[tuple[str, ...], list[str]]] = []
    for row in tsv.splitlines()[1:]:  # the first line is the header
        fields = row.split("\t", _TSV_COLUMNS - 1)
        word = _word(fields)
        if word is None:
            continue
        boxes.append(word)
        line_key = tuple(fields[1:5])  # page, block, paragraph, line
        if not lines or lines[-1][0] != line_key:
            lines.append((line_key, []))
        lines[-1][1].append(word["word"])
    return OcrResult(text=_join(lines), boxes=boxes, language=language)


def _word(fields: list[str]) -> dict[str, Any] | None:
    if len(fields) != _TSV_COLUMNS or fields[0] != _WORD_LEVEL or not fields[11].strip():
        return None
    try:
        x, y, w, h = (int(value) for value in fields[6:10])
        confidence = float(fields[10])
    except ValueError:
        return None
    if confidence < 0:  # -1 marks a block, not a recognised word
        return None
    return {
        "word": fields[11].strip(),
        "x": x,
        "y": y,
        "w": w,
        "h": h,
        "confidence": round(min(confidence, 100.0) / 100, 2),
    }


def _join(lines: list[tuple[tuple[str, ...], list[str]]]) -> str:
    """Lines joined by newlines, with a blank line where the paragraph changes."""
    parts: list[str] = []
    for index, (key, words) in enumerate(lines):
        if index:
            parts.append("\n\n" if key[:3] != lines[index - 1][0][:3] else "\n")
        parts.append(" ".join(words))
    return "".join(parts)


@functools.cache
def _tesseract() -> tuple[str, str] | None:
    """(executable, version) of the installed Tesseract, looked up once per process."""
    executable = shutil.which("tesseract")
    if executable is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
            [executable, "--version"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    # Tesseract 4+ prints its version on stdout, 3.x on stderr.
    match = _VERSION.search(done.stdout + done.stderr)
    return (executable, match.group(1)) if match else None


def _run(executable: str, png: Path, languages: str, timeout: float) -> str:
    command = [executable, str(png), "-", "-l", languages, "--psm", "3", "tsv"]
    # One OpenMP thread: each imaging worker already has a core of its own.
    environment = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
            command, capture_output=True, text=True, timeout=timeout, env=environment
        )
    except subprocess.TimeoutExpired as exc:
        raise OcrFailed(f"tesseract took longer than {timeout} s") from exc
    except OSError as exc:
        raise OcrFailed(f"tesseract could not be run: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise OcrFailed(f"tesseract failed ({done.returncode}): {last[:200]}")
    return done.stdout


def _grey(image: pyvips.Image) -> pyvips.Image:
    if image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    return image.colourspace("b-w") if image.bands > 1 else image
