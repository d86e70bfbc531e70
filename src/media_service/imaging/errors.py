"""Errors raised by the imaging backend.

Each carries a stable machine-readable ``code``; the message says, in plain words, what is
wrong with the image. The backend knows nothing about HTTP: the domain layer maps these to
its own errors (for example 415 for :class:`UnsupportedImage`, 422 for the others).
"""

from __future__ import annotations

from typing import ClassVar


class ImagingError(Exception):
    """Base of every imaging failure (also raised when a worker process crashes)."""

    code: ClassVar[str] = "imaging_error"


class UnsupportedImage(ImagingError):
    """The format is not on the allow-list, or libvips would need an untrusted loader."""

    code: ClassVar[str] = "unsupported_image"


class ImageTooLarge(ImagingError):
    """width × height × frames is over the limit, or one side is longer than allowed."""

    code: ClassVar[str] = "image_too_large"


class CorruptImage(ImagingError):
    """The file is truncated or undecodable, or its header lies about its size."""

    code: ClassVar[str] = "corrupt_image"
