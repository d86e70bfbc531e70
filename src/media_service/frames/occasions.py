"""The days an EVENT_BASED schedule is for: date ranges, yearly dates, public holidays and
"on this day" memories. Pure: public holidays come from the ``holidays`` package's tables,
memories from the days the caller found photos for."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import holidays


class OccasionKind(enum.StrEnum):
    DATE_RANGE = "DATE_RANGE"  # every day from start_date to end_date, both included
    YEARLY = "YEARLY"  # one day each year (birthdays, anniversaries)
    HOLIDAYS = "HOLIDAYS"  # the public holidays of a country (and subdivision)
    ON_THIS_DAY = "ON_THIS_DAY"  # days on which photos were taken in earlier years


MonthDay = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Occasion:
    """One kind of day an event schedule is active on."""

    kind: OccasionKind
    start_date: date | None = None
    end_date: date | None = None
    month: int | None = None
    day: int | None = None
    country: str | None = None
    subdivision: str | None = None

    def matches(self, on: date, memories: frozenset[MonthDay]) -> bool:
        """Whether ``on`` (a local date) is one of this occasion's days."""
        if self.kind is OccasionKind.DATE_RANGE:
            assert self.start_date is not None and self.end_date is not None
            return self.start_date <= on <= self.end_date
        if self.kind is OccasionKind.YEARLY:
            return (on.month, on.day) == yearly_day(self.month or 1, self.day or 1, on.year)
        if self.kind is OccasionKind.HOLIDAYS:
            return on in public_holidays(self.country or "", self.subdivision, on.year)
        return (on.month, on.day) in memories


def yearly_day(month: int, day: int, year: int) -> MonthDay:
    """The day a yearly date falls on in ``year``: 29 February is the 28th in other years."""
    if (month, day) == (2, 29) and not _is_leap(year):
        return (2, 28)
    return (month, day)


@lru_cache(maxsize=512)
def public_holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    """The public holidays of ``country`` (ISO 3166-1 alpha-2) in ``year``."""
    table = holidays.country_holidays(country, subdiv=subdivision, years=year)
    return frozenset(table.keys())


def supported_subdivisions(country: str) -> tuple[str, ...] | None:
    """The subdivisions ``country`` knows, or ``None`` when the country is unknown."""
    codes = holidays.list_supported_countries()
    return None if country not in codes else tuple(codes[country])


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
