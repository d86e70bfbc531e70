"""Smart playlists kept current, one photo at a time (spec 003, Flow 2).

When a photo's metadata changes, ``check_photo_matches_playlists`` decides which smart
playlists of its organization it belongs to now, with ``evaluate.matches`` in Python over
rules parsed once per process (``SmartRuleCache``) and narrowed by owner and anchor
(``matching.RuleIndex``): no query per playlist. The photo joins the playlists it now
matches, leaves the ones it no longer matches, and each playlist that changed is announced.

Consistency with changes to the playlists themselves (PostgreSQL; SQLite runs writers one
at a time anyway): every change to the rules of an organization's smart playlists (and
every refresh) first moves its ``smart_playlist_generations`` row on, holding that row
until its commit, and only then reads photos; a check share-locks the row before it reads
the rules. So a check either runs entirely before a playlist change (which then reads the
photo as the check saw it) or after it (and reloads the rules). A check also locks the
photo's metadata row, so two checks of one photo, or a check and a new metadata write,
happen one after the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.auth.principal import Principal
from media_service.media.models import FileType, MediaFile
from media_service.media.service import may_read
from media_service.metadata.criteria import Criteria
from media_service.metadata.evaluate import matches
from media_service.metadata.models import PhotoMetadata
from media_service.playlists import policy
from media_service.playlists.content import PlaylistContent
from media_service.playlists.explain import uses_private_fields
from media_service.playlists.matching import RuleIndex, SmartRule
from media_service.playlists.repository import PlaylistRepository
from media_service.state import ServiceState

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SmartCheck:
    """The outcome of checking one photo: the smart playlists it is in now, and the ones
    it joined and left."""

    matching: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Generation:
    number: int
    index: RuleIndex


class SmartRuleCache:
    """Each organization's smart rules, parsed once per process and reloaded when the
    organization's generation moves (then only the playlists that changed are parsed)."""

    def __init__(self) -> None:
        self._organizations: dict[str, _Generation] = {}

    async def index(
        self,
        repository: PlaylistRepository,
        organization_id: str,
        personal: Callable[[Principal], bool],
    ) -> RuleIndex:
        """The organization's rules as of this transaction; ``personal`` tells owners who
        read only their own files."""
        number = await repository.generation(organization_id)
        cached = self._organizations.get(organization_id)
        if cached is not None and cached.number == number:
            return cached.index
        known = cached.index.rules if cached is not None else {}
        rules = await self._load(repository, organization_id, known, personal)
        index = RuleIndex(rules)
        self._organizations[organization_id] = _Generation(number, index)
        log.info("smart_rules_loaded", organization_id=organization_id, rules=len(index))
        return index

    async def _load(
        self,
        repository: PlaylistRepository,
        organization_id: str,
        known: dict[str, SmartRule],
        personal: Callable[[Principal], bool],
    ) -> list[SmartRule]:
        versions = await repository.smart_versions(organization_id)
        kept = [
            rule for rule in known.values() if versions.get(rule.playlist_id) == rule.updated_at
        ]
        kept_ids = {rule.playlist_id for rule in kept}
        stale = [playlist_id for playlist_id in versions if playlist_id not in kept_ids]
        if not stale:
            return kept
        everything = len(stale) > len(versions) // 2
        rows = await repository.smart_rows(organization_id, None if everything else stale)
        fresh = [
            rule
            for row in rows
            if row.playlist_id not in kept_ids and (rule := _rule(row, personal))
        ]
        return kept + fresh


def _rule(row: Row[Any], personal: Callable[[Principal], bool]) -> SmartRule | None:
    try:
        criteria = Criteria.model_validate(row.smart_criteria)
    except ValueError:  # stored by an older version under other rules: skip, say so
        log.warning("smart_rule_unreadable", playlist_id=row.playlist_id)
        return None
    owner = policy.owner(row.user_id, row.organization_id, row.owner_roles)
    return SmartRule(row.playlist_id, owner, criteria, row.updated_at, personal(owner))


class SmartPlaylists:
    """The per-photo upkeep of smart playlists, inside a consumer's unit of work."""

    def __init__(self, session: AsyncSession, state: ServiceState, cache: SmartRuleCache) -> None:
        self.repository = PlaylistRepository(session)
        self.content = PlaylistContent(session, state)
        self.cache = cache

    async def check_photo_matches_playlists(self, file_id: str) -> SmartCheck:
        """Put the photo into the smart playlists it matches now and out of the others;
        announce each playlist that changed."""
        row = await self.repository.metadata_for_update(file_id)
        file = await self.content.media.find(file_id) if row is not None else None
        if row is None or file is None:
            return SmartCheck()  # deleted since: file.deleted takes it out everywhere
        media = self.content.media
        index = await self.cache.index(self.repository, file.organization_id, media.reads_only_own)
        current = await self.repository.smart_memberships(file_id)
        candidates = index.candidates(row, file.owner_id)
        matching = {pid for pid, rule in candidates.items() if self._admits(rule, file, row)}
        added, removed = sorted(matching - current), sorted(current - matching)
        await self.repository.insert_items(
            [{"playlist_id": playlist_id, "file_id": file_id} for playlist_id in added]
        )
        await self.repository.delete_file_from(removed, file_id)
        await self.content.announce(await self.repository.get_many([*added, *removed]))
        if added or removed:
            log.info("smart_playlists_updated", file_id=file_id, added=len(added),
                     removed=len(removed), checked=len(candidates), rules=len(index))  # fmt: skip
        return SmartCheck(sorted(matching), added, removed)

    def _admits(self, rule: SmartRule, file: MediaFile, row: PhotoMetadata) -> bool:
        """The Python twin of ``PlaylistContent.photo_conditions``."""
        if file.file_type is not FileType.IMAGE or not may_read(rule.owner, file):
            return False
        if uses_private_fields(rule.criteria) and not self.content.media.may_see_private(
            rule.owner, file
        ):
            return False
        return matches(rule.criteria, row, file.processed)
