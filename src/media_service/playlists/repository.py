"""SQL of the playlists domain: playlists, their items, the smart-rule generation, and the
reads of photos (``photo_metadata`` joined to ``media_files``) that fill playlists."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    String,
    Table,
    bindparam,
    delete,
    exists,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import UnaryExpression

from media_service.db.base import UTCDateTime, utcnow
from media_service.db.uow import conflict_insert
from media_service.media.models import FileType, MediaFile
from media_service.metadata.models import PhotoMetadata
from media_service.playlists.models import Playlist, PlaylistItem, PlaylistType, SmartRuleGeneration

Condition = ColumnElement[bool]
_ITEMS = cast(Table, PlaylistItem.__table__)
_GENERATIONS = cast(Table, SmartRuleGeneration.__table__)
_CHUNK = 1000  # ids per IN list (asyncpg takes at most 32767 parameters)
_NO_SYNC = {"synchronize_session": False}


class PlaylistRepository:
    """Reads and writes inside the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    # -- playlists -----------------------------------------------------------------------------

    async def add(self, playlist: Playlist) -> Playlist:
        self.session.add(playlist)
        await self.session.flush()
        return playlist

    async def get(self, playlist_id: str, *, for_update: bool = False) -> Playlist | None:
        """The playlist; ``for_update`` locks its row until the commit (PostgreSQL), so that
        changes to one playlist's items happen one at a time."""
        return await self.session.get(Playlist, playlist_id, with_for_update=for_update or None)

    async def get_many(self, playlist_ids: Iterable[str]) -> list[Playlist]:
        found: list[Playlist] = []
        for chunk in _chunks(sorted(set(playlist_ids))):
            statement = select(Playlist).where(Playlist.playlist_id.in_(chunk))
            found += (await self.session.execute(statement)).scalars().all()
        return found

    async def delete(self, playlist: Playlist) -> None:
        # Items go with it (ON DELETE CASCADE).
        await self.session.execute(
            delete(Playlist).where(Playlist.playlist_id == playlist.playlist_id)
        )

    async def page(
        self,
        readable: Condition,
        playlist_type: PlaylistType | None,
        before: str | None,
        limit: int,
    ) -> Sequence[Playlist]:
        """Up to ``limit`` readable playlists, newest first, older than ``before``."""
        statement = select(Playlist).where(readable)
        if playlist_type is not None:
            statement = statement.where(Playlist.playlist_type == playlist_type)
        if before is not None:
            statement = statement.where(Playlist.playlist_id < before)
        statement = statement.order_by(Playlist.playlist_id.desc()).limit(limit)
        return (await self.session.execute(statement)).scalars().all()

    async def owned_by(self, organization_id: str, user_id: str) -> Sequence[Playlist]:
        """Every playlist of one owner, oldest first (``idx_playlists_user_id``)."""
        statement = (
            select(Playlist)
            .where(Playlist.organization_id == organization_id, Playlist.user_id == user_id)
            .order_by(Playlist.playlist_id)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def items(self, playlist_id: str) -> Sequence[PlaylistItem]:
        """Every item row of a playlist (visible or not), in position order."""
        statement = (
            select(PlaylistItem)
            .where(PlaylistItem.playlist_id == playlist_id)
            .order_by(PlaylistItem.position, PlaylistItem.file_id)
        )
        return (await self.session.execute(statement)).scalars().all()

    # -- the smart-rule generation of an organization -------------------------------------------

    async def bump_generation(self, organization_id: str) -> None:
        """Move the organization's generation on, holding its row until the commit: call it
        before reading photos to fill a smart playlist (see smart.py)."""
        statement = conflict_insert(self.session, _GENERATIONS).values(
            organization_id=organization_id, generation=1
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["organization_id"],
                set_={"generation": _GENERATIONS.c.generation + 1},
            )
        )

    async def generation(self, organization_id: str) -> int:
        """The organization's generation, share-locked until the commit (PostgreSQL): a
        change to its smart playlists waits for this transaction, and this one for a change
        under way (the insert waits for one that is creating the row)."""
        statement = (
            select(_GENERATIONS.c.generation)
            .where(_GENERATIONS.c.organization_id == organization_id)
            .with_for_update(read=True)
        )
        found = await self.session.scalar(statement)
        if found is None:  # no row yet, or one being created: wait for that one
            insert = conflict_insert(self.session, _GENERATIONS).values(
                organization_id=organization_id, generation=0
            )
            await self.session.execute(insert.on_conflict_do_nothing())
            found = await self.session.scalar(statement)
        return int(found or 0)

    async def smart_versions(self, organization_id: str) -> dict[str, datetime]:
        """Each smart playlist of the organization and when it last changed."""
        statement = select(Playlist.playlist_id, Playlist.updated_at).where(
            Playlist.organization_id == organization_id,
            Playlist.playlist_type == PlaylistType.SMART,
        )
        return {row[0]: row[1] for row in await self.session.execute(statement)}

    async def smart_rows(
        self, organization_id: str, playlist_ids: Sequence[str] | None
    ) -> list[Row[Any]]:
        """What a smart rule is made of, for the given playlists (all when None)."""
        columns = (
            Playlist.playlist_id,
            Playlist.user_id,
            Playlist.organization_id,
            Playlist.owner_roles,
            Playlist.smart_criteria,
            Playlist.updated_at,
        )
        base = select(*columns).where(
            Playlist.organization_id == organization_id,
            Playlist.playlist_type == PlaylistType.SMART,
        )
        if playlist_ids is None:
            return list((await self.session.execute(base)).all())
        rows: list[Row[Any]] = []
        for chunk in _chunks(playlist_ids):
            found = await self.session.execute(base.where(Playlist.playlist_id.in_(chunk)))
            rows += found.all()
        return rows

    # -- items -----------------------------------------------------------------------------------

    async def counts(self, playlist_ids: Sequence[str], visible: Condition) -> dict[str, int]:
        """Items per playlist whose file exists and satisfies ``visible``."""
        counts = dict.fromkeys(playlist_ids, 0)
        for chunk in _chunks(playlist_ids):
            statement = (
                select(PlaylistItem.playlist_id, func.count())
                .join(MediaFile, MediaFile.file_id == PlaylistItem.file_id)
                .where(PlaylistItem.playlist_id.in_(chunk), visible)
                .group_by(PlaylistItem.playlist_id)
            )
            counts.update({row[0]: int(row[1]) for row in await self.session.execute(statement)})
        return counts

    async def positional_page(
        self, playlist_id: str, visible: Condition, after: tuple[int, str] | None, limit: int
    ) -> Sequence[PlaylistItem]:
        """Items in position order (then file id), after ``after``."""
        statement = (
            select(PlaylistItem)
            .join(MediaFile, MediaFile.file_id == PlaylistItem.file_id)
            .where(PlaylistItem.playlist_id == playlist_id, visible)
            .order_by(PlaylistItem.position, PlaylistItem.file_id)
            .limit(limit)
        )
        if after is not None:
            statement = statement.where(
                tuple_(PlaylistItem.position, PlaylistItem.file_id) > tuple_(*after)
            )
        return (await self.session.execute(statement)).scalars().all()

    async def sorted_page(
        self,
        playlist_id: str,
        visible: Condition,
        order: Sequence[UnaryExpression[Any]],
        after: Condition | None,
        limit: int,
    ) -> list[tuple[PlaylistItem, PhotoMetadata, bool]]:
        """Items with their photo's metadata and ``processed``, in ``order`` (a smart
        playlist's criteria sort), after the keyset condition ``after``."""
        statement = (
            select(PlaylistItem, PhotoMetadata, MediaFile.processed)
            .join(PhotoMetadata, PhotoMetadata.file_id == PlaylistItem.file_id)
            .join(MediaFile, MediaFile.file_id == PlaylistItem.file_id)
            .where(PlaylistItem.playlist_id == playlist_id, visible)
            .order_by(*order)
            .limit(limit)
        )
        if after is not None:
            statement = statement.where(after)
        rows = await self.session.execute(statement)
        return [(row[0], row[1], bool(row[2])) for row in rows.all()]

    async def sorted_ids(
        self,
        playlist_id: str,
        visible: Condition,
        order: Sequence[UnaryExpression[Any]],
        limit: int,
    ) -> list[str]:
        """The first ``limit`` visible items' file ids in ``order``."""
        statement = (
            select(PlaylistItem.file_id)
            .join(PhotoMetadata, PhotoMetadata.file_id == PlaylistItem.file_id)
            .join(MediaFile, MediaFile.file_id == PlaylistItem.file_id)
            .where(PlaylistItem.playlist_id == playlist_id, visible)
            .order_by(*order)
            .limit(limit)
        )
        return list((await self.session.execute(statement)).scalars().all())

    async def visible_item_ids(self, playlist_id: str, visible: Condition) -> list[str]:
        """Every visible item's file id, in position order."""
        statement = (
            select(PlaylistItem.file_id)
            .join(MediaFile, MediaFile.file_id == PlaylistItem.file_id)
            .where(PlaylistItem.playlist_id == playlist_id, visible)
            .order_by(PlaylistItem.position, PlaylistItem.file_id)
        )
        return list((await self.session.execute(statement)).scalars().all())

    async def item_ids(self, playlist_id: str) -> list[str]:
        """Every item's file id (visible or not), in position order."""
        statement = (
            select(PlaylistItem.file_id)
            .where(PlaylistItem.playlist_id == playlist_id)
            .order_by(PlaylistItem.position, PlaylistItem.file_id)
        )
        return list((await self.session.execute(statement)).scalars().all())

    async def item_count(self, playlist_id: str) -> int:
        statement = select(func.count()).where(PlaylistItem.playlist_id == playlist_id)
        return int(await self.session.scalar(statement) or 0)

    async def max_position(self, playlist_id: str) -> int:
        """The last position in use (-1 when empty)."""
        statement = select(func.max(PlaylistItem.position)).where(
            PlaylistItem.playlist_id == playlist_id
        )
        value = await self.session.scalar(statement)
        return -1 if value is None else int(value)

    async def insert_items(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert items (``playlist_id``, ``file_id``, ``position``, ``reason``); one that is
        already there stays as it is."""
        if not rows:
            return
        now = utcnow()
        values = [{"reason": None, "position": 0, "added_at": now, **row} for row in rows]
        statement = conflict_insert(self.session, _ITEMS).on_conflict_do_nothing(
            index_elements=["playlist_id", "file_id"]
        )
        await self.session.execute(statement, values)

    async def delete_item(self, playlist_id: str, file_id: str) -> bool:
        statement = delete(PlaylistItem).where(
            PlaylistItem.playlist_id == playlist_id, PlaylistItem.file_id == file_id
        )
        result = await self.session.execute(statement.execution_options(**_NO_SYNC))
        return bool(getattr(result, "rowcount", 0))

    async def delete_items(self, playlist_id: str, file_ids: Sequence[str]) -> None:
        for chunk in _chunks(file_ids):
            statement = delete(PlaylistItem).where(
                PlaylistItem.playlist_id == playlist_id, PlaylistItem.file_id.in_(chunk)
            )
            await self.session.execute(statement.execution_options(**_NO_SYNC))

    async def delete_file_from(self, playlist_ids: Sequence[str], file_id: str) -> None:
        for chunk in _chunks(playlist_ids):
            statement = delete(PlaylistItem).where(
                PlaylistItem.file_id == file_id, PlaylistItem.playlist_id.in_(chunk)
            )
            await self.session.execute(statement.execution_options(**_NO_SYNC))

    async def delete_file_everywhere(self, file_id: str) -> list[str]:
        """Remove the file from every playlist; the playlists it was in."""
        statement = (
            delete(PlaylistItem)
            .where(PlaylistItem.file_id == file_id)
            .returning(PlaylistItem.playlist_id)
        )
        result = await self.session.execute(statement.execution_options(**_NO_SYNC))
        return sorted(set(result.scalars().all()))

    async def clear(self, playlist_id: str) -> None:
        statement = delete(PlaylistItem).where(PlaylistItem.playlist_id == playlist_id)
        await self.session.execute(statement.execution_options(**_NO_SYNC))

    async def set_positions(self, playlist_id: str, file_ids: Sequence[str], start: int) -> None:
        """Number ``file_ids`` from ``start`` in the given order."""
        if not file_ids:
            return
        statement = (
            update(_ITEMS)
            .where(
                _ITEMS.c.playlist_id == playlist_id,
                _ITEMS.c.file_id == bindparam("file", type_=String()),
            )
            .values(position=bindparam("pos", type_=Integer()))
        )
        params = [{"file": fid, "pos": n} for n, fid in enumerate(file_ids, start=start)]
        await self.session.execute(statement, params)

    async def smart_memberships(self, file_id: str) -> set[str]:
        """The smart playlists the file is in now."""
        statement = (
            select(PlaylistItem.playlist_id)
            .join(Playlist, Playlist.playlist_id == PlaylistItem.playlist_id)
            .where(PlaylistItem.file_id == file_id, Playlist.playlist_type == PlaylistType.SMART)
        )
        return set((await self.session.execute(statement)).scalars().all())

    async def present(self, playlist_id: str, file_ids: Sequence[str]) -> set[str]:
        """Which of ``file_ids`` are in the playlist already."""
        found: set[str] = set()
        for chunk in _chunks(file_ids):
            statement = select(PlaylistItem.file_id).where(
                PlaylistItem.playlist_id == playlist_id, PlaylistItem.file_id.in_(chunk)
            )
            found |= set((await self.session.execute(statement)).scalars().all())
        return found

    # -- photos: the fill of smart and curated playlists -------------------------------------------

    async def photos(self, file_ids: Sequence[str], clauses: Sequence[Condition]) -> set[str]:
        """Which of ``file_ids`` are photos (images) that satisfy every clause."""
        found: set[str] = set()
        for chunk in _chunks(file_ids):
            statement = select(MediaFile.file_id).where(
                MediaFile.file_id.in_(chunk), MediaFile.file_type == FileType.IMAGE, *clauses
            )
            found |= set((await self.session.execute(statement)).scalars().all())
        return found

    async def metadata_for_update(self, file_id: str) -> PhotoMetadata | None:
        """The photo's metadata row, locked until the commit (PostgreSQL): two checks of the
        same photo run one after the other, each on the photo's latest metadata."""
        statement = select(PhotoMetadata).where(PhotoMetadata.file_id == file_id).with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def matching(self, conditions: Sequence[Condition]) -> set[str]:
        """The file ids of every photo that meets ``conditions``."""
        statement = (
            select(PhotoMetadata.file_id)
            .join(MediaFile, MediaFile.file_id == PhotoMetadata.file_id)
            .where(*conditions)
        )
        return set((await self.session.execute(statement)).scalars().all())

    async def fill(self, playlist_id: str, conditions: Sequence[Condition]) -> int:
        """Add every photo that meets ``conditions`` and is not in the playlist yet, in one
        INSERT … SELECT; how many were added."""
        absent = ~exists().where(
            PlaylistItem.playlist_id == playlist_id, PlaylistItem.file_id == PhotoMetadata.file_id
        )
        chosen = (
            select(
                literal(playlist_id, String()),
                PhotoMetadata.file_id,
                literal(0, Integer()),
                literal(utcnow(), UTCDateTime()),
            )
            .join(MediaFile, MediaFile.file_id == PhotoMetadata.file_id)
            .where(*conditions, absent)
        )
        statement = _ITEMS.insert().from_select(
            ["playlist_id", "file_id", "position", "added_at"], chosen
        )
        result = await self.session.execute(statement)
        return int(getattr(result, "rowcount", 0) or 0)

    async def candidates(self, conditions: Sequence[Condition], limit: int) -> Sequence[Any]:
        """The best ``limit`` photos meeting ``conditions`` by quality (then file id), with
        what curation looks at."""
        statement = (
            select(
                PhotoMetadata.file_id,
                PhotoMetadata.quality_score,
                PhotoMetadata.perceptual_hash,
                PhotoMetadata.photo_taken_at,
                PhotoMetadata.location_name,
                PhotoMetadata.latitude,
                PhotoMetadata.longitude,
                PhotoMetadata.face_count,
            )
            .join(MediaFile, MediaFile.file_id == PhotoMetadata.file_id)
            .where(*conditions)
            .order_by(PhotoMetadata.quality_score.desc().nulls_last(), PhotoMetadata.file_id)
            .limit(limit)
        )
        return (await self.session.execute(statement)).all()


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]
