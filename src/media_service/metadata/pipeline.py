"""What runs in an imaging worker process to analyse one photo (pickled by name).

EXIF comes from the original's header (no pixels). Everything measured on pixels (quality,
colours, hash, text, faces) comes from the stored preview when there is one: the measures
use a fixed 512 px copy and faces are found at up to 1600 px anyway, so decoding a
24-megapixel original again would cost several times as much for the same answer. Face
coordinates are then scaled back to the original's upright pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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


@dataclass(frozen=True)
class PixelSource:
    """Where to measure pixels, and the original's upright size it stands for."""

    path: str
    original_width: int | None = None  # None: ``path`` is the original itself
    original_height: int | None = None


def analyse_photo(
    original: str, source: PixelSource, limits: DecodeLimits, find_faces: bool, read_text: bool
) -> PhotoAnalysis:
    """Analyse a photo. Raises the imaging errors for undecodable pixels; broken EXIF
    never fails it."""
    exif = read_exif(original)
    place = None
    if exif.latitude is not None and exif.longitude is not None:
        place = reverse_geocode(exif.latitude, exif.longitude)
    pixels = analyse_pixels(source.path, limits, ocr=read_text)
    faces = detect_faces(source.path, limits) if find_faces else None
    if source.original_width and source.original_height:
        scale = (source.original_width / pixels.width, source.original_height / pixels.height)
        text = pixels.text.scaled(*scale) if pixels.text is not None else None
        pixels = replace(
            pixels, width=source.original_width, height=source.original_height, text=text
        )
        faces = None if faces is None else [_scaled(face, scale) for face in faces]
    return PhotoAnalysis(exif=exif, place=place, pixels=pixels, faces=faces)


def _scaled(face: Face, scale: tuple[float, float]) -> Face:
    sx, sy = scale
    x, y, width, height = face.box
    return Face(
        box=(round(x * sx), round(y * sy), round(width * sx), round(height * sy)),
        confidence=face.confidence,
        left_eye=(face.left_eye[0] * sx, face.left_eye[1] * sy),
        right_eye=(face.right_eye[0] * sx, face.right_eye[1] * sy),
    )
