"""What runs inside an imaging worker process for one file. Module-level functions only:
they are pickled by name into the pool.

One call per file does everything that needs the decoded source: read the header, render
every stored rendition from one decode, and for videos and PDFs make the poster (a frame
or the first page) that then feeds the same renditions. Faces are separate
(:func:`find_faces`): detection costs several times a rendition, and is wanted at once
only where someone asks for it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from media_service.imaging.decode import inspect_image
from media_service.imaging.documents import DocumentLimits, probe_pdf
from media_service.imaging.faces import Face, aligned_crop, detect_faces
from media_service.imaging.limits import DecodeLimits
from media_service.imaging.render import render, render_many
from media_service.imaging.specs import OutputFormat, Rendered, RenderSpec
from media_service.imaging.video import VideoLimits, probe_video

IMAGE, VIDEO, DOCUMENT = "image", "video", "document"


@dataclass(frozen=True)
class Preprocessed:
    """What one file yielded: facts about the source, its renditions, maybe a poster."""

    kind: str
    source_format: str | None
    width: int
    height: int
    renditions: list[Rendered]
    frames: int | None = None
    orientation: int | None = None
    has_alpha: bool = False
    duration_seconds: float | None = None
    video_codec: str | None = None
    page_count: int | None = None
    poster: bytes | None = None
    poster_format: str | None = None
    notes: dict[str, str] = field(default_factory=dict)


def preprocess(
    path: str, kind: str, specs: Sequence[RenderSpec], limits: DecodeLimits
) -> Preprocessed:
    """Analyse the file at ``path`` (``kind`` is image, video or document) and render
    ``specs`` from it. Raises the imaging errors for files that cannot be used."""
    if kind == IMAGE:
        return _image(path, specs, limits)
    if kind == VIDEO:
        return _video(path, specs, limits)
    if kind == DOCUMENT:
        return _document(path, specs, limits)
    raise ValueError(f"unknown kind {kind!r}")


def render_one(path: str, spec: RenderSpec, limits: DecodeLimits) -> Rendered:
    """One on-the-fly rendition of an image (or of a stored poster)."""
    return render(path, spec, limits)


def find_faces(path: str, limits: DecodeLimits) -> list[Face]:
    """Faces in an image, in upright full-resolution coordinates."""
    return detect_faces(path, limits)


def face_crop(
    path: str, face: Face, size: int, fmt: OutputFormat, limits: DecodeLimits
) -> Rendered:
    """The aligned square crop of one face."""
    return aligned_crop(path, face, size, limits, fmt=fmt)


def _image(path: str, specs: Sequence[RenderSpec], limits: DecodeLimits) -> Preprocessed:
    info = inspect_image(path, limits)
    return Preprocessed(
        kind=IMAGE,
        source_format=info.format,
        width=info.width,
        height=info.height,
        frames=info.frames,
        orientation=info.orientation,
        has_alpha=info.has_alpha,
        renditions=render_many(path, specs, limits),
    )


def _video(path: str, specs: Sequence[RenderSpec], limits: DecodeLimits) -> Preprocessed:
    video = probe_video(path, VideoLimits())
    return Preprocessed(
        kind=VIDEO,
        source_format=None,
        width=video.width,
        height=video.height,
        duration_seconds=video.duration,
        video_codec=video.codec,
        poster=video.poster,
        poster_format=video.poster_format,
        renditions=_render_bytes(video.poster, specs, limits),
    )


def _document(path: str, specs: Sequence[RenderSpec], limits: DecodeLimits) -> Preprocessed:
    document = probe_pdf(path, DocumentLimits())
    page = document.first_page
    return Preprocessed(
        kind=DOCUMENT,
        source_format="pdf",
        width=round(document.width_pt),
        height=round(document.height_pt),
        page_count=document.page_count,
        poster=page,
        poster_format=document.first_page_format,
        renditions=_render_bytes(page, specs, limits),
    )


def _render_bytes(data: bytes, specs: Sequence[RenderSpec], limits: DecodeLimits) -> list[Rendered]:
    fd, path = tempfile.mkstemp(prefix="poster-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return render_many(path, specs, limits)
    finally:
        os.unlink(path)
