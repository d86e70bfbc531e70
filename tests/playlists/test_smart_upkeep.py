"""Smart playlists kept current one photo at a time end up exactly where a full evaluation
would put them, on SQLite and on PostgreSQL, and announce exactly the playlists that changed.

Photos and playlists of four owners with different eyes (two teachers, a member, an admin)
get random metadata changes; after each, the per-photo check (what the consumer runs) is
applied, and every playlist is compared with the criteria's SQL over all photos.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import delete, select

from media_service.auth.principal import Principal, Role
from media_service.db.uow import unit_of_work
from media_service.events.models import OutboxMessage
from media_service.ids import new_id
from media_service.media.models import FileType, MediaFile, OwnerType
from media_service.metadata.criteria import Criteria
from media_service.metadata.models import PhotoMetadata
from media_service.playlists.content import PlaylistContent
from media_service.playlists.models import Playlist, PlaylistItem
from media_service.playlists.policy import owner_of
from media_service.playlists.schemas import PlaylistCreate, PlaylistUpdate
from media_service.playlists.service import PlaylistService
from media_service.playlists.smart import SmartPlaylists, SmartRuleCache

from conftest import Stack

ORG = "org_upkeep"
OWNERS = {
    "t1": Principal("t1", ORG, frozenset({Role.TEACHER})),
    "t2": Principal("t2", ORG, frozenset({Role.TEACHER})),
    "m1": Principal("m1", ORG, frozenset({Role.MEMBER})),
    "adm": Principal("adm", ORG, frozenset({Role.ADMIN})),
}
# (owner type, owner id, uploaded by): class photos everyone's teachers see, teachers' and
# a member's own photos.
KINDS = [
    (OwnerType.CLASS_SESSION, "cs-1", "t1"),
    (OwnerType.CLASS_SESSION, "cs-2", "t2"),
    (OwnerType.TEACHER, "t1", "t1"),
    (OwnerType.TEACHER, "t2", "t2"),
    (OwnerType.USER, "m1", "m1"),
]
NAMES = ["beach", "sea", "dog", "cat"]
CRITERIA: list[dict[str, Any]] = [
    {"scenes": {"any": ["beach"]}},
    {"scenes": {"all": ["beach", "sea"]}, "quality": {"min": 0.5}},
    {"labels": {"any": ["dog", "cat"]}},
    {"labels": {"none": ["dog"]}},
    {"colors": {"any": ["blue"]}},
    {"quality": {"min": 0.6}},
    {"has_faces": True},
    {"location": "berlin"},
    {"processed": True, "scenes": {"any": ["sea"]}},
    {},
]


def random_fields(rng: random.Random) -> dict[str, Any]:
    def names() -> list[str]:
        return rng.sample(NAMES, rng.randint(0, 2))

    return {
        "ai_labels": names(),
        "ai_scenes": names(),
        "ai_colors": [{"name": rng.choice(["blue", "red"]), "hex": "#000000", "share": 0.5}],
        "quality_score": rng.choice([None, 0.3, 0.55, 0.9]),
        "face_count": rng.choice([None, 0, 1, 3]),
        "location_name": rng.choice([None, "Berlin, Germany", "Paris"]),
    }


async def add_photo(stack: Stack, rng: random.Random) -> str:
    owner_type, owner_id, uploader = rng.choice(KINDS)
    file_id = new_id("file")
    async with unit_of_work(stack.state.sessions) as session:
        session.add(
            MediaFile(
                file_id=file_id, organization_id=ORG, owner_id=owner_id, owner_type=owner_type,
                uploaded_by=uploader, file_name="p.jpg", file_type=FileType.IMAGE,
                content_type="image/jpeg", file_size=1, sha256=file_id[-26:].ljust(64, "0"),
                storage_path=f"files/{file_id}", processed=rng.random() < 0.5,
            )
        )  # fmt: skip
        await session.flush()
        session.add(
            PhotoMetadata(
                file_id=file_id, user_id=owner_id, organization_id=ORG, ai_objects=[],
                label_sources={}, full_metadata={}, **random_fields(rng),
            )
        )  # fmt: skip
    return file_id


async def change_photo(stack: Stack, rng: random.Random, file_id: str) -> None:
    async with unit_of_work(stack.state.sessions) as session:
        row = await session.get(PhotoMetadata, file_id)
        assert row is not None
        for name, value in random_fields(rng).items():
            if rng.random() < 0.5:
                setattr(row, name, value)
        if rng.random() < 0.2:
            file = await session.get(MediaFile, file_id)
            assert file is not None
            file.processed = not file.processed


async def playlist_events(stack: Stack) -> dict[str, dict[str, Any]]:
    """Every media.playlist.updated in the outbox (nothing relays it in these tests)."""
    async with stack.state.sessions() as session:
        rows = await session.execute(
            select(OutboxMessage).where(OutboxMessage.subject == "media.playlist.updated")
        )
        return {row.id: row.payload for row in rows.scalars()}


async def check(
    stack: Stack, cache: SmartRuleCache, file_id: str
) -> tuple[set[str], list[dict[str, Any]]]:
    """Run the consumer's check; the playlists it changed and the events it recorded."""
    before = await playlist_events(stack)
    async with unit_of_work(stack.state.sessions) as session:
        outcome = await SmartPlaylists(session, stack.state, cache).check_photo_matches_playlists(
            file_id
        )
    after = await playlist_events(stack)
    new = [payload for event_id, payload in after.items() if event_id not in before]
    return {*outcome.added, *outcome.removed}, new


async def agrees_with_full_evaluation(stack: Stack, playlist_ids: list[str]) -> dict[str, int]:
    """Each smart playlist holds exactly what its criteria select; the counts."""
    counts = {}
    async with stack.state.sessions() as session:
        content = PlaylistContent(session, stack.state)
        for playlist_id in playlist_ids:
            playlist = await session.get(Playlist, playlist_id)
            assert playlist is not None
            criteria = Criteria.model_validate(playlist.smart_criteria)
            wanted = select(PhotoMetadata.file_id).join(
                MediaFile, MediaFile.file_id == PhotoMetadata.file_id
            )
            conditions = content.photo_conditions(owner_of(playlist), criteria)
            expected = set((await session.execute(wanted.where(*conditions))).scalars())
            held = select(PlaylistItem.file_id).where(PlaylistItem.playlist_id == playlist_id)
            assert set((await session.execute(held)).scalars()) == expected, criteria
            counts[playlist_id] = len(expected)
    return counts


async def create_playlists(stack: Stack, rng: random.Random) -> list[str]:
    ids = []
    for n, criteria in enumerate(CRITERIA):
        owner = OWNERS[rng.choice(sorted(OWNERS))]
        body = PlaylistCreate(
            name=f"smart {n}",
            playlist_type="SMART",  # type: ignore[arg-type]
            smart_criteria=Criteria.model_validate(criteria),
        )
        async with unit_of_work(stack.state.sessions) as session:
            ids.append(
                (await PlaylistService(session, stack.state).create(owner, body)).playlist_id
            )
    return ids


async def test_per_photo_upkeep_matches_a_full_evaluation(stack: Stack) -> None:
    rng = random.Random(20251211)
    photos = [await add_photo(stack, rng) for _ in range(30)]
    playlists = await create_playlists(stack, rng)
    await agrees_with_full_evaluation(stack, playlists)  # filled at creation
    cache = SmartRuleCache()
    changes = 0
    for round_ in range(60):
        file_id = rng.choice(photos)
        await change_photo(stack, rng, file_id)
        changed, events = await check(stack, cache, file_id)
        counts = await agrees_with_full_evaluation(stack, playlists)
        assert sorted(e["playlist_id"] for e in events) == sorted(changed)
        for event in events:
            assert event["photo_count"] == counts[event["playlist_id"]]
        changes += len(changed)
        if round_ == 30:  # a playlist's criteria change: the cache must notice
            async with unit_of_work(stack.state.sessions) as session:
                body = PlaylistUpdate(
                    smart_criteria=Criteria.model_validate({"labels": {"any": ["sea"]}})
                )
                await PlaylistService(session, stack.state).update(
                    OWNERS["adm"], playlists[0], body
                )
    assert changes > 20  # the random changes did move photos in and out


async def test_a_deleted_photo_leaves_every_playlist_once(stack: Stack) -> None:
    rng = random.Random(3)
    photos = [await add_photo(stack, rng) for _ in range(6)]
    playlists = await create_playlists(stack, rng)
    await agrees_with_full_evaluation(stack, playlists)
    async with stack.state.sessions() as session:
        held = select(PlaylistItem.file_id, PlaylistItem.playlist_id)
        memberships = (await session.execute(held)).all()
    victim = max(photos, key=lambda p: sum(row[0] == p for row in memberships))
    member_of = {row[1] for row in memberships if row[0] == victim}
    assert len(member_of) >= 2
    async with unit_of_work(stack.state.sessions) as session:
        await session.execute(delete(MediaFile).where(MediaFile.file_id == victim))
        left = await PlaylistContent(session, stack.state).remove_deleted_photo(victim)
    assert set(left) == member_of
    async with unit_of_work(stack.state.sessions) as session:
        assert await PlaylistContent(session, stack.state).remove_deleted_photo(victim) == []
    await agrees_with_full_evaluation(stack, playlists)


async def test_refreshing_an_unchanged_smart_playlist_announces_nothing(stack: Stack) -> None:
    rng = random.Random(5)
    for _ in range(5):
        await add_photo(stack, rng)
    owner = OWNERS["adm"]
    body = PlaylistCreate(name="all", playlist_type="SMART", smart_criteria=Criteria())  # type: ignore[arg-type]
    async with unit_of_work(stack.state.sessions) as session:
        created = await PlaylistService(session, stack.state).create(owner, body)
    assert created.photo_count == 5

    async def events() -> int:
        return len(await playlist_events(stack))

    before = await events()
    async with unit_of_work(stack.state.sessions) as session:
        again = await PlaylistService(session, stack.state).refresh(owner, created.playlist_id)
    assert again.photo_ids == created.photo_ids and await events() == before
    await add_photo(stack, rng)  # no event for it here: the refresh finds it
    async with unit_of_work(stack.state.sessions) as session:
        again = await PlaylistService(session, stack.state).refresh(owner, created.playlist_id)
    assert again.photo_count == 6 and await events() == before + 1
