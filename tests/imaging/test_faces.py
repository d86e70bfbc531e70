"""Face detection and aligned crops on a real photo.

The photo is scikit-image's ``astronaut.png`` (Eileen Collins, NASA; public domain), read
from the installed scikit-image package: nothing is copied into this repository.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from media_service.imaging.errors import UnsupportedImage
from media_service.imaging.faces import Face, aligned_crop, detect_faces
from media_service.imaging.limits import DecodeLimits
from media_service.imaging.pool import ImagingPool
from media_service.imaging.render import OutputFormat, Rendered

LIMITS = DecodeLimits()
# The astronaut's face as dlib finds it in the 512 × 512 original.
FACE_BOX = (175, 76, 91, 91)


def _astronaut() -> Image.Image:
    spec = find_spec("skimage")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    return Image.open(folder / "data" / "astronaut.png").convert("RGB")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return _astronaut()


@pytest.fixture
def photo(tmp_path: Path, astronaut: Image.Image) -> Path:
    path = tmp_path / "astronaut.jpg"
    astronaut.save(path, quality=95)
    return path


def best(faces: list[Face]) -> Face:
    assert faces, "no face found"
    return max(faces, key=lambda face: face.confidence)


def decoded(rendered: Rendered) -> Image.Image:
    image = Image.open(io.BytesIO(rendered.data))
    assert image.format == rendered.format.value.upper()
    assert image.size == (rendered.width, rendered.height)
    return image


def eye_slope(face: Face) -> float:
    (lx, ly), (rx, ry) = face.left_eye, face.right_eye
    return (ry - ly) / (rx - lx)


def test_face_found_with_plausible_box_and_eyes(photo: Path) -> None:
    faces = detect_faces(str(photo), LIMITS)

    face = best(faces)
    assert face.confidence > 0.8
    assert all(abs(a - b) <= 6 for a, b in zip(face.box, FACE_BOX, strict=True)), face.box
    x, y, width, height = face.box
    for eye_x, eye_y in (face.left_eye, face.right_eye):
        assert x < eye_x < x + width
        assert y < eye_y < y + height / 2  # eyes are in the upper half of the face
    assert face.left_eye[0] < face.right_eye[0]
    assert 0.3 < math.dist(face.left_eye, face.right_eye) / width < 0.6
    # Largest box first.
    areas = [f.box[2] * f.box[3] for f in faces]
    assert areas == sorted(areas, reverse=True)


def test_coordinates_are_in_full_size_pixels(tmp_path: Path, astronaut: Image.Image) -> None:
    path = tmp_path / "big.jpg"
    astronaut.resize((2048, 2048), Image.Resampling.LANCZOS).save(path, quality=95)

    face = best(detect_faces(str(path), LIMITS, max_side=512))

    assert all(abs(a - 4 * b) <= 24 for a, b in zip(face.box, FACE_BOX, strict=True)), face.box
    reference = best(detect_faces(str(_save(tmp_path, astronaut)), LIMITS))
    for big, small in ((face.left_eye, reference.left_eye), (face.right_eye, reference.right_eye)):
        assert math.dist(big, (4 * small[0] + 1.5, 4 * small[1] + 1.5)) < 6


def test_exif_rotated_photo_gives_upright_coordinates(
    tmp_path: Path, astronaut: Image.Image
) -> None:
    # Stored turned 90° counter-clockwise, with orientation 6 ("turn 90° clockwise to show").
    stored = astronaut.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, quality=95, exif=exif)

    rotated = best(detect_faces(str(path), LIMITS))
    upright = best(detect_faces(str(_save(tmp_path, astronaut)), LIMITS))

    assert all(abs(a - b) <= 4 for a, b in zip(rotated.box, upright.box, strict=True))
    assert math.dist(rotated.left_eye, upright.left_eye) < 3
    assert math.dist(rotated.right_eye, upright.right_eye) < 3


def test_image_without_a_face_gives_nothing(tmp_path: Path) -> None:
    ramp = np.linspace(0, 255, 640, dtype=np.uint8)
    pixels = np.stack([np.tile(ramp, (480, 1))] * 3, axis=-1)
    pixels[100:200, 100:300] = (30, 120, 200)
    path = tmp_path / "plain.png"
    Image.fromarray(pixels).save(path)

    assert detect_faces(str(path), LIMITS) == []


def test_rotated_photo_gives_a_level_aligned_crop(tmp_path: Path, astronaut: Image.Image) -> None:
    tilted = astronaut.rotate(20, resample=Image.Resampling.BICUBIC, expand=True)
    tilted_path = _save(tmp_path, tilted, "tilted.png")
    upright_path = _save(tmp_path, astronaut, "upright.png")
    tilted_face = best(detect_faces(str(tilted_path), LIMITS))
    upright_face = best(detect_faces(str(upright_path), LIMITS))
    # The detector sees the tilt: turned 20° counter-clockwise, the right eye is higher.
    assert eye_slope(tilted_face) < -0.2

    crops = [
        aligned_crop(str(p), f, 256, LIMITS, fmt=OutputFormat.PNG)
        for p, f in ((tilted_path, tilted_face), (upright_path, upright_face))
    ]

    # In the crop, a fresh detection finds the eyes level...
    again = best(detect_faces(str(_save(tmp_path, decoded(crops[0]), "crop.png")), LIMITS))
    assert abs(eye_slope(again)) < 0.04
    # ...and both crops show the same face in the same place.
    assert _correlation(decoded(crops[0]), decoded(crops[1])) > 0.9


def test_eyes_land_on_the_template(tmp_path: Path) -> None:
    # Two dots for eyes on a large canvas, 600 px apart and tilted, so the crop is shrunk
    # on load, rotated and scaled; with margin 0 they land on ArcFace's template.
    pixels = np.zeros((3000, 4000, 3), np.uint8)
    left, right = (1500.0, 1600.0), (1500.0 + 600 * math.cos(0.5), 1600.0 + 600 * math.sin(0.5))
    for x, y in (left, right):
        pixels[round(y) - 4 : round(y) + 5, round(x) - 4 : round(x) + 5] = 255
    path = _save(tmp_path, Image.fromarray(pixels), "dots.png")
    face = Face((1400, 1500, 700, 700), 1.0, left, right)

    crop = aligned_crop(str(path), face, 112, LIMITS, fmt=OutputFormat.PNG, margin=0)

    grey = np.asarray(decoded(crop).convert("L")).astype(float)
    for half, expected in ((slice(0, 56), (38.3, 51.6)), (slice(56, 112), (73.5, 51.5))):
        weights = grey[:, half]
        ys, xs = np.mgrid[0 : weights.shape[0], half]
        centre = ((xs * weights).sum() / weights.sum(), (ys * weights).sum() / weights.sum())
        assert math.dist(centre, expected) < 1.0, (centre, expected)


@pytest.mark.parametrize(
    ("size", "fmt"),
    [(32, OutputFormat.JPEG), (150, OutputFormat.WEBP), (1024, OutputFormat.PNG)],
)
def test_crop_is_exactly_size_by_size_without_metadata(
    photo: Path, size: int, fmt: OutputFormat
) -> None:
    face = best(detect_faces(str(photo), LIMITS))

    rendered = aligned_crop(str(photo), face, size, LIMITS, fmt=fmt)

    assert (rendered.width, rendered.height, rendered.format) == (size, size, fmt)
    image = decoded(rendered)
    assert image.mode == "RGB"
    assert "exif" not in image.info
    assert "icc_profile" not in image.info


@pytest.mark.parametrize("size", [0, 31, 1025, 4096])
def test_bad_size_is_refused(photo: Path, size: int) -> None:
    face = Face(FACE_BOX, 0.9, (203.5, 102.0), (246.5, 104.5))

    with pytest.raises(ValueError, match=r"size must be 32\.\.1024"):
        aligned_crop(str(photo), face, size, LIMITS)


def test_bad_margin_and_coincident_eyes_are_refused(photo: Path) -> None:
    face = Face(FACE_BOX, 0.9, (203.5, 102.0), (246.5, 104.5))
    blind = Face(FACE_BOX, 0.9, (203.5, 102.0), (203.5, 102.0))

    with pytest.raises(ValueError, match="margin"):
        aligned_crop(str(photo), face, 64, LIMITS, margin=-0.1)
    with pytest.raises(ValueError, match="two distinct points"):
        aligned_crop(str(photo), blind, 64, LIMITS)


def test_non_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(b"<html>not an image</html>")

    with pytest.raises(UnsupportedImage):
        detect_faces(str(path), LIMITS)


def test_face_round_trips_through_json_and_pickle() -> None:
    face = Face((1, 2, 30, 40), 0.75, (10.5, 12.25), (20.0, 12.0))

    assert Face.from_dict(json.loads(json.dumps(face.to_dict()))) == face
    assert _through_pickle(face) == face


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"box": [1, 2, 3], "confidence": 1, "left_eye": [0, 0], "right_eye": [1, 1]},
        {"box": [1, 2, -3, 4], "confidence": 1, "left_eye": [0, 0], "right_eye": [1, 1]},
        {"box": [1, 2, 3, 4], "confidence": "nan", "left_eye": [0, 0], "right_eye": [1, 1]},
    ],
)
def test_face_from_bad_dict_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not a stored face"):
        Face.from_dict(data)


def _save(folder: Path, image: Image.Image, name: str = "copy.png") -> Path:
    path = folder / name
    image.save(path)
    return path


def _correlation(first: Image.Image, second: Image.Image) -> float:
    # The centre only: the black fill of the corners differs with the source's rotation.
    a = np.asarray(first.convert("L"), dtype=float)[64:192, 64:192].ravel()
    b = np.asarray(second.convert("L"), dtype=float)[64:192, 64:192].ravel()
    return float(np.corrcoef(a, b)[0, 1])


async def test_runs_in_the_process_pool(pool: ImagingPool, photo: Path) -> None:
    faces = await pool.run(detect_faces, str(photo), LIMITS)
    face = best(faces)

    crop = await pool.run(aligned_crop, str(photo), face, 96, LIMITS)

    assert face == best(detect_faces(str(photo), LIMITS))
    assert decoded(crop).size == (96, 96)


def _through_pickle(value: object) -> object:
    # Our own objects, as the process pool sends them: pickle is the point here.
    return pickle.loads(pickle.dumps(value))  # noqa: S301
