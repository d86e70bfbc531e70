"""Instants a client may send (query filters, previews): aware, and within 1970-2199.

Year 1 or 9999 with an offset overflows once moved to UTC (before it reaches the database,
where it would be a 500), or once a rotation slot is added; no photo, upload or schedule
of this service lies outside these years.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def sane_instant(value: datetime) -> datetime:
    """``value`` if it lies in [1970, 2200); a validation error otherwise."""
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be between {EARLIEST.year} and {LATEST.year - 1}")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(sane_instant)]
