"""Rules of the metadata domain: who sees what, how analysis and AI results are stored,
and the criteria search.

Works inside the caller's unit of work (a request's, or a job's) and never commits. Every
change records ``media.metadata.updated`` in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from media_service.audit.models import AuditAction, AuditResource
from media_service.audit.service import Actor, AuditTrail
from media_service.auth.principal import Principal
from media_service.db.base import utcnow
from media_service.errors import Forbidden, NotFound, Unprocessable
from media_service.events import MediaMetadataUpdated, record_event
from media_service.media.models import FileType, MediaFile
from media_service.media.service import MediaService
from media_service.metadata import compiler, labels
from media_service.metadata import sync as _sync  # noqa: F401 - registers the owner copy
from media_service.metadata.criteria import Criteria
from media_service.metadata.models import PhotoMetadata
from media_service.metadata.pipeline import PhotoAnalysis
from media_service.metadata.repository import MetadataRepository
from media_service.metadata.schemas import AiAnalysisUpdate, MetadataOut, MetadataPage
from media_service.state import ServiceState

log = structlog.get_logger(__name__)

LOCATION_FIELDS = ("latitude", "longitude", "location_name")
FACE_FIELDS = ("face_detection",)
GPS_GROUP = "GPS"  # the full_metadata group that holds GPS tags
_LISTS = {"ai_labels": "labels", "ai_objects": "objects", "ai_scenes": "scenes"}
_CENT = Decimal("0.01")


class MetadataService:
    """Photo metadata as the API, the jobs and the consumers see it."""

    def __init__(self, session: AsyncSession, state: ServiceState) -> None:
        self.session = session
        self.repository = MetadataRepository(session)
        self.media = MediaService(session, state)
        self.audit = AuditTrail(session)

    # -- read ---------------------------------------------------------------------------------

    async def get(self, principal: Principal, file_id: str) -> MetadataOut:
        """The photo's metadata, redacted for callers who are not its owner or an admin."""
        file = await self.media.get(principal, file_id)
        row = await self.repository.get(file.file_id)
        if row is None:
            raise NotFound(f"{file.file_id} has no metadata (not a photo, or not analysed yet)")
        self.audit.record(Actor.of(principal), AuditAction.READ, file, AuditResource.METADATA)
        return self.present(principal, file, row)

    def present(self, principal: Principal, file: MediaFile, row: PhotoMetadata) -> MetadataOut:
        """``row`` as ``principal`` may see it."""
        out = MetadataOut.model_validate(row)
        if self.media.may_see_private(principal, file):
            return out
        full = {key: value for key, value in out.full_metadata.items() if key != GPS_GROUP}
        hidden: dict[str, Any] = dict.fromkeys((*LOCATION_FIELDS, *FACE_FIELDS))
        return out.model_copy(
            update={
                **hidden,
                "full_metadata": full,
                "redacted": [*hidden, f"full_metadata.{GPS_GROUP}"],
            }
        )

    async def query(
        self, principal: Principal, criteria: Criteria, limit: int, cursor: str | None
    ) -> MetadataPage:
        """One page of the caller's visible photos matching ``criteria``."""
        conditions = [
            self.media.readable_clause(principal),
            # Implied by the line above, restated on photo_metadata itself so that the
            # planner can use its indexes (which all lead with organization_id).
            PhotoMetadata.organization_id == principal.organization_id,
        ]
        if self.media.reads_only_own(principal):
            # Likewise for "owned by the caller" (the copy is kept in step by metadata.sync).
            conditions.append(PhotoMetadata.user_id == principal.subject)
        if _uses_private_fields(criteria) and not self.media.private_implied(principal):
            # Filtering by place or faces would reveal them: only rows the caller may see them on.
            conditions.append(self.media.private_clause(principal))
        conditions += compiler.compile_where(criteria, self.repository.dialect)
        if cursor is not None:
            try:
                conditions.append(compiler.cursor_where(criteria.sort, cursor))
            except ValueError as exc:
                raise Unprocessable(
                    "invalid cursor", errors=[{"loc": ["body", "cursor"], "msg": str(exc)}]
                ) from None
        rows = await self.repository.search(conditions, compiler.order_by(criteria.sort), limit + 1)
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit and page:
            next_cursor = compiler.encode_cursor(criteria.sort, page[-1][0])
        return MetadataPage(
            items=[self.present(principal, file, row) for row, file in page],
            next_cursor=next_cursor,
        )

    async def of_files(self, file_ids: Sequence[str]) -> list[MetadataOut]:
        """The metadata of ``file_ids`` in full, location and faces included: for the
        export of a person's own data (callers check who asks)."""
        return [MetadataOut.model_validate(row) for row in await self.repository.get_many(file_ids)]

    # -- write --------------------------------------------------------------------------------

    async def create_record(self, file: MediaFile) -> PhotoMetadata | None:
        """The photo's (still empty) record, made when it is uploaded; None for non-photos."""
        if file.file_type is not FileType.IMAGE:
            return None
        existing = await self.repository.get(file.file_id, for_update=True)
        if existing is not None:
            return existing
        return await self.repository.add_unless_present(_empty_record(file))

    async def create_missing_record(self, file: MediaFile) -> None:
        """:meth:`create_record` for the upload's consumer, which needs no row back: one
        ``INSERT … ON CONFLICT DO NOTHING`` (a record a request made first stands)."""
        if file.file_type is FileType.IMAGE:
            await self.repository.insert_unless_present(_empty_record(file))

    async def record_analysis(self, file: MediaFile, analysis: PhotoAnalysis) -> PhotoMetadata:
        """Store what the service measured itself, and announce it."""
        row = await self.create_record(file)
        assert row is not None  # analysis runs for images only
        _apply_exif(row, analysis)
        _apply_pixels(row, analysis)
        derived = labels.derived_labels(
            row.face_count,
            bool(row.text_detection and row.text_detection.get("text")),
            row.orientation,
        )
        _merge_list(row, "ai_labels", derived, replacing=labels.DERIVED_SOURCES)
        row.analysed_at = utcnow()
        await self._changed(row)
        return row

    async def update_ai_analysis(
        self, principal: Principal, file_id: str, update: AiAnalysisUpdate
    ) -> MetadataOut:
        """An AI service's labels, objects and scenes for a photo (services and admins)."""
        file = await self.media.get(principal, file_id)
        if not self.media.may_report_results(principal):
            raise Forbidden("only services and admins may write AI results")
        row = await self.create_record(file)
        if row is None:
            raise Unprocessable(f"{file.file_id} is not a photo")
        await self.apply_ai_results(row, update.source, update.model_dump(exclude_none=True))
        detail = {"source": update.source}
        self.audit.record(
            Actor.of(principal), AuditAction.CHANGE, file, AuditResource.METADATA, detail=detail
        )
        return self.present(principal, file, row)

    async def apply_ai_results(
        self, row: PhotoMetadata, source: str, lists: dict[str, list[str]]
    ) -> None:
        """Replace ``source``'s earlier answer in each list given, keep everything else."""
        tag = f"ai:{source}"
        for column in _LISTS:
            if column in lists:
                found = dict.fromkeys(labels.normalise(lists[column]), tag)
                _merge_list(row, column, found, replacing=frozenset({tag}))
        await self._changed(row)

    async def forget_faces(self, file_ids: Sequence[str]) -> int:
        """Clear the face data of ``file_ids`` (count, detections, and labels derived from
        faces), announcing each change; how many photos had some."""
        rows = await self.repository.with_faces(file_ids)
        for row in rows:
            row.face_count = None
            row.face_detection = None
            _merge_list(row, "ai_labels", {}, replacing=frozenset({labels.FACES}))
            await self._changed(row)
        return len(rows)

    async def _changed(self, row: PhotoMetadata) -> None:
        row.updated_at = utcnow()
        await self.session.flush()
        record_event(
            self.session,
            MediaMetadataUpdated(
                file_id=row.file_id,
                user_id=row.user_id,
                organization_id=row.organization_id,
                ai_labels=list(row.ai_labels),
                quality_score=float(row.quality_score) if row.quality_score is not None else None,
            ),
        )


def _empty_record(file: MediaFile) -> PhotoMetadata:
    return PhotoMetadata(
        file_id=file.file_id,
        user_id=file.owner_id,
        organization_id=file.organization_id,
        width=file.width,
        height=file.height,
        orientation=labels.orientation_of(file.width, file.height),
        ai_labels=[],
        ai_objects=[],
        ai_scenes=[],
        ai_colors=[],
        label_sources={},
        full_metadata={},
    )


def _uses_private_fields(criteria: Criteria) -> bool:
    """Whether ``criteria`` filter on place or faces (private to owners and admins)."""
    private = (criteria.near, criteria.bbox, criteria.location, criteria.faces, criteria.has_faces)
    return any(value is not None for value in private)


def _merge_list(
    row: PhotoMetadata, column: str, incoming: dict[str, str], *, replacing: frozenset[str]
) -> None:
    group = _LISTS[column]
    sources = dict(row.label_sources or {})
    merged, merged_sources = labels.merge(
        getattr(row, column) or [], sources.get(group, {}), incoming, replacing=replacing
    )
    setattr(row, column, merged)
    row.label_sources = {**sources, group: merged_sources}


def _apply_exif(row: PhotoMetadata, analysis: PhotoAnalysis) -> None:
    exif = analysis.exif
    for name in ("camera_make", "camera_model", "lens_model"):
        setattr(row, name, _clip(getattr(exif, name), 100))
    for name in ("focal_length", "aperture", "shutter_speed"):
        setattr(row, name, _clip(getattr(exif, name), 50))
    row.iso = exif.iso
    row.flash_used = exif.flash_used
    if exif.latitude is not None and exif.longitude is not None:
        row.latitude = Decimal(str(round(exif.latitude, 8)))
        row.longitude = Decimal(str(round(exif.longitude, 8)))
    row.location_name = _clip(analysis.place.name, 255) if analysis.place else None
    row.photo_taken_at = _as_stored_time(exif.taken_at)
    row.photo_taken_offset_minutes = exif.taken_offset_minutes
    row.full_metadata = exif.full


def _apply_pixels(row: PhotoMetadata, analysis: PhotoAnalysis) -> None:
    pixels = analysis.pixels
    row.quality_score = _score(pixels.quality_score)
    row.blur_score = _score(pixels.blur_score)
    row.brightness = _score(pixels.brightness)
    row.contrast = _score(pixels.contrast)
    row.ai_colors = [colour.to_dict() for colour in pixels.colours]
    row.perceptual_hash = pixels.perceptual_hash
    row.width, row.height = pixels.width, pixels.height
    row.orientation = labels.orientation_of(pixels.width, pixels.height)
    if pixels.text is not None:
        row.text_detection = {
            "text": pixels.text.text,
            "boxes": pixels.text.boxes,
            "language": pixels.text.language,
        }
    if analysis.faces is not None:
        row.face_count = len(analysis.faces)
        row.face_detection = {
            "count": len(analysis.faces),
            "faces": [face.to_dict() for face in analysis.faces],
        }


def _as_stored_time(taken: datetime | None) -> datetime | None:
    """UTC when the camera wrote its offset; otherwise the local wall time, labelled UTC
    (``photo_taken_offset_minutes`` is then null, so readers know it is local)."""
    if taken is None:
        return None
    return taken.astimezone(UTC) if taken.tzinfo else taken.replace(tzinfo=UTC)


def _score(value: float) -> Decimal:
    return Decimal(str(min(max(value, 0.0), 1.0))).quantize(_CENT, rounding=ROUND_HALF_UP)


def _clip(value: str | None, length: int) -> str | None:
    return value[:length] if value else None
