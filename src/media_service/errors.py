"""Domain errors that carry their HTTP status.

Services raise these; one handler (``media_service.problems``) renders every one of them
as an RFC 9457 problem body. An expected condition is never a 500.
"""

from __future__ import annotations

from typing import Any, ClassVar


class MediaError(Exception):
    """Base of every error a client can cause or needs to know about."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra
        self.headers: dict[str, str] = {}


class BadRequest(MediaError):
    pass


class EmptyFile(MediaError):
    code = "empty_file"
    title = "The file is empty"


class ChecksumMismatch(MediaError):
    code = "checksum_mismatch"
    title = "The uploaded bytes do not match the checksum the client sent"


class Unauthorized(MediaError):
    status = 401
    code = "unauthorized"
    title = "A valid bearer token is required"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["WWW-Authenticate"] = 'Bearer realm="media"'


class Forbidden(MediaError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class InvalidSignature(Forbidden):
    code = "invalid_signature"
    title = "The signed URL is invalid or has expired"


class NotFound(MediaError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(MediaError):
    status = 409
    code = "conflict"
    title = "Conflict"


class RequestTimeout(MediaError):
    status = 408
    code = "request_timeout"
    title = "The request body stopped arriving"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["Connection"] = "close"  # the rest of the body may still come


class AlreadyStored(Conflict):
    """The same bytes are stored for the owner already (one file per owner and content)."""

    code = "already_stored"
    title = "These bytes are already stored for this owner"


class PayloadTooLarge(MediaError):
    status = 413
    code = "payload_too_large"
    title = "The upload is larger than allowed for its type"


class UnsupportedMediaType(MediaError):
    status = 415
    code = "unsupported_media_type"
    title = "The file's content is not an allowed format"


class RangeNotSatisfiable(MediaError):
    status = 416
    code = "range_not_satisfiable"
    title = "The requested range is outside the file"

    def __init__(self, size: int) -> None:
        super().__init__(f"the file has {size} bytes")
        self.headers["Content-Range"] = f"bytes */{size}"


class Unprocessable(MediaError):
    status = 422
    code = "unprocessable"
    title = "The request is well-formed but cannot be processed"
