"""Every column that can name a person is dealt with by the erasure of a person.

A new table with a user column fails here until it is classified: deleted with what the
person owns, pseudonymised (``privacy/references.py``), or forgotten by a domain's
``forget_person`` listed in ``privacy/forgetters.py``.
"""

from __future__ import annotations

import re

from media_service.db.models import metadata
from media_service.privacy.forgetters import FORGETTERS
from media_service.privacy.references import PSEUDONYMISED

PERSON_COLUMN = re.compile(r"(^|_)(user|owner|principal|actor|person)_id$|_by$")

DELETED_WITH_THE_PERSON = {
    ("media_files", "owner_id"),  # their files (a class session's files are not a person's)
    ("frames", "user_id"),
    ("playlists", "user_id"),
}
FORGOTTEN_BY = {
    ("idempotency_keys", "principal_id"): "idempotency_keys",
    ("audit_events", "actor_id"): "audit_rows",
    ("audit_events", "owner_id"): "audit_rows",
    ("biometric_consent", "owner_id"): "biometric_rows",
    ("biometric_consent", "updated_by"): "biometric_rows",
}
# The erasure's own record: the person's id while it runs, their pseudonym afterwards
# (who asked for it is pseudonymised with the references, if they are erased later).
KEPT_BY_THE_ERASURE = {("erasures", "user_id")}


def test_every_column_naming_a_person_is_erased_or_pseudonymised() -> None:
    pseudonymised = {(column.table.name, column.name) for column in PSEUDONYMISED}
    handled = DELETED_WITH_THE_PERSON | pseudonymised | set(FORGOTTEN_BY) | KEPT_BY_THE_ERASURE
    person_columns = {
        (table.name, column.name)
        for table in metadata.sorted_tables
        for column in table.columns
        if PERSON_COLUMN.search(column.name)
    }
    assert person_columns - handled == set(), "classify these columns for the erasure"
    assert set(FORGOTTEN_BY.values()) <= set(FORGETTERS)
    assert pseudonymised.isdisjoint(DELETED_WITH_THE_PERSON)
