"""The pseudonym that stands in for an erased person wherever a record must stay.

A keyed hash (HMAC-SHA256 with the service's secret) of the organization and the user id:
stable, so an admin who still knows the id can find the erasure report, and the rows the
person touched stay grouped; not reversible without the secret, and not guessable from a
list of likely ids without it either.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "erased_"
HEX_CHARACTERS = 24  # 96 bits: no collisions within an organization in practice
_CONTEXT = b"media-service pseudonym v1"


def pseudonym(secret: str, organization_id: str, user_id: str) -> str:
    """``erased_`` and the first 24 hex characters of HMAC-SHA256 over the organization
    and the user id, keyed with ``secret``."""
    # NUL separators: ("ab", "c") and ("a", "bc") must not give the same pseudonym.
    message = b"\0".join((_CONTEXT, organization_id.encode(), user_id.encode()))
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return PREFIX + digest[:HEX_CHARACTERS]


def is_pseudonym(value: str) -> bool:
    """Whether ``value`` has the shape of a pseudonym."""
    tail = value.removeprefix(PREFIX)
    return (
        value.startswith(PREFIX)
        and len(tail) == HEX_CHARACTERS
        and all(c in "0123456789abcdef" for c in tail)
    )
