"""Hostile and broken inputs: each fails fast with the right error and kills no worker."""

from __future__ import annotations

import asyncio
import io
import os
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
import pyvips
from PIL import Image

from media_service.imaging.decode import inspect_image
from media_service.imaging.errors import (
    CorruptImage,
    ImageTooLarge,
    ImagingError,
    UnsupportedImage,
)
from media_service.imaging.limits import DecodeLimits
from media_service.imaging.pool import ImagingPool
from media_service.imaging.render import OutputFormat, RenderSpec, render

from .conftest import RED, bomb_png, noise, png_with_size, quadrants

Write = Callable[..., str]
SPEC = RenderSpec(256, 256, format=OutputFormat.WEBP)
QUICK = 3.0  # seconds: an error must not cost a full decode of a huge image


def render_in_worker(path: str) -> tuple[str, int]:
    """Run in a worker: render ``path``; return the error code (or "ok") and peak RSS."""
    try:
        render(path, SPEC, DecodeLimits())
        outcome = "ok"
    except ImagingError as exc:
        outcome = exc.code
    return outcome, peak_rss()


def peak_rss() -> int:
    """This process's peak resident memory, in bytes.

    VmHWM, not ``getrusage``: ru_maxrss survives exec, so a spawned worker would report
    the (large) test process it was forked from.
    """
    status = Path("/proc/self/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


async def worker_pids(pool: ImagingPool) -> set[int]:
    """The pids of all the pool's workers: as many overlapping calls as workers."""
    return set(await asyncio.gather(*(pool.run(pid_after, 0.5) for _ in range(pool.workers))))


def many_frames_gif(frames: int, size: int = 200) -> bytes:
    """A GIF of ``frames`` frames, each differing by one pixel (so none are merged)."""
    base = Image.new("P", (size, size), 0)
    base.putpalette([0, 0, 0, 255, 0, 0] * 128)
    images = []
    for i in range(frames):
        frame = base.copy()
        frame.putpixel((i % size, (i // size) % size), 1)
        images.append(frame)
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=20)
    return buffer.getvalue()


def jpeg_with_height(data: bytes, height: int) -> bytes:
    """``data`` (a baseline JPEG) with its SOF0 header claiming another height."""
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">H", height) + data[sof + 7 :]


def assert_quick(fn: Callable[[], object], error: type[Exception]) -> None:
    start = time.perf_counter()
    with pytest.raises(error):
        fn()
    assert time.perf_counter() - start < QUICK


@pytest.fixture(scope="module")
def bomb_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(bomb_png())
    return str(path)


def test_png_bomb_is_refused_from_its_header(bomb_path: str, limits: DecodeLimits) -> None:
    assert os.path.getsize(bomb_path) < 200_000  # small file, 400 megapixels
    header = pyvips.Image.new_from_file(bomb_path, access="sequential")
    assert (header.width, header.height) == (20_000, 20_000)  # a real, valid PNG
    assert_quick(lambda: inspect_image(bomb_path, limits), ImageTooLarge)
    assert_quick(lambda: render(bomb_path, SPEC, limits), ImageTooLarge)


async def test_png_bomb_keeps_worker_memory_low(bomb_path: str) -> None:
    pool = ImagingPool(workers=1)  # a fresh worker, so its peak is this call's
    try:
        outcome, peak = await pool.run(render_in_worker, bomb_path)
    finally:
        await pool.close()
    assert outcome == "image_too_large"
    assert peak < 200 * 2**20, f"worker peaked at {peak / 2**20:.0f} MiB"


def test_side_limit(write: Write) -> None:
    path = write("wide.png", bomb_png(70_000, 1))
    with pytest.raises(ImageTooLarge, match="70000"):
        inspect_image(path, DecodeLimits())
    with pytest.raises(ImageTooLarge):
        inspect_image(write("a.png", quadrants()), DecodeLimits(max_side=100))


def test_png_header_claiming_more_rows_than_it_has(write: Write, limits: DecodeLimits) -> None:
    png = Path(write("real.png", noise(64, 64))).read_bytes()
    liar = write("liar.png", png_with_size(png, 64, 4000))
    assert inspect_image(liar, limits).height == 4000  # the header is believed...
    assert_quick(lambda: render(liar, SPEC, limits), CorruptImage)  # ...until decoding
    huge = write("huge.png", png_with_size(png, 60_000, 60_000))
    assert_quick(lambda: render(huge, SPEC, limits), ImageTooLarge)


def test_jpeg_header_claiming_more_rows_than_it_has(write: Write, limits: DecodeLimits) -> None:
    data = Path(write("real.jpg", noise(64, 64), quality=90)).read_bytes()
    liar = write("liar.jpg", jpeg_with_height(data, 6400))
    assert inspect_image(liar, limits).height == 6400
    # libjpeg pads the missing rows and only *warns* ("premature end of data segment");
    # we fail on errors, not warnings (those also come from benign camera quirks), so the
    # lie is believed, at a cost the header check has already bounded.
    start = time.perf_counter()
    result = render(liar, RenderSpec(64, 6400, format=OutputFormat.PNG), limits)
    assert (result.width, result.height) == (64, 6400) and time.perf_counter() - start < QUICK
    huge = write("huge.jpg", jpeg_with_height(data, 65_000))
    tight = DecodeLimits(max_pixels=1_000_000)
    assert_quick(lambda: render(huge, SPEC, tight), ImageTooLarge)


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("cut.jpg", noise(400, 300)),
        ("cut.png", noise(400, 300)),
        ("cut.webp", noise(400, 300)),
        ("cut.gif", noise(400, 300).convert("P")),
        ("cut.avif", noise(400, 300)),
        ("cut.tiff", noise(400, 300)),
    ],
)
def test_truncated_files_are_corrupt(
    write: Write, limits: DecodeLimits, name: str, image: Image.Image
) -> None:
    data = Path(write("full-" + name, image)).read_bytes()
    path = write(name, data[: len(data) * 2 // 3])
    assert_quick(lambda: render(path, SPEC, limits), CorruptImage)


def test_truncated_heic_is_corrupt(write: Write, limits: DecodeLimits) -> None:
    pillow_heif.register_heif_opener()
    data = Path(write("full.heic", noise(200, 150), format="HEIF")).read_bytes()
    path = write("cut.heic", data[: len(data) * 2 // 3])
    assert_quick(lambda: render(path, SPEC, limits), CorruptImage)


def test_gif_with_thousands_of_frames_is_too_large(write: Write, limits: DecodeLimits) -> None:
    path = write("many.gif", many_frames_gif(3000))  # 3000 × 200×200 = 120 megapixels
    assert os.path.getsize(path) < 1_000_000
    assert_quick(lambda: inspect_image(path, limits), ImageTooLarge)
    assert_quick(lambda: render(path, SPEC, limits), ImageTooLarge)


def test_small_animation_renders_its_first_frame(write: Write, limits: DecodeLimits) -> None:
    frames = [Image.new("RGB", (50, 40), colour) for colour in [RED, (0, 0, 255), (0, 255, 0)]]
    path = write("anim.gif", frames[0], save_all=True, append_images=frames[1:])
    result = render(path, RenderSpec(25, 25, format=OutputFormat.PNG), limits)
    out = Image.open(io.BytesIO(result.data)).convert("RGB")
    assert out.size == (25, 20) and out.getpixel((12, 10)) == RED


def test_tiff_with_too_many_pages_is_too_large(write: Write, limits: DecodeLimits) -> None:
    path = write("pages.tif", b"")
    pages = pyvips.Image.black(400, 300 * 1000)  # 1000 pages × 120,000 px = 120 MP
    pages.tiffsave(path, page_height=300, compression="deflate")
    assert_quick(lambda: inspect_image(path, limits), ImageTooLarge)


SVG_WITH_SCRIPT = (
    b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
    b"<script>alert(1)</script><text>&xxe;</text></svg>"
)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("evil.svg", SVG_WITH_SCRIPT),
        ("a.bmp", None),
        ("random.bin", np.random.default_rng(1).bytes(10_000)),
        ("empty.jpg", b""),
        ("page.png", b"<!doctype html><html><body>hello</body></html>"),
        ("data.csv", b"1,2,3\n4,5,6\n"),  # libvips reads CSV as an image: not allowed
    ],
)
def test_not_an_allowed_image_is_unsupported(
    write: Write, limits: DecodeLimits, name: str, content: bytes | None
) -> None:
    path = write(name, content if content is not None else quadrants())
    assert_quick(lambda: inspect_image(path, limits), UnsupportedImage)
    assert_quick(lambda: render(path, SPEC, limits), UnsupportedImage)


def test_missing_file_is_not_an_image_error(tmp_path: Path, limits: DecodeLimits) -> None:
    with pytest.raises(FileNotFoundError):
        inspect_image(str(tmp_path / "nope.jpg"), limits)


def test_error_messages_do_not_reveal_server_paths(write: Write, limits: DecodeLimits) -> None:
    data = Path(write("full.png", noise(64, 64))).read_bytes()
    path = write("liar.png", png_with_size(data, 64, 900))
    with pytest.raises(CorruptImage) as caught:
        render(path, SPEC, limits)
    assert str(Path(path).parent) not in str(caught.value) and str(caught.value)


async def test_bad_inputs_do_not_kill_workers(
    pool: ImagingPool, write: Write, bomb_path: str
) -> None:
    pillow_heif.register_heif_opener()
    full = Path(write("full.jpg", noise(300, 200))).read_bytes()
    bad = [
        bomb_path,
        write("cut.jpg", full[: len(full) // 2]),
        write("evil.svg", SVG_WITH_SCRIPT),
        write("many.gif", many_frames_gif(3000)),
        write("liar.png", png_with_size(Path(write("r.png", noise(64, 64))).read_bytes(), 64, 900)),
        write("junk.heic", b"\x00\x00\x00\x18ftypheic" + bytes(500)),
    ]
    before = await worker_pids(pool)
    outcomes = [(await pool.run(render_in_worker, path))[0] for path in bad]
    assert outcomes == [
        "image_too_large",
        "corrupt_image",
        "unsupported_image",
        "image_too_large",
        "corrupt_image",
        outcomes[-1],
    ]
    assert outcomes[-1] in ("corrupt_image", "unsupported_image")
    assert (await pool.run(render_in_worker, write("ok.jpg", quadrants())))[0] == "ok"
    assert await worker_pids(pool) == before  # none died, none was replaced


def test_zlib_bomb_helper_is_valid() -> None:
    # The test's premise: the bomb decompresses to the size it declares.
    data = bomb_png(64, 64)
    assert zlib.decompress(data[data.index(b"IDAT") + 4 : -16]) == (b"\x00" * 9) * 64
