"""probe_video on real videos encoded here with PyAV (FFmpeg's own encoders)."""

from __future__ import annotations

import io
import pickle
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from media_service.imaging.errors import ImageTooLarge
from media_service.imaging.pool import ImagingPool
from media_service.imaging.video import CorruptMedia, VideoInfo, VideoLimits, probe_video

RGB = tuple[int, int, int]
RED: RGB = (200, 30, 40)
GREEN: RGB = (40, 190, 60)
BLUE: RGB = (30, 50, 210)
BLACK: RGB = (0, 0, 0)


def _solid(colour: RGB, width: int, height: int) -> np.ndarray:
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = colour
    return frame


def write_video(
    path: Path,
    codec: str,
    frames: Sequence[np.ndarray] | Callable[[int], np.ndarray],
    *,
    count: int | None = None,
    fps: int = 25,
    rotation: int = 0,
    audio: bool = False,
) -> Path:
    """Encode ``count`` frames (an array each, or a function of the index) into ``path``."""
    make = frames if callable(frames) else frames.__getitem__
    total = count if count is not None else len(frames)  # type: ignore[arg-type]
    first = make(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=48000, layout="mono") if audio else None
        for index in range(total):
            frame = av.VideoFrame.from_ndarray(make(index), format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if sound is not None:
            _write_silence(out, sound, seconds=total / fps)
    return path


def _write_silence(
    out: av.container.OutputContainer, sound: av.AudioStream, seconds: float
) -> None:
    samples = 1024
    for index in range(int(seconds * 48000 / samples)):
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, samples), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 48000
        frame.pts = index * samples
        out.mux(sound.encode(frame))
    out.mux(sound.encode())


def poster_of(info: VideoInfo) -> np.ndarray:
    image = Image.open(io.BytesIO(info.poster))
    assert image.format == info.poster_format.upper()
    assert image.size == (info.width, info.height)
    return np.asarray(image.convert("RGB")).astype(int)


def assert_colour(pixels: np.ndarray, colour: RGB, tolerance: int = 18) -> None:
    mean = pixels.reshape(-1, 3).mean(axis=0)
    assert np.abs(mean - np.array(colour)).max() < tolerance, (mean, colour)


def test_mp4_h264_with_audio(tmp_path: Path) -> None:
    path = write_video(
        tmp_path / "a.mp4", "libx264", lambda _: _solid(RED, 160, 96), count=50, audio=True
    )

    info = probe_video(str(path))

    assert info.duration == pytest.approx(2.0, abs=0.2)
    assert (info.width, info.height) == (160, 96)
    assert info.codec == "h264"
    assert info.frame_rate == pytest.approx(25.0)
    assert info.has_audio is True
    assert_colour(poster_of(info), RED)


@pytest.mark.parametrize(("codec", "name"), [("libvpx", "vp8"), ("libvpx-vp9", "vp9")])
def test_webm(tmp_path: Path, codec: str, name: str) -> None:
    path = write_video(tmp_path / "a.webm", codec, lambda _: _solid(BLUE, 128, 72), count=30)

    info = probe_video(str(path))

    assert info.duration == pytest.approx(1.2, abs=0.2)
    assert (info.width, info.height, info.codec) == (128, 72, name)
    assert info.has_audio is False
    assert_colour(poster_of(info), BLUE)


def test_mov_mpeg4(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.mov", "mpeg4", lambda _: _solid(GREEN, 96, 64), count=75)

    info = probe_video(str(path))

    assert info.duration == pytest.approx(3.0, abs=0.2)
    assert (info.width, info.height, info.codec) == (96, 64, "mpeg4")
    assert_colour(poster_of(info), GREEN)


def test_poster_skips_a_fade_in_from_black(tmp_path: Path) -> None:
    # 4 s: black for the first 0.2 s, then green; the poster is taken at 0.4 s.
    path = write_video(
        tmp_path / "fade.mp4",
        "libx264",
        lambda i: _solid(BLACK if i < 5 else GREEN, 64, 64),
        count=100,
    )

    assert_colour(poster_of(probe_video(str(path))), GREEN)


def test_poster_is_taken_no_later_than_three_seconds(tmp_path: Path) -> None:
    # 40 s at 10 fps: blue before 3 s, green from 3 s to 4 s, red after. 10% would be 4 s.
    def colour(index: int) -> np.ndarray:
        return _solid(BLUE if index < 30 else GREEN if index < 40 else RED, 48, 48)

    path = write_video(tmp_path / "long.mp4", "libx264", colour, count=400, fps=10)

    info = probe_video(str(path))

    assert info.duration == pytest.approx(40.0, abs=0.2)
    assert_colour(poster_of(info), GREEN)


def test_rotation_metadata_gives_upright_size_and_poster(tmp_path: Path) -> None:
    # Left half red, right half blue; displayed turned 90° counter-clockwise the left half
    # ends up at the bottom.
    frame = np.concatenate([_solid(RED, 80, 48), _solid(BLUE, 80, 48)], axis=1)
    path = write_video(tmp_path / "r.mp4", "libx264", [frame] * 10, rotation=90)

    info = probe_video(str(path))

    assert (info.width, info.height) == (48, 160)
    pixels = poster_of(info)
    assert_colour(pixels[:60], BLUE)
    assert_colour(pixels[100:], RED)


def test_tiny_decode_budget_still_gives_a_poster(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.mp4", "libx264", lambda _: _solid(RED, 64, 64), count=100)

    info = probe_video(str(path), VideoLimits(max_decode_frames=1))

    assert_colour(poster_of(info), RED)


def test_frames_over_the_pixel_limit_are_refused(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.mp4", "libx264", lambda _: _solid(RED, 64, 64), count=5)

    with pytest.raises(ImageTooLarge, match="64x64"):
        probe_video(str(path), VideoLimits(max_pixels_per_frame=64 * 63))


def test_too_many_streams_refused(tmp_path: Path) -> None:
    path = write_video(
        tmp_path / "a.mp4", "libx264", lambda _: _solid(RED, 32, 32), count=5, audio=True
    )

    with pytest.raises(ImageTooLarge, match="2 streams"):
        probe_video(str(path), VideoLimits(max_streams=1))


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    with av.open(str(path), "w") as out:
        _write_silence(out, out.add_stream("aac", rate=48000, layout="mono"), seconds=1)

    with pytest.raises(CorruptMedia, match="no video stream"):
        probe_video(str(path))


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage" * 1000, b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100],
    ids=["empty", "garbage", "bare-ftyp"],
)
def test_unreadable_files_fail_quickly(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)

    started = time.monotonic()
    with pytest.raises(CorruptMedia) as caught:
        probe_video(str(path))

    assert time.monotonic() - started < 2
    assert caught.value.code == "corrupt_media"


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file_fails_quickly(tmp_path: Path, keep: float) -> None:
    # The MP4 muxer writes the index (moov) last, so a cut file has none.
    path = write_video(tmp_path / "a.mp4", "libx264", lambda i: _solid(RED, 64, 64), count=50)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])

    started = time.monotonic()
    with pytest.raises(CorruptMedia):
        probe_video(str(path))
    assert time.monotonic() - started < 2


def test_truncated_webm_still_gives_the_first_frames(tmp_path: Path) -> None:
    # Matroska has no trailing index to lose: what was written before the cut is playable.
    path = write_video(tmp_path / "a.webm", "libvpx", lambda i: _solid(BLUE, 64, 64), count=50)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    assert_colour(poster_of(probe_video(str(path))), BLUE)


def test_playlists_cannot_make_ffmpeg_read_other_files(tmp_path: Path) -> None:
    write_video(tmp_path / "inner.mp4", "libx264", lambda i: _solid(RED, 32, 32), count=5)
    playlist = tmp_path / "list.mp4"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\ninner.mp4\n#EXT-X-ENDLIST\n")

    with pytest.raises(CorruptMedia):
        probe_video(str(playlist))


def test_result_and_limits_pickle(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.mp4", "libx264", lambda i: _solid(RED, 32, 32), count=5)
    info = probe_video(str(path))
    limits = VideoLimits(max_decode_frames=7)

    assert _through_pickle(info) == info
    assert _through_pickle(limits) == limits


async def test_runs_in_the_process_pool(pool: ImagingPool, tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.mp4", "libx264", lambda i: _solid(GREEN, 32, 32), count=5)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")

    info = await pool.run(probe_video, str(path), VideoLimits())

    assert_colour(poster_of(info), GREEN)
    with pytest.raises(CorruptMedia):
        await pool.run(probe_video, str(empty))


def _through_pickle(value: object) -> object:
    # Our own objects, as the process pool sends them: pickle is the point here.
    return pickle.loads(pickle.dumps(value))  # noqa: S301
