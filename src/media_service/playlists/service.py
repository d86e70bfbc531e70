"""Rules of the playlists domain as the API sees them: create, read, list, change and
delete playlists, and the photos of manual ones.

Works inside the request's unit of work and never commits. Every change to what a playlist
plays (its photos, their order, its settings) records ``media.playlist.updated`` in the
same transaction; a request that changes nothing records nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Principal
from media_service.db.base import utcnow
from media_service.errors import Conflict, Forbidden, NotFound, Unprocessable
from media_service.ids import is_valid_id, new_id
from media_service.metadata.criteria import Criteria
from media_service.playlists import policy
from media_service.playlists.content import PlaylistContent
from media_service.playlists.listing import ItemReader, present
from media_service.playlists.models import Playlist, PlaylistType
from media_service.playlists.repository import PlaylistRepository
from media_service.playlists.schemas import (
    MAX_MANUAL_PHOTOS,
    CurationGoal,
    PlaylistCreate,
    PlaylistItemOut,
    PlaylistItemPage,
    PlaylistOut,
    PlaylistPage,
    PlaylistSummary,
    PlaylistUpdate,
)
from media_service.state import ServiceState

PLAYLIST_QUERY = "playlist_query"  # the duration of reading a page of a playlist's photos
_SETTINGS = ("name", "description", "shared", "shuffle", "loop", "transition_duration")


class PlaylistService:
    """Playlists for the API."""

    def __init__(self, session: AsyncSession, state: ServiceState) -> None:
        self.state = state
        self.repository = PlaylistRepository(session)
        self.content = PlaylistContent(session, state)
        self.items = ItemReader(self.repository, self.content)

    # -- read ------------------------------------------------------------------------------------

    async def get(self, principal: Principal, playlist_id: str) -> PlaylistOut:
        """The playlist if ``principal`` may read it, with its first photos."""
        return await self.items.out(await self._readable(principal, playlist_id))

    async def list_playlists(
        self,
        principal: Principal,
        playlist_type: PlaylistType | None,
        cursor: str | None,
        limit: int,
    ) -> PlaylistPage:
        """The playlists ``principal`` may read, newest first, a page at a time."""
        if cursor is not None and not is_valid_id(cursor, "pl"):
            raise Unprocessable(
                "invalid cursor", errors=[{"loc": ["query", "cursor"], "msg": "not a cursor"}]
            )
        rows = list(
            await self.repository.page(
                policy.readable_clause(principal), playlist_type, cursor, limit + 1
            )
        )
        page = rows[:limit]
        counts = await self.content.counts(page)
        return PlaylistPage(
            items=[present(playlist, counts.get(playlist.playlist_id, 0)) for playlist in page],
            next_cursor=page[-1].playlist_id if len(rows) > limit and page else None,
        )

    async def photos(
        self, principal: Principal, playlist_id: str, cursor: str | None, limit: int
    ) -> PlaylistItemPage:
        """A page of the playlist's photos in playing order, each with why it is there."""
        with self.state.observations.timed(PLAYLIST_QUERY):
            playlist = await self._readable(principal, playlist_id)
            return await self.items.page(playlist, cursor, limit)

    async def owned_by_person(
        self, organization_id: str, user_id: str
    ) -> list[tuple[PlaylistSummary, list[PlaylistItemOut]]]:
        """Every playlist ``user_id`` owns with all its items (visible to them or not): for
        the export or the erasure of a person's own data (callers check who asks)."""
        owned = list(await self.repository.owned_by(organization_id, user_id))
        found = []
        for playlist in owned:
            rows = await self.repository.items(playlist.playlist_id)
            items = [
                PlaylistItemOut(
                    photo_id=row.file_id,
                    position=row.position,
                    added_at=row.added_at,
                    reason=row.reason,
                )
                for row in rows
            ]
            found.append((present(playlist, len(items)), items))
        return found

    # -- create, change, delete ------------------------------------------------------------------

    async def create(self, principal: Principal, body: PlaylistCreate) -> PlaylistOut:
        """A new playlist owned by ``principal``, filled according to its type."""
        if not policy.may_create(principal):
            raise Forbidden("only users create playlists")
        now = utcnow()
        playlist = Playlist(
            playlist_id=new_id("pl"),
            user_id=principal.subject,
            organization_id=principal.organization_id,
            owner_roles=policy.stored_roles(principal),
            playlist_type=body.playlist_type,
            smart_criteria=_criteria_document(body.smart_criteria),
            curation=_curation_document(body),
            created_at=now,
            updated_at=now,
            **{name: getattr(body, name) for name in _SETTINGS},
        )
        if playlist.playlist_type is PlaylistType.SMART:
            await self.repository.bump_generation(playlist.organization_id)
        await self.repository.add(playlist)
        if body.photo_ids:
            await self._append(principal, playlist, body.photo_ids)
        await self._fill(playlist)
        await self.content.announce([playlist])
        return await self.items.out(playlist)

    async def update(
        self, principal: Principal, playlist_id: str, body: PlaylistUpdate
    ) -> PlaylistOut:
        """Change the fields given; a smart playlist with new criteria (or an owner whose
        roles changed) is evaluated again, a curated one with a new goal curated again."""
        playlist = await self._writable(principal, playlist_id)
        _check_type(playlist, body)
        changed = _apply_settings(playlist, body)
        refill = _apply_content_rules(playlist, body)
        roles = policy.stored_roles(principal)
        if playlist.user_id == principal.subject and roles != playlist.owner_roles:
            # The owner's eyes changed: what the playlist may show changes with them.
            playlist.owner_roles = roles
            changed, refill = True, refill or _filled(playlist)
        if not (changed or refill):
            return await self.items.out(playlist)
        playlist.updated_at = utcnow()
        if refill and playlist.playlist_type is PlaylistType.SMART:
            # Its rule changes (a name or a setting does not): the cached rules reload.
            await self.repository.bump_generation(playlist.organization_id)
        if refill:
            await self._fill(playlist)
        await self.content.announce([playlist])
        return await self.items.out(playlist)

    async def refresh(self, principal: Principal, playlist_id: str) -> PlaylistOut:
        """Evaluate a smart playlist over all photos again, or curate a curated one again."""
        playlist = await self._writable(principal, playlist_id)
        if not _filled(playlist):
            raise Conflict("a manual playlist has nothing to refresh")
        if playlist.playlist_type is PlaylistType.SMART:
            await self.repository.bump_generation(playlist.organization_id)
        if await self._fill(playlist):
            await self.content.announce([playlist])
        return await self.items.out(playlist)

    async def delete(self, principal: Principal, playlist_id: str) -> None:
        """Delete the playlist and its items."""
        playlist = await self._writable(principal, playlist_id)
        if playlist.playlist_type is PlaylistType.SMART:
            await self.repository.bump_generation(playlist.organization_id)
        await self.repository.delete(playlist)

    # -- photos of manual playlists --------------------------------------------------------------

    async def add_photos(
        self, principal: Principal, playlist_id: str, photo_ids: list[str]
    ) -> PlaylistOut:
        """Append photos the caller (and the playlist's owner) may see."""
        playlist = await self._manual(principal, playlist_id)
        if await self._append(principal, playlist, photo_ids):
            await self.content.announce([playlist])
        return await self.items.out(playlist)

    async def remove_photo(self, principal: Principal, playlist_id: str, photo_id: str) -> None:
        """Take one photo out."""
        playlist = await self._manual(principal, playlist_id)
        valid = is_valid_id(photo_id, "file")
        if not valid or not await self.repository.delete_item(playlist.playlist_id, photo_id):
            raise NotFound(f"{photo_id[:60]!r} is not in this playlist")
        await self.content.announce([playlist])

    async def reorder(
        self, principal: Principal, playlist_id: str, photo_ids: list[str]
    ) -> PlaylistOut:
        """Put the photos in the given order: every photo of the playlist, once each."""
        playlist = await self._manual(principal, playlist_id)
        current = await self.repository.visible_item_ids(
            playlist.playlist_id, self.content.visible(playlist)
        )
        _check_permutation(current, photo_ids)
        if photo_ids != current:
            # Items the owner cannot see (any more) keep their order, after the rest.
            shown = set(current)
            hidden = [i for i in await self.repository.item_ids(playlist_id) if i not in shown]
            await self.repository.set_positions(playlist.playlist_id, [*photo_ids, *hidden], 0)
            await self.content.announce([playlist])
        return await self.items.out(playlist)

    # -- helpers ---------------------------------------------------------------------------------

    async def _readable(self, principal: Principal, playlist_id: str) -> Playlist:
        playlist = await self._find(playlist_id)
        if playlist is None or not policy.may_read(principal, playlist):
            raise NotFound(f"no playlist {playlist_id[:60]!r}")
        return playlist

    async def _writable(self, principal: Principal, playlist_id: str) -> Playlist:
        playlist = await self._find(playlist_id, for_update=True)
        if playlist is None or not policy.may_read(principal, playlist):
            raise NotFound(f"no playlist {playlist_id[:60]!r}")
        if not policy.may_write(principal, playlist):
            raise Forbidden("only the playlist's owner and admins may change it")
        return playlist

    async def _manual(self, principal: Principal, playlist_id: str) -> Playlist:
        playlist = await self._writable(principal, playlist_id)
        if playlist.playlist_type is not PlaylistType.MANUAL:
            raise Conflict(
                f"the photos of a {playlist.playlist_type.value} playlist are chosen by "
                "its criteria or curation, not by hand"
            )
        return playlist

    async def _find(self, playlist_id: str, *, for_update: bool = False) -> Playlist | None:
        if not is_valid_id(playlist_id, "pl"):
            return None  # never reaches SQL
        return await self.repository.get(playlist_id, for_update=for_update)

    async def _fill(self, playlist: Playlist) -> bool:
        if playlist.playlist_type is PlaylistType.SMART:
            return await self.content.refill_smart(playlist)
        if playlist.playlist_type is PlaylistType.AI_CURATED:
            return await self.content.curate(playlist)
        return False

    async def _append(self, principal: Principal, playlist: Playlist, photo_ids: list[str]) -> bool:
        """Append the photos not yet there; 422 naming any the caller or the owner cannot
        see. Whether any was added."""
        await self._check_visible(principal, playlist, photo_ids)
        wanted = list(dict.fromkeys(photo_ids))
        present = await self.repository.present(playlist.playlist_id, wanted)
        new = [photo_id for photo_id in wanted if photo_id not in present]
        if await self.repository.item_count(playlist.playlist_id) + len(new) > MAX_MANUAL_PHOTOS:
            raise Unprocessable(f"a manual playlist holds at most {MAX_MANUAL_PHOTOS} photos")
        start = await self.repository.max_position(playlist.playlist_id) + 1
        await self.repository.insert_items(
            [
                {"playlist_id": playlist.playlist_id, "file_id": photo_id, "position": n}
                for n, photo_id in enumerate(new, start=start)
            ]
        )
        return bool(new)

    async def _check_visible(
        self, principal: Principal, playlist: Playlist, photo_ids: list[str]
    ) -> None:
        media = self.content.media
        unique = list(dict.fromkeys(photo_ids))
        valid = [photo_id for photo_id in unique if is_valid_id(photo_id, "file")]
        seen = await self.repository.photos(valid, [media.readable_clause(principal)])
        errors = [
            _photo_error(photo_ids, photo_id, "no photo with this id that you can see")
            for photo_id in unique
            if photo_id not in seen
        ]
        if not errors and principal.subject != playlist.user_id:
            owner = policy.owner_of(playlist)
            shown = await self.repository.photos(valid, [media.readable_clause(owner)])
            errors = [
                _photo_error(photo_ids, photo_id, "the playlist's owner cannot see this photo")
                for photo_id in unique
                if photo_id not in shown
            ]
        if errors:
            raise Unprocessable("some photos cannot be added", errors=errors)


def _criteria_document(criteria: Criteria | None) -> dict[str, Any] | None:
    return None if criteria is None else criteria.model_dump(mode="json", exclude_none=True)


def _goal_document(goal: CurationGoal) -> dict[str, Any]:
    return goal.model_dump(mode="json", exclude_none=True)


def _curation_document(body: PlaylistCreate) -> dict[str, Any] | None:
    if body.playlist_type is not PlaylistType.AI_CURATED:
        return None
    return {"goal": _goal_document(body.curation or CurationGoal())}


def _filled(playlist: Playlist) -> bool:
    """Whether the service chooses the playlist's photos (smart and curated ones)."""
    return playlist.playlist_type is not PlaylistType.MANUAL


def _check_type(playlist: Playlist, body: PlaylistUpdate) -> None:
    kind = playlist.playlist_type
    if body.playlist_type is not None and body.playlist_type is not kind:
        raise _invalid("playlist_type", "the type of a playlist cannot change")
    if body.smart_criteria is not None and kind is not PlaylistType.SMART:
        raise _invalid("smart_criteria", "only SMART playlists have criteria")
    if body.curation is not None and kind is not PlaylistType.AI_CURATED:
        raise _invalid("curation", "only AI_CURATED playlists have a curation goal")


def _apply_settings(playlist: Playlist, body: PlaylistUpdate) -> bool:
    changed = False
    for name in _SETTINGS:
        if name in body.model_fields_set and getattr(playlist, name) != getattr(body, name):
            setattr(playlist, name, getattr(body, name))
            changed = True
    return changed


def _apply_content_rules(playlist: Playlist, body: PlaylistUpdate) -> bool:
    """New criteria or a new curation goal; whether the playlist must be filled again."""
    if body.smart_criteria is not None:
        document = _criteria_document(body.smart_criteria)
        if document != playlist.smart_criteria:
            playlist.smart_criteria = document
            return True
    if body.curation is not None:
        goal = _goal_document(body.curation)
        if goal != (playlist.curation or {}).get("goal"):
            playlist.curation = {**(playlist.curation or {}), "goal": goal}
            return True
    return False


def _check_permutation(current: list[str], wanted: list[str]) -> None:
    if len(wanted) == len(current) and set(wanted) == set(current):
        return
    missing = sorted(set(current) - set(wanted))[:20]
    unknown = sorted(set(wanted) - set(current))[:20]
    repeated = len(wanted) - len(set(wanted))
    raise Unprocessable(
        "photo_ids must list every photo of the playlist exactly once",
        errors=[
            {"loc": ["body", "photo_ids"], "msg": "not a permutation of the playlist's photos"}
        ],
        missing=missing,
        unknown=unknown,
        repeated=repeated,
    )


def _photo_error(photo_ids: list[str], photo_id: str, message: str) -> dict[str, Any]:
    return {"loc": ["body", "photo_ids", photo_ids.index(photo_id)], "msg": message,
            "photo_id": photo_id[:60]}  # fmt: skip


def _invalid(name: str, message: str) -> Unprocessable:
    return Unprocessable(message, errors=[{"loc": ["body", name], "msg": message}])
