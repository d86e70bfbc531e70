"""Garbage collection: stored objects that no row refers to.

An upload (or a new version) writes its blob before its row commits, so a crash in between
leaves an object without a row: a file's folder whose file is gone, or a version's folder
(``…/versions/ver_…/``) whose version is gone. Such an object is removed once it is older
than the grace period (younger ones may belong to an upload that is still committing).
Stray temporary files and expired idempotency keys go too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from media_service.db.base import utcnow
from media_service.db.uow import unit_of_work
from media_service.housekeeping import expire_idempotency_keys
from media_service.media.repository import MediaFileRepository
from media_service.state import ServiceState
from media_service.storage import BlobInfo
from media_service.storage.local import LocalBlobStore
from media_service.versions.service import VersionService

log = structlog.get_logger(__name__)
BATCH = 500


@dataclass
class GcReport:
    scanned: int = 0
    orphans: list[str] = field(default_factory=list)
    temporaries: int = 0
    idempotency_keys: int = 0


def file_id_of(key: str) -> str | None:
    """``files/xy/file_…/original`` → ``file_…``; None for keys we did not make."""
    parts = key.split("/")
    return parts[2] if len(parts) >= 4 and parts[0] == "files" else None


def version_id_of(key: str) -> str | None:
    """``files/xy/file_…/versions/ver_…/content`` → ``ver_…``; None outside a version's
    folder."""
    parts = key.split("/")
    return parts[4] if len(parts) >= 6 and parts[3] == "versions" else None


async def collect_garbage(
    state: ServiceState, grace: timedelta, *, dry_run: bool = False
) -> GcReport:
    """Remove orphan objects older than ``grace``; report what was (or would be) removed."""
    report = GcReport()
    cutoff = utcnow() - grace
    batch: list[BlobInfo] = []
    async for info in state.blobs.list("files/"):
        report.scanned += 1
        if info.modified_at < cutoff:
            batch.append(info)
        if len(batch) >= BATCH:
            await _sweep(state, batch, report, dry_run)
            batch = []
    await _sweep(state, batch, report, dry_run)
    report.temporaries = await _sweep_temporaries(state, cutoff, dry_run)
    if not dry_run:
        report.idempotency_keys = await expire_idempotency_keys(state.sessions, state.settings)
    log.info("gc_finished", scanned=report.scanned, orphans=len(report.orphans), dry_run=dry_run)
    return report


async def _sweep(
    state: ServiceState, batch: list[BlobInfo], report: GcReport, dry_run: bool
) -> None:
    ids = {info.key: file_id_of(info.key) for info in batch}
    versions = {info.key: version_id_of(info.key) for info in batch}
    async with unit_of_work(state.sessions) as session:
        known = await MediaFileRepository(session).existing_ids([i for i in ids.values() if i])
        known_versions = await VersionService(session, state).existing_ids(
            [v for v in versions.values() if v]
        )
    for key, file_id in ids.items():
        version_id = versions[key]
        if file_id in known and (version_id is None or version_id in known_versions):
            continue
        report.orphans.append(key)
        if not dry_run:
            await state.blobs.delete(key)


async def _sweep_temporaries(state: ServiceState, cutoff: datetime, dry_run: bool) -> int:
    if not isinstance(state.blobs, LocalBlobStore):
        return 0  # S3 multipart uploads are aborted by the store itself
    stale = await state.blobs.list_stale_temporaries(cutoff)
    if not dry_run:
        for path in stale:
            await state.blobs.remove_temporary(path)
    return len(stale)
