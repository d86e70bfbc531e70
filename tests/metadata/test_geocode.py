"""Offline reverse geocoding against the shipped GeoNames places."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest

from media_service.metadata.geocode import Place, country_name, reverse_geocode


@pytest.mark.parametrize(
    ("latitude", "longitude", "city", "country_code", "country"),
    [
        (52.5163, 13.3777, "Berlin", "DE", "Germany"),  # Brandenburg Gate, in "Tiergarten"
        (-33.8568, 151.2153, "Sydney", "AU", "Australia"),  # Opera House, in "The Rocks"
        (-22.95, -43.21, "Rio de Janeiro", "BR", "Brazil"),
        (48.8584, 2.2945, "Paris", "FR", "France"),  # Eiffel Tower, nearer Neuilly's centre
        (64.1466, -21.9426, "Reykjavík", "IS", "Iceland"),  # names keep their accents
    ],
)
def test_known_landmarks(
    latitude: float, longitude: float, city: str, country_code: str, country: str
) -> None:
    place = reverse_geocode(latitude, longitude)

    assert place is not None
    assert (place.city, place.country_code, place.country) == (city, country_code, country)
    assert place.name.startswith(f"{city}, ") and place.name.endswith(f", {country}")
    assert 0 <= place.distance_km < 10


def test_a_town_next_to_a_city_keeps_its_own_name() -> None:
    place = reverse_geocode(48.8846, 2.2697)  # the centre of Neuilly-sur-Seine, 7 km from Paris's

    assert place is not None and place.city == "Neuilly-sur-Seine"
    assert place.name == "Neuilly-sur-Seine, Île-de-France, France"


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [(30.0, -40.0), (-45.0, -120.0), (0.0, 0.0)],  # mid-Atlantic, South Pacific, Null Island
)
def test_open_ocean_is_nowhere(latitude: float, longitude: float) -> None:
    assert reverse_geocode(latitude, longitude) is None


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [(91.0, 0.0), (-90.5, 10.0), (0.0, 181.0), (10.0, -180.1), (math.nan, 1.0), (1.0, math.inf)],
)
def test_invalid_coordinates(latitude: float, longitude: float) -> None:
    assert reverse_geocode(latitude, longitude) is None


def test_max_distance_is_respected() -> None:
    point = (52.40, 13.05)  # Potsdam's edge
    near = reverse_geocode(*point)

    assert near is not None and near.distance_km > 0.5
    assert reverse_geocode(*point, max_distance_km=near.distance_km / 2) is None


def test_distances_are_great_circle_kilometres_across_the_antimeridian() -> None:
    # Egvekinot (66.32321° N, 179.11838° W) seen from 179.9° E: 0.98° of longitude at 66°.
    place = reverse_geocode(66.32321, 179.9)

    assert place is not None and place.city == "Egvekinot"
    expected = 6371.0088 * math.radians(0.98162) * math.cos(math.radians(66.32321))
    assert place.distance_km == pytest.approx(expected, rel=0.01)


def test_name_skips_empty_and_repeated_parts() -> None:
    assert Place("Singapore", "Singapore", "SG", "Singapore", 1.0).name == "Singapore"
    assert Place("Rio de Janeiro", "Rio de Janeiro", "BR", "Brazil", 1).name == (
        "Rio de Janeiro, Brazil"
    )
    assert Place("Vaduz", None, "LI", "Liechtenstein", 1).name == "Vaduz, Liechtenstein"
    assert Place("Berlin", "State of Berlin", "DE", "Germany", 1).name == (
        "Berlin, State of Berlin, Germany"
    )


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("DE", "Germany"),
        ("KR", "South Korea"),
        ("TW", "Taiwan"),
        ("US", "United States"),
        ("RU", "Russia"),
        ("XK", "Kosovo"),
        ("ZZ", "ZZ"),
    ],
)
def test_country_names_are_the_short_english_ones(code: str, name: str) -> None:
    assert country_name(code) == name


def test_loads_lazily_once_and_prints_nothing() -> None:
    # A fresh interpreter, as in a worker process: importing builds nothing, the first call
    # builds the index, later calls reuse it, and nothing is written to stdout.
    script = textwrap.dedent(
        """
        import sys, time
        from media_service.metadata import geocode
        assert geocode._index.cache_info().currsize == 0
        start = time.perf_counter()
        first = geocode.reverse_geocode(52.5163, 13.3777)
        load = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(1000):
            geocode.reverse_geocode(-60 + i * 0.12, -170 + i * 0.34)
        each = (time.perf_counter() - start) / 1000
        assert geocode._index.cache_info().misses == 1
        print(f"first call {load:.2f} s, then {each * 1e6:.0f} us per call", file=sys.stderr)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )

    print(result.stderr.strip())  # shown with -s: the first call's load time, later speed
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
