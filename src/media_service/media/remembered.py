"""What a process remembers of a file for a second (``state.recent_files``), by key, and how
a change makes it forget.

The renditions path asks for one photo's record many times a second (frames, pages), so it
keeps the record (key: the file id) and what a rendition of it serves (key:
:func:`served_key`, a view of the current or a numbered version) for a second. Every key of
a file starts with its id, so a change forgets them all at once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from media_service.db.uow import after_commit
from media_service.recent import RecentValues


def served_key(photo_id: str, number: int | None) -> str:
    """The key of what a rendition of ``photo_id`` serves: its current version (``None``)
    or version ``number``."""
    return f"{photo_id}@{'current' if number is None else number}"


def forget_file_after_commit(
    session: AsyncSession, recent: RecentValues[Any], file_id: str
) -> None:
    """Once ``session`` commits, drop everything this process remembers of ``file_id`` (its
    record and what its renditions serve), so a change or a delete shows at once here;
    other processes see it within the second."""

    async def forget() -> None:
        recent.forget(file_id)
        recent.forget_prefix(f"{file_id}@")

    after_commit(session, forget)
