"""The one place that imports pyvips and applies the process-wide safety settings.

libvips has loaders for dozens of formats, several of them not meant for hostile input
(ImageMagick, SVG via librsvg, MATLAB, FITS...). ``block_untrusted_set(True)`` makes libvips
refuse those loaders outright; everything else goes through :func:`find_loader` and the
allow-list in :mod:`media_service.imaging.decode`.
"""

from __future__ import annotations

from typing import Any

# pyvips ships .pyi stubs but no py.typed marker, so mypy sees it as untyped.
import pyvips  # type: ignore[import-untyped, unused-ignore]

pyvips.block_untrusted_set(True)

Image = pyvips.Image
VipsError: type[Exception] = pyvips.Error
BLOB_TYPE: Any = pyvips.GValue.blob_type

# libvips type names (what vips_foreign_find_load returns) of the loaders we allow, with
# the format name they stand for. heifload is split into heif/avif from its header.
LOADER_FORMATS: dict[str, str] = {
    "VipsForeignLoadJpegFile": "jpeg",
    "VipsForeignLoadPngFile": "png",
    "VipsForeignLoadWebpFile": "webp",
    "VipsForeignLoadNsgifFile": "gif",
    "VipsForeignLoadHeifFile": "heif",
    "VipsForeignLoadTiffFile": "tiff",
}


def vips_path(path: str) -> str:
    """``path`` as libvips must see it when it parses filenames (``thumbnail``, finding a
    loader): it treats a trailing ``[...]`` as load options, and an empty ``[]`` is the
    way to say there are none, so a file really named ``a[b]`` is read as such."""
    return f"{path}[]"


def find_loader(path: str) -> str | None:
    """The libvips loader (type name) that would open ``path``, sniffed from its bytes.

    ``None`` when no trusted loader recognises the file.
    """
    pointer = pyvips.vips_lib.vips_foreign_find_load(vips_path(path).encode())
    if pointer == pyvips.ffi.NULL:
        pyvips.vips_lib.vips_error_clear()
        return None
    return str(pyvips.ffi.string(pointer).decode())


def call(operation: str, *args: Any, **kwargs: Any) -> Any:
    """Run a libvips operation by name (a loader's type name works too)."""
    return pyvips.Operation.call(operation, *args, **kwargs)


def configure_worker() -> None:
    """Settings for a long-running worker: one libvips thread, no operation cache.

    One process per core scales better than libvips threads (measured: a second thread adds
    4-10 %), and the operation cache only holds memory and file handles in a worker that
    never sees the same file twice.
    """
    pyvips.concurrency_set(1)
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    pyvips.cache_set_max_files(0)
    pyvips.block_untrusted_set(True)
