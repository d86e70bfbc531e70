"""What runs in an imaging worker process to analyse one photo (pickled by name).

EXIF is read from the header (no pixels); the pixel measures come from one decode at a
fixed analysis size; faces from a second decode at detection size, only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from media_service.imaging.analysis import PixelAnalysis, analyse_pixels
from media_service.imaging.faces import Face, detect_faces
from media_service.imaging.limits import DecodeLimits
from media_service.metadata.exif import ExifData, read_exif
from media_service.metadata.geocode import Place, reverse_geocode


@dataclass(frozen=True)
class PhotoAnalysis:
    """Everything the service derives from a photo's bytes by itself."""

    exif: ExifData
    place: Place | None
    pixels: PixelAnalysis
    faces: list[Face] | None  # None: detection was not run


def analyse_photo(
    path: str, limits: DecodeLimits, find_faces: bool, read_text: bool
) -> PhotoAnalysis:
    """Analyse the photo at ``path``. Raises the imaging errors for undecodable files;
    broken EXIF never fails it."""
    exif = read_exif(path)
    place = None
    if exif.latitude is not None and exif.longitude is not None:
        place = reverse_geocode(exif.latitude, exif.longitude)
    pixels = analyse_pixels(path, limits, ocr=read_text)
    faces = detect_faces(path, limits) if find_faces else None
    return PhotoAnalysis(exif=exif, place=place, pixels=pixels, faces=faces)
