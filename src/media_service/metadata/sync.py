"""Keep ``photo_metadata.user_id`` equal to its file's owner, in the same transaction.

The criteria query restates "owned by the caller" on ``photo_metadata`` itself so that its
``(organization_id, user_id, …)`` index can answer a member's query; that is only right
if the copy never lags. The media domain changes owners without knowing about metadata,
so this domain follows the change: after each flush that changed a file's owner, it
updates the copy with the same connection, before the commit.
"""

from __future__ import annotations

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, UOWTransaction

from media_service.media.models import MediaFile
from media_service.metadata.repository import owner_copy_update


@event.listens_for(Session, "after_flush")
def _follow_owner_changes(session: Session, _context: UOWTransaction) -> None:
    for file in [obj for obj in session.dirty if isinstance(obj, MediaFile)]:
        if inspect(file).attrs.owner_id.history.has_changes():
            _copy_owner(session, file)


def _copy_owner(session: Session, file: MediaFile) -> None:
    session.connection().execute(owner_copy_update(file.file_id, file.owner_id))
