"""Playlists and their photos as the API shows them: bodies, pages, cursors, reasons."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from media_service.errors import Unprocessable
from media_service.ids import is_valid_id
from media_service.metadata import compiler
from media_service.metadata.criteria import Criteria, decode_cursor
from media_service.playlists.content import PlaylistContent
from media_service.playlists.explain import explain
from media_service.playlists.models import Playlist, PlaylistType
from media_service.playlists.repository import PlaylistRepository
from media_service.playlists.schemas import (
    MAX_PHOTO_IDS_SHOWN,
    PlaylistItemOut,
    PlaylistItemPage,
    PlaylistOut,
    PlaylistSummary,
)

# Cursors say which kind of order they continue: by position, or by a smart sort.
_POSITIONAL, _SORTED = "p.", "s."
_MAX_CURSOR = 512


def present(playlist: Playlist, photo_count: int) -> PlaylistSummary:
    """``playlist`` as listed."""
    curation = playlist.curation or {}
    curated_at = curation.get("curated_at")
    return PlaylistSummary(
        playlist_id=playlist.playlist_id,
        name=playlist.name,
        description=playlist.description,
        user_id=playlist.user_id,
        organization_id=playlist.organization_id,
        playlist_type=playlist.playlist_type.value,
        shared=playlist.shared,
        smart_criteria=playlist.smart_criteria,
        curation=curation.get("goal"),
        curated_at=datetime.fromisoformat(curated_at) if curated_at else None,
        photo_count=photo_count,
        shuffle=playlist.shuffle,
        loop=playlist.loop,
        transition_duration=playlist.transition_duration,
        created_at=playlist.created_at,
        updated_at=playlist.updated_at,
    )


class ItemReader:
    """Reads a playlist's photos in playing order, as its owner may see them."""

    def __init__(self, repository: PlaylistRepository, content: PlaylistContent) -> None:
        self.repository = repository
        self.content = content

    async def out(self, playlist: Playlist) -> PlaylistOut:
        """The playlist with its count and first photos."""
        visible = self.content.visible(playlist)
        if playlist.playlist_type is PlaylistType.SMART:
            order = compiler.order_by(_criteria(playlist).sort)
            ids = await self.repository.sorted_ids(
                playlist.playlist_id, visible, order, MAX_PHOTO_IDS_SHOWN
            )
        else:
            items = await self.repository.positional_page(
                playlist.playlist_id, visible, None, MAX_PHOTO_IDS_SHOWN
            )
            ids = [item.file_id for item in items]
        counts = await self.content.counts([playlist])
        summary = present(playlist, counts.get(playlist.playlist_id, 0))
        return PlaylistOut(**summary.model_dump(), photo_ids=ids)

    async def page(self, playlist: Playlist, cursor: str | None, limit: int) -> PlaylistItemPage:
        """A page of photos after ``cursor``, each with its reason."""
        if playlist.playlist_type is PlaylistType.SMART:
            return await self._sorted(playlist, cursor, limit)
        return await self._positional(playlist, cursor, limit)

    async def _sorted(self, playlist: Playlist, cursor: str | None, limit: int) -> PlaylistItemPage:
        criteria = _criteria(playlist)
        after = None
        if cursor is not None:
            raw = _body(cursor, _SORTED)
            try:
                # Checked here first: a file id that is not ours (say, with a NUL) must
                # never reach SQL, where PostgreSQL would refuse it with an error.
                if not is_valid_id(decode_cursor(criteria.sort, raw).file_id, "file"):
                    raise ValueError("invalid cursor")
                after = compiler.cursor_where(criteria.sort, raw)
            except ValueError as exc:
                raise _bad_cursor(str(exc)) from None
        rows = await self.repository.sorted_page(
            playlist.playlist_id,
            self.content.visible(playlist),
            compiler.order_by(criteria.sort),
            after,
            limit + 1,
        )
        page = rows[:limit]
        items = [
            PlaylistItemOut(
                photo_id=item.file_id,
                position=None,
                added_at=item.added_at,
                reason=explain(criteria, row, processed),
            )
            for item, row, processed in page
        ]
        next_cursor = None
        if len(rows) > limit and page:
            next_cursor = _SORTED + compiler.encode_cursor(criteria.sort, page[-1][1])
        return PlaylistItemPage(items=items, next_cursor=next_cursor)

    async def _positional(
        self, playlist: Playlist, cursor: str | None, limit: int
    ) -> PlaylistItemPage:
        after = None if cursor is None else _decode_position(cursor)
        rows = list(
            await self.repository.positional_page(
                playlist.playlist_id, self.content.visible(playlist), after, limit + 1
            )
        )
        page = rows[:limit]
        items = [
            PlaylistItemOut(
                photo_id=item.file_id,
                position=item.position,
                added_at=item.added_at,
                reason=item.reason,
            )
            for item in page
        ]
        next_cursor = None
        if len(rows) > limit and page:
            next_cursor = _encode_position(page[-1].position, page[-1].file_id)
        return PlaylistItemPage(items=items, next_cursor=next_cursor)


def _criteria(playlist: Playlist) -> Criteria:
    return Criteria.model_validate(playlist.smart_criteria)


def _encode_position(position: int, file_id: str) -> str:
    body = json.dumps([position, file_id], separators=(",", ":")).encode()
    return _POSITIONAL + base64.urlsafe_b64encode(body).decode().rstrip("=")


def _decode_position(cursor: str) -> tuple[int, str]:
    raw = _body(cursor, _POSITIONAL)
    try:
        position, file_id = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, TypeError, binascii.Error):
        raise _bad_cursor("invalid cursor") from None
    if not isinstance(position, int) or not -(2**31) <= position < 2**31:
        raise _bad_cursor("invalid cursor")
    if not isinstance(file_id, str) or not is_valid_id(file_id, "file"):
        raise _bad_cursor("invalid cursor")
    return position, file_id


def _body(cursor: str, prefix: str) -> str:
    if len(cursor) > _MAX_CURSOR or not cursor.startswith(prefix):
        raise _bad_cursor("not a cursor of this playlist's order")
    return cursor[len(prefix) :]


def _bad_cursor(message: str) -> Unprocessable:
    return Unprocessable("invalid cursor", errors=[{"loc": ["query", "cursor"], "msg": message}])
