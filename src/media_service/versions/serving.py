"""Which bytes a download or a rendition of a photo serves: pure helpers of the service."""

from __future__ import annotations

from sqlalchemy import inspect as sa_inspect

from media_service.media.models import MediaFile
from media_service.media.sniff import FORMATS
from media_service.versions.models import PhotoVersion


def version_view(file: MediaFile, version: PhotoVersion) -> MediaFile:
    """A detached copy of ``file`` that describes ``version``'s bytes (for responses
    that serve bytes: content type, size, ETag, download name)."""
    values = {attr.key: getattr(file, attr.key) for attr in sa_inspect(MediaFile).column_attrs}
    values.update(
        storage_path=version.storage_path,
        file_size=version.file_size,
        sha256=version.sha256,
        content_type=version.content_type,
        width=version.width,
        height=version.height,
        file_name=_versioned_name(file.file_name, version),
    )
    return MediaFile(**values)


def _versioned_name(name: str, version: PhotoVersion) -> str:
    stem = name.rsplit(".", 1)[0] if "." in name else name
    extension = next(
        (fmt.extension for fmt in FORMATS.values() if fmt.content_type == version.content_type),
        "",
    )
    return f"{stem}-v{version.version_number}{extension}"
