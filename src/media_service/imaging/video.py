"""Video facts and a poster frame, read with PyAV (FFmpeg) inside an imaging worker process.

Only the MP4/MOV and Matroska/WebM demuxers may open a file and only the ``file`` protocol
is allowed, so a playlist or a reference movie cannot make FFmpeg read other files or the
network. Decoding is bounded in frames and wall-clock time whatever the file declares.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import av
import av.container
import av.video.frame
import av.video.stream
from PIL import Image

from media_service.imaging.errors import CorruptImage, ImageTooLarge

# The poster is taken at 10% of the duration but never later than 3 s: late enough to skip
# a fade-in from black, early enough to stay cheap to reach.
_POSTER_FRACTION = 0.1
_POSTER_MAX_OFFSET = 3.0
_POSTER_QUALITY = 92


class CorruptMedia(CorruptImage):
    """A video or document that cannot be read: empty, truncated, garbage or undecodable.

    A subclass of :class:`CorruptImage` so that callers mapping imaging errors to responses
    treat it the same way; its ``code`` tells the two apart.
    """

    code: ClassVar[str] = "corrupt_media"


@dataclass(frozen=True)
class VideoLimits:
    """Bounds on what a video may be and on how much work probing it may do.

    ``formats`` are FFmpeg demuxer names: ``mov`` covers MP4/MOV/M4V/3GP and ``matroska``
    covers MKV/WebM.
    """

    max_pixels_per_frame: int = 8192 * 8192
    max_decode_frames: int = 300
    max_probe_seconds: float = 10.0
    max_streams: int = 64
    formats: tuple[str, ...] = ("mov", "matroska")


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, as a viewer sees it (``width``/``height`` after rotation)."""

    duration: float
    width: int
    height: int
    codec: str
    frame_rate: float | None
    has_audio: bool
    poster: bytes
    poster_format: str


def probe_video(path: str, limits: VideoLimits = VideoLimits()) -> VideoInfo:
    """Read the facts of the video at ``path`` and render a poster of a representative frame.

    Raises :class:`CorruptMedia` for an empty, garbage or undecodable file or one with no
    video stream, and :class:`ImageTooLarge` for frames over ``limits.max_pixels_per_frame``
    or more than ``limits.max_streams`` streams. Synchronous CPU work: run it in the pool.
    """
    with _open(path, limits) as container:
        stream = _video_stream(container, limits)
        duration = _duration(container, stream)
        frame = _poster_frame(container, stream, _poster_time(duration), limits)
        poster = _upright_image(frame, stream)
        return VideoInfo(
            duration=duration,
            width=poster.width,
            height=poster.height,
            codec=stream.codec_context.name,
            frame_rate=_frame_rate(stream),
            has_audio=len(container.streams.audio) > 0,
            poster=_encode_jpeg(poster),
            poster_format="jpeg",
        )


@contextmanager
def _open(path: str, limits: VideoLimits) -> Iterator[av.container.InputContainer]:
    options = {"format_whitelist": ",".join(limits.formats), "protocol_whitelist": "file"}
    try:
        container = av.open(path, mode="r", options=options)
    except av.FFmpegError as exc:
        raise CorruptMedia(f"not a readable MP4, MOV or WebM video ({exc.strerror})") from exc
    try:
        yield container
    finally:
        container.close()


def _video_stream(
    container: av.container.InputContainer, limits: VideoLimits
) -> av.video.stream.VideoStream:
    if len(container.streams) > limits.max_streams:
        raise ImageTooLarge(
            f"the file has {len(container.streams)} streams, over the limit of {limits.max_streams}"
        )
    if not container.streams.video:
        raise CorruptMedia("the file has no video stream")
    stream = container.streams.video[0]
    _check_pixels(stream.codec_context.width, stream.codec_context.height, limits)
    # One decoding thread: the pool already runs one worker process per core.
    stream.codec_context.thread_count = 1
    return stream


def _check_pixels(width: int, height: int, limits: VideoLimits) -> None:
    if width * height > limits.max_pixels_per_frame:
        raise ImageTooLarge(
            f"{width}x{height} frames exceed the limit of {limits.max_pixels_per_frame} pixels"
        )


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    """Seconds, from the stream if it says, else from the container (WebM), else 0."""
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    else:
        seconds = 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


def _frame_rate(stream: av.video.stream.VideoStream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


def _poster_time(duration: float) -> float:
    return min(duration * _POSTER_FRACTION, _POSTER_MAX_OFFSET)


def _poster_frame(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    target: float,
    limits: VideoLimits,
) -> av.video.frame.VideoFrame:
    """The first frame at or after ``target`` seconds, else the first decodable frame."""
    frame = _decode_from(container, stream, target, limits) if target > 0 else None
    if frame is None:
        frame = _decode_from(container, stream, 0.0, limits)
    if frame is None:
        raise CorruptMedia("no frame of the video could be decoded")
    return frame


def _decode_from(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    target: float,
    limits: VideoLimits,
) -> av.video.frame.VideoFrame | None:
    if not _seek(container, stream, target):
        return None
    deadline = time.monotonic() + limits.max_probe_seconds
    last: av.video.frame.VideoFrame | None = None
    for count, frame in enumerate(_frames(container, stream), start=1):
        _check_pixels(frame.width, frame.height, limits)
        last = frame
        reached = frame.time is None or frame.time >= target - 1e-3
        if reached or count >= limits.max_decode_frames or time.monotonic() > deadline:
            break
    return last


def _seek(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, target: float
) -> bool:
    """Move to the keyframe at or before ``target``; False if the file cannot seek there."""
    if stream.time_base is None:
        return target == 0
    start = stream.start_time or 0
    try:
        container.seek(start + int(target / stream.time_base), stream=stream, backward=True)
    except av.FFmpegError:
        return False
    stream.codec_context.flush_buffers()
    return True


def _frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> Iterator[av.video.frame.VideoFrame]:
    """Decoded frames from the current position; broken packets are skipped, not fatal."""
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue
            for frame in frames:
                if isinstance(frame, av.video.frame.VideoFrame):
                    yield frame
    except av.FFmpegError:
        # A truncated or garbled file ends the demuxing; what was decoded so far stands.
        return


def _upright_image(
    frame: av.video.frame.VideoFrame, stream: av.video.stream.VideoStream
) -> Image.Image:
    """The frame as RGB, square-pixelled and turned the way the display matrix says."""
    image = Image.fromarray(frame.to_ndarray(format="rgb24"))
    # Anamorphic video (DV, some broadcast) stores non-square pixels: widen to display size.
    aspect = stream.sample_aspect_ratio
    if aspect and aspect != 1:
        image = image.resize((max(1, round(image.width * float(aspect))), image.height))
    # ``rotation`` is counter-clockwise in degrees, as is Pillow's ``rotate``.
    quarter_turns = round(frame.rotation / 90) % 4
    if quarter_turns:
        image = image.rotate(90 * quarter_turns, expand=True)
    return image


def _encode_jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=_POSTER_QUALITY, optimize=True)
    return buffer.getvalue()
