"""Forgetting stored messages that mention a person, for the erasure of a person.

The event machinery keeps copies of what it carried: published ``outbox`` rows (for
inspection), ``dead_letters`` (for operators), ``handled_events`` (ids that may embed a
file id, such as ``preprocess-file_…``) and each bus's own store (the in-process bus's
``bus_deliveries``, NATS streams). Each is searched for :class:`Mentions`:

- the ids of what the person had (``file_…``, ``pl_…``, ``frame_…``): random and unique
  everywhere, so any occurrence counts, also inside a longer string (a job id, a URL);
- the person's user id: unique only inside an organization, possibly a prefix of another
  one (``u1`` of ``u12``), and possibly also a label or a class session's id, so it counts
  only as the whole value of a key that names a person (``"user_id": "u1"``, or
  ``"owner_id"`` unless the owner is a class session) in a message that names the
  person's organization, or names none (a malformed message kept as a dead letter).

A message that also contains the *spare* string (the erasure's own id, carried by the
``file.deleted`` events it publishes) is kept: it must still reach its consumers, and says
only that a file is gone.

Searches are ``LIKE`` on the payload as text, with ``%`` and ``_`` escaped, so they run the
same on SQLite and PostgreSQL. A term is looked for in every spelling JSON may give it
(``\\u00e9`` or ``é``, escaped quotes). On SQLite ``LIKE`` ignores ASCII case: a search
may forget a little more history than it has to, never less.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import orjson
from sqlalchemy import ColumnElement, LargeBinary, Table, Text, and_, delete, false, func, or_
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.events.models import DeadLetterRecord, HandledEvent, OutboxMessage

TERMS_PER_STATEMENT = 50  # a LIKE per term: keep statements of a reasonable size
# Tables whose ``payload`` holds a message, and the handled-event records.
_PAYLOAD_TABLES = (cast(Table, OutboxMessage.__table__), cast(Table, DeadLetterRecord.__table__))
_HANDLED = cast(Table, HandledEvent.__table__)


ORGANIZATION_KEY = '"organization_id"'
# A class session is not a person: its owner_id may equal a user's id.
CLASS_SESSION = '"ClassSession"'


class Mentions:
    """What counts as mentioning one person (see the module's docstring); the spellings
    are worked out once, since a scan checks every stored message against them."""

    def __init__(
        self, *, ids: Sequence[str], person: str, organization_id: str, spare: str
    ) -> None:
        self.ids = list(ids)
        self.person = person
        self.organization_id = organization_id
        self.spare = spare
        self._ids = spellings(ids)
        self._spare = spellings([spare])
        self._as_user = _as_value_of("user_id", person)  # the actor of an event
        self._as_owner = _as_value_of("owner_id", person)
        self._organization = quoted([organization_id])

    def found_in(self, data: bytes, headers: bytes = b"") -> bool:
        """Whether a message (its JSON bytes, and its headers) mentions the person."""
        if mentioned_in(data + headers, self._spare):
            return False
        if mentioned_in(data + headers, self._ids):
            return True
        named = mentioned_in(data, self._as_user) or (
            mentioned_in(data, self._as_owner) and not mentioned_in(data, [CLASS_SESSION])
        )
        return named and (
            mentioned_in(data, self._organization) or not mentioned_in(data, [ORGANIZATION_KEY])
        )

    def in_json(self, column: ColumnElement[Any], dialect: str) -> list[ColumnElement[bool]]:
        """SQL conditions, one per statement to run (each of a reasonable size), that
        together select the rows whose JSON ``column`` mentions the person."""
        spared = ~mentions(column, self._spare, dialect)
        organization = or_(
            mentions(column, self._organization, dialect),
            ~mentions(column, [ORGANIZATION_KEY], dialect),
        )
        named = or_(
            mentions(column, self._as_user, dialect),
            and_(
                mentions(column, self._as_owner, dialect),
                ~mentions(column, [CLASS_SESSION], dialect),
            ),
        )
        person = and_(named, organization)
        conditions = [and_(person, spared)]
        for part in chunks(self._ids):
            conditions.append(and_(mentions(column, part, dialect), spared))
        return conditions

    def in_ids(self, column: ColumnElement[Any], dialect: str) -> list[ColumnElement[bool]]:
        """SQL conditions selecting the rows whose ``column`` (an id, not JSON) embeds one
        of :attr:`ids` (a user id alone is no evidence: ``u1`` is in many ids)."""
        return [mentions(column, part, dialect) for part in chunks(self._ids)]


def _as_value_of(key: str, value: str) -> list[str]:
    """``"key": "value"`` in every spelling (orjson writes no space; json.dumps and
    PostgreSQL's JSONB one)."""
    return [f'"{key}":{gap}{spelled}' for gap in ("", " ") for spelled in quoted([value])]


def quoted(terms: Iterable[str]) -> list[str]:
    """Every way the terms can be written as whole JSON strings (quotes included)."""
    found: dict[str, None] = {}
    for term in terms:
        if term:
            found[json.dumps(term)] = None
            found[orjson.dumps(term).decode()] = None
    return list(found)


def spellings(terms: Iterable[str]) -> list[str]:
    """Every way the terms can appear inside a JSON document, without duplicates."""
    found: dict[str, None] = {}
    for term in terms:
        if term:
            found[json.dumps(term)[1:-1]] = None  # ASCII-only, as Python's json writes
            found[orjson.dumps(term)[1:-1].decode()] = None  # UTF-8, as orjson and JSONB
    return list(found)


def mentioned_in(data: bytes, spelled: Sequence[str]) -> bool:
    """Whether raw message bytes contain any of ``spelled`` (see :func:`spellings`)."""
    return any(term.encode() in data for term in spelled)


def mentions(
    column: ColumnElement[Any], spelled: Sequence[str], dialect: str
) -> ColumnElement[bool]:
    """SQL: ``column`` (JSON, text or bytes) contains any of ``spelled``."""
    if not spelled:
        return false()
    binary = isinstance(column.type, LargeBinary)
    if binary and dialect == "postgresql":
        # bytea as text must never fail on bytes that are not UTF-8 (dead letters keep
        # malformed messages): 'escape' form, with the terms written the same way.
        escaped: ColumnElement[str] = func.encode(column, "escape")
        return or_(*(escaped.contains(_pg_escape(term), autoescape=True) for term in spelled))
    text = sql_cast(column, Text)
    return or_(*(text.contains(term, autoescape=True) for term in spelled))


def chunks(values: Sequence[str], size: int = TERMS_PER_STATEMENT) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


async def forget_history(session: AsyncSession, mentions_: Mentions) -> int:
    """Delete outbox rows, dead letters and handled-event records that mention the person,
    in the caller's transaction; how many rows went."""
    dialect = session.get_bind().dialect.name
    total = 0
    for table in _PAYLOAD_TABLES:
        for condition in mentions_.in_json(table.c.payload, dialect):
            result = await session.execute(delete(table).where(condition))
            total += int(result.rowcount)  # type: ignore[attr-defined]
    for condition in mentions_.in_ids(_HANDLED.c.event_id, dialect):
        result = await session.execute(delete(_HANDLED).where(condition))
        total += int(result.rowcount)  # type: ignore[attr-defined]
    return total


def _pg_escape(term: str) -> str:
    """``term`` as PostgreSQL's ``encode(bytes, 'escape')`` writes its UTF-8 bytes: NUL and
    bytes with the high bit set as ``\\nnn`` (octal), backslashes doubled."""
    out = []
    for byte in term.encode():
        if byte == 0x5C:
            out.append("\\\\")
        elif byte == 0 or byte >= 0x80:
            out.append(f"\\{byte:03o}")
        else:
            out.append(chr(byte))
    return "".join(out)
