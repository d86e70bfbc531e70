"""Tables of the playlists domain: playlists, their items, and the smart-rule generation."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from media_service.db.base import Base, JSONDocument, utcnow


class PlaylistType(enum.StrEnum):
    MANUAL = "MANUAL"
    SMART = "SMART"
    AI_CURATED = "AI_CURATED"


class Playlist(Base):
    """A playlist owned by one user, optionally shared with their organization.

    ``owner_roles`` are the owner's roles when they last saved it: smart and curated
    playlists are filled with what those roles let the owner see (the service has no user
    directory to ask later).
    """

    __tablename__ = "playlists"

    playlist_id: Mapped[str] = mapped_column(String(50), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    organization_id: Mapped[str] = mapped_column(String(64))
    owner_roles: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    playlist_type: Mapped[PlaylistType] = mapped_column(
        Enum(
            PlaylistType,
            name="playlist_type",
            native_enum=False,
            length=16,
            values_callable=lambda cls: [member.value for member in cls],
        )
    )
    smart_criteria: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    # AI_CURATED: the goal (count, time window, filter) and when it was last curated.
    curation: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    shuffle: Mapped[bool] = mapped_column(Boolean, default=False)
    loop: Mapped[bool] = mapped_column(Boolean, default=True)
    transition_duration: Mapped[int] = mapped_column(Integer, default=5)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("idx_playlists_user_id", "organization_id", "user_id", "playlist_id"),
        # The smart playlists of an organization, loaded for every metadata event.
        Index("idx_playlists_type", "organization_id", "playlist_type"),
    )


class PlaylistItem(Base):
    """One photo in one playlist. ``position`` orders manual and curated playlists (gaps
    allowed); smart ones are ordered by their criteria's sort. ``reason`` says why a curated
    photo was chosen. No foreign key to the file: the ``file.deleted`` consumer removes the
    items and announces the playlists that changed (a cascade would leave it nothing to
    announce); readers join to ``media_files``, so an item never outlives its file visibly.
    """

    __tablename__ = "playlist_items"

    playlist_id: Mapped[str] = mapped_column(
        String(50), ForeignKey("playlists.playlist_id", ondelete="CASCADE"), primary_key=True
    )
    file_id: Mapped[str] = mapped_column(String(50), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("idx_playlist_items_file_id", "file_id"),
        Index("idx_playlist_items_position", "playlist_id", "position"),
    )


class SmartRuleGeneration(Base):
    """Bumped in the same transaction as every change to the rules of an organization's
    smart playlists (created, deleted, new criteria or owner roles, refreshed), so that a
    process's cached rules (``smart.SmartRuleCache``) know when to reload."""

    __tablename__ = "smart_playlist_generations"

    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
