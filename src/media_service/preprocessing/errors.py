"""How imaging failures reach a client: a 422 naming what is wrong with the source, or a
503 when the renderer itself failed (a crashed or timed-out worker)."""

from __future__ import annotations

from media_service.errors import MediaError, Unprocessable
from media_service.imaging.errors import CorruptImage, ImageTooLarge, ImagingError, UnsupportedImage


class SourceUnsupported(Unprocessable):
    code = "unsupported_image"
    title = "The file's format cannot be rendered"


class SourceTooLarge(Unprocessable):
    code = "image_too_large"
    title = "The file has more pixels than allowed"


class SourceCorrupt(Unprocessable):
    code = "corrupt_image"
    title = "The file cannot be decoded"


class NotReady(MediaError):
    status = 409
    code = "not_processed"
    title = "The file has not been processed yet"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = "2"


class RenderUnavailable(MediaError):
    status = 503
    code = "render_unavailable"
    title = "The renderer failed; try again"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = "5"


def source_at_fault(exc: ImagingError) -> bool:
    """Whether the file itself cannot be used (retrying will not help), as opposed to a
    crashed or timed-out worker (plain ``ImagingError``), which is worth retrying."""
    return isinstance(exc, tuple(imaging for imaging, _ in _MAPPING))


def client_error(exc: ImagingError) -> MediaError:
    """The problem to answer for an imaging failure."""
    for imaging_type, error_type in _MAPPING:
        if isinstance(exc, imaging_type):
            return error_type(str(exc))
    return RenderUnavailable(str(exc))


_MAPPING: tuple[tuple[type[ImagingError], type[MediaError]], ...] = (
    (UnsupportedImage, SourceUnsupported),
    (ImageTooLarge, SourceTooLarge),
    (CorruptImage, SourceCorrupt),
)
