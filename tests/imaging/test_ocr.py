"""OCR through the Tesseract program.

Tesseract is a system package that this machine does not have, so most tests check the
behaviour without it. The subprocess plumbing (PNG handed over, arguments, timeout, exit
status, box scaling) is exercised with a stand-in ``tesseract`` executable written by the
test, which answers as Tesseract 5 does; the TSV parser is checked on a sample in that layout.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import pyvips
from PIL import Image, ImageDraw
from structlog.testing import capture_logs

from media_service.imaging import ocr
from media_service.imaging.analysis import analyse_pixels
from media_service.imaging.limits import DecodeLimits
from media_service.imaging.ocr import OcrFailed, OcrResult, parse_tsv, read_text
from media_service.imaging.ocr import tesseract_available as tesseract_version

LIMITS = DecodeLimits()

# Written in the layout of `tesseract page.png - --psm 3 tsv` (Tesseract 5): levels 1-5 are
# page, block, paragraph, line, word; conf is -1 on non-words. Two rows are
# damaged on purpose at the end.
HEADER = "level page_num block_num par_num line_num word_num left top width height conf text"
TSV = "\n".join(
    [HEADER.replace(" ", "\t")]
    + [
        "\t".join(row)
        for row in [
            ["1", "1", "0", "0", "0", "0", "0", "0", "1600", "1000", "-1", ""],
            ["2", "1", "1", "0", "0", "0", "96", "48", "820", "130", "-1", ""],
            ["3", "1", "1", "1", "0", "0", "96", "48", "820", "130", "-1", ""],
            ["4", "1", "1", "1", "1", "0", "96", "48", "820", "52", "-1", ""],
            ["5", "1", "1", "1", "1", "1", "96", "48", "310", "52", "96.412842", "Invoice"],
            ["5", "1", "1", "1", "1", "2", "430", "50", "180", "50", "95.1", "No."],
            ["5", "1", "1", "1", "1", "3", "640", "48", "276", "52", "91.0", "2024-117"],
            ["4", "1", "1", "1", "2", "0", "96", "126", "600", "52", "-1", ""],
            ["5", "1", "1", "1", "2", "1", "96", "126", "200", "52", "88.5", "Total:"],
            ["5", "1", "1", "1", "2", "2", "320", "126", "150", "52", "90", "42.00"],
            ["5", "1", "1", "1", "2", "3", "490", "126", "120", "52", "87.25", "EUR"],
            ["5", "1", "1", "1", "2", "4", "620", "126", "10", "52", "12", " "],
            ["2", "1", "2", "0", "0", "0", "96", "400", "400", "60", "-1", ""],
            ["5", "1", "2", "1", "1", "1", "96", "400", "180", "60", "93", "Thank"],
            ["5", "1", "2", "1", "1", "2", "300", "400", "120", "60", "92.5", "you"],
            ["5", "1", "2", "1", "1", "3", "x", "400", "120", "60", "92.5", "broken"],
            ["5", "1", "2", "1", "1"],
        ]
    ]
)

FAKE_TESSERACT = """#!{python}
import json, os, sys, time
from PIL import Image

arguments = sys.argv[1:]
if arguments == ["--version"]:
    print("tesseract 5.3.0\\n leptonica-1.82.0\\n  libjpeg 6b")
    sys.exit(0)
behaviour = os.environ.get("FAKE_TESSERACT", "read")
if behaviour == "fail":
    print("Failed loading language 'xyz'", file=sys.stderr)
    sys.exit(1)
if behaviour == "hang":
    time.sleep(60)
with Image.open(arguments[0]) as page:
    seen = {{"arguments": arguments, "size": page.size, "mode": page.mode,
             "threads": os.environ.get("OMP_THREAD_LIMIT")}}
with open(os.environ["FAKE_TESSERACT_LOG"], "w") as log:
    json.dump(seen, log)
sys.stdout.write(open(os.environ["FAKE_TESSERACT_TSV"]).read())
"""


@pytest.fixture
def fresh_lookup() -> Iterator[None]:
    """Tesseract is looked up once per process: forget it around each test."""
    ocr._tesseract.cache_clear()
    yield
    ocr._tesseract.cache_clear()


@pytest.fixture
def fake_tesseract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_lookup: None) -> Path:
    """A stand-in ``tesseract`` first on PATH; returns where it logs what it was given."""
    folder = tmp_path / "bin"
    folder.mkdir()
    program = folder / "tesseract"
    program.write_text(FAKE_TESSERACT.format(python=sys.executable))
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "sample.tsv").write_text(TSV + "\n")
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TESSERACT_TSV", str(tmp_path / "sample.tsv"))
    monkeypatch.setenv("FAKE_TESSERACT_LOG", str(tmp_path / "log.json"))
    return tmp_path / "log.json"


def page(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).text((width // 10, height // 10), "Invoice No. 2024-117", fill="black")
    return image


# Without Tesseract (this machine)


def test_without_tesseract_nothing_is_read(fresh_lookup: None, tmp_path: Path) -> None:
    installed = shutil.which("tesseract")
    version = tesseract_version()
    if installed is None:
        assert version is None
        page(400, 200).save(tmp_path / "page.png")
        assert read_text(str(tmp_path / "page.png")) is None
    else:  # a machine with Tesseract reports its version instead
        assert version is not None and version[0].isdigit()


def test_analysis_works_without_tesseract(
    fresh_lookup: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing called tesseract in there
    page(800, 400).save(tmp_path / "page.png")
    result = analyse_pixels(str(tmp_path / "page.png"), LIMITS)
    assert result.text is None
    assert (result.width, result.height) == (800, 400)
    assert len(result.perceptual_hash) == 16


# The TSV parser


def test_parse_tsv_gives_words_boxes_and_text() -> None:
    result = parse_tsv(TSV, "eng")
    assert result.text == "Invoice No. 2024-117\nTotal: 42.00 EUR\n\nThank you"
    assert result.language == "eng"
    assert [box["word"] for box in result.boxes] == [
        "Invoice", "No.", "2024-117", "Total:", "42.00", "EUR", "Thank", "you",
    ]  # fmt: skip
    assert result.boxes[0] == {
        "word": "Invoice", "x": 96, "y": 48, "w": 310, "h": 52, "confidence": 0.96,
    }  # fmt: skip
    assert all(0 <= box["confidence"] <= 1 for box in result.boxes)


def test_parse_tsv_of_a_page_without_text() -> None:
    empty = parse_tsv(TSV.splitlines()[0] + "\n", "deu")
    assert empty == OcrResult(text="", boxes=[], language="deu")
    assert parse_tsv("", "eng").text == ""


def test_result_scales_to_full_size_and_serialises() -> None:
    result = parse_tsv(TSV, "eng").scaled(2.0, 2.5)
    assert {key: result.boxes[0][key] for key in ("x", "y", "w", "h")} == {
        "x": 192, "y": 120, "w": 620, "h": 130,
    }  # fmt: skip
    assert json.loads(json.dumps(result.to_dict()))["text"].startswith("Invoice")


@pytest.mark.parametrize("languages", ["", "eng deu", "--psm", "eng+", "../eng", "eng;rm"])
def test_malformed_language_settings_are_refused(languages: str) -> None:
    with pytest.raises(ValueError, match="language"):
        read_text("unused.png", languages=languages)


# The subprocess, with the stand-in program


def test_version_is_read_once(fake_tesseract: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tesseract_version() == "5.3.0"
    monkeypatch.setenv("PATH", "")  # the cached answer must not need to look again
    assert tesseract_version() == "5.3.0"


def test_read_text_hands_over_a_grey_png(fake_tesseract: Path) -> None:
    image = pyvips.Image.new_from_array(np.asarray(page(640, 320)))
    result = read_text(image, languages="eng+deu")
    assert result is not None and result.text.startswith("Invoice No. 2024-117")
    seen = json.loads(fake_tesseract.read_text())
    assert seen["size"] == [640, 320] and seen["mode"] == "L"
    assert seen["arguments"][1:] == ["-", "-l", "eng+deu", "--psm", "3", "tsv"]
    assert seen["threads"] == "1"
    assert not Path(seen["arguments"][0]).exists()  # the temporary PNG is gone


def test_failure_and_timeout_raise_ocr_failed(
    fake_tesseract: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    page(100, 50).save(tmp_path / "page.png")
    monkeypatch.setenv("FAKE_TESSERACT", "fail")
    with pytest.raises(OcrFailed, match="Failed loading language"):
        read_text(str(tmp_path / "page.png"))
    monkeypatch.setenv("FAKE_TESSERACT", "hang")
    start = time.monotonic()
    with pytest.raises(OcrFailed, match=r"longer than 0\.5 s"):
        read_text(str(tmp_path / "page.png"), timeout=0.5)
    assert time.monotonic() - start < 10


def test_analysis_reads_text_on_a_larger_copy_in_full_size_pixels(
    fake_tesseract: Path, tmp_path: Path
) -> None:
    page(3200, 2000).save(tmp_path / "scan.png")
    result = analyse_pixels(str(tmp_path / "scan.png"), LIMITS)
    seen = json.loads(fake_tesseract.read_text())
    assert seen["size"] == [1600, 1000]  # the OCR copy, not the 512 px analysis copy
    assert result.text is not None and result.text.language == "eng"
    assert {key: result.text.boxes[0][key] for key in ("x", "y", "w", "h")} == {
        "x": 192, "y": 96, "w": 620, "h": 104,
    }  # fmt: skip
    assert analyse_pixels(str(tmp_path / "scan.png"), LIMITS, ocr=False).text is None


def test_analysis_keeps_its_scores_when_ocr_fails(
    fake_tesseract: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_TESSERACT", "fail")
    page(800, 400).save(tmp_path / "page.png")
    with capture_logs() as logs:
        result = analyse_pixels(str(tmp_path / "page.png"), LIMITS)
    assert result.text is None and result.brightness > 0.9
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [("ocr_failed", "warning")]
    assert "Failed loading language" in logs[0]["error"]
