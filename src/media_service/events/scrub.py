"""Forgetting stored messages that mention something, for the erasure of a person.

The event machinery keeps copies of what it carried: published ``outbox`` rows (for
inspection), ``dead_letters`` (for operators), ``handled_events`` (ids that may embed a
file id, such as ``preprocess-file_…``) and each bus's own store (the in-process bus's
``bus_deliveries``, NATS streams). Every one is searched for *mentions*: exact substrings
of the stored JSON. A message that also contains the *spare* string (the erasure's own id,
carried by the ``file.deleted`` events it publishes) is kept: it must still reach its
consumers, and says only that a file is gone.

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
from sqlalchemy import ColumnElement, LargeBinary, Table, Text, delete, false, func, or_
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.events.models import DeadLetterRecord, HandledEvent, OutboxMessage

TERMS_PER_STATEMENT = 50  # a LIKE per term: keep statements of a reasonable size
# Tables whose ``payload`` holds a message, and the handled-event records.
_PAYLOAD_TABLES = (cast(Table, OutboxMessage.__table__), cast(Table, DeadLetterRecord.__table__))
_HANDLED = cast(Table, HandledEvent.__table__)


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


async def forget_history(session: AsyncSession, terms: Sequence[str], *, spare: str) -> int:
    """Delete outbox rows, dead letters and handled-event records that mention any of
    ``terms`` (except messages that also contain ``spare``), in the caller's transaction;
    how many rows went."""
    dialect = session.get_bind().dialect.name
    spelled = spellings(terms)
    spared = spellings([spare])
    total = 0
    for part in chunks(spelled):
        for table in _PAYLOAD_TABLES:
            payload = table.c.payload
            result = await session.execute(
                delete(table).where(
                    mentions(payload, part, dialect), ~mentions(payload, spared, dialect)
                )
            )
            total += int(result.rowcount)  # type: ignore[attr-defined]
        handled = await session.execute(
            delete(_HANDLED).where(mentions(_HANDLED.c.event_id, part, dialect))
        )
        total += int(handled.rowcount)  # type: ignore[attr-defined]
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
