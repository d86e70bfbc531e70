"""Bulk import of a folder: every allowed file, once, resumable by checksum."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from media_service.auth.principal import Principal
from media_service.db.uow import unit_of_work
from media_service.errors import MediaError
from media_service.media.models import OwnerType
from media_service.media.repository import MediaFileRepository
from media_service.media.upload_source import RawBodySource
from media_service.media.uploads import UploadService
from media_service.state import ServiceState

log = structlog.get_logger(__name__)
READ_BLOCK = 1024 * 1024


@dataclass
class ImportReport:
    imported: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def files_under(root: Path) -> list[Path]:
    """Regular files below ``root`` in a stable order, hidden ones left out."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


async def import_directory(
    state: ServiceState,
    paths: list[Path],
    principal: Principal,
    owner: tuple[OwnerType, str],
    on_progress: Callable[[Path, int], None] = lambda _path, _size: None,
) -> ImportReport:
    """Upload each of ``paths`` for ``owner``; files already stored (same SHA-256 for the
    same owner) are skipped without being uploaded again."""
    report = ImportReport()
    for path in paths:
        size = 0
        try:
            size = (await asyncio.to_thread(path.stat)).st_size  # off the event loop
            if await _already_stored(state, principal, owner, path):
                report.skipped += 1
            else:
                await _upload(state, principal, owner, path)
                report.imported += 1
        except MediaError as exc:
            _failed(report, path, exc.detail)
        except OSError as exc:  # e.g. vanished or unreadable since it was listed
            _failed(report, path, str(exc))
        on_progress(path, size)
    return report


def _failed(report: ImportReport, path: Path, reason: str) -> None:
    report.failed[str(path)] = reason
    log.warning("import_failed", path=str(path), reason=reason)


async def _already_stored(
    state: ServiceState, principal: Principal, owner: tuple[OwnerType, str], path: Path
) -> bool:
    digest = await asyncio.to_thread(_sha256_of, path)
    async with unit_of_work(state.sessions) as session:
        found = await MediaFileRepository(session).find_duplicate(
            principal.organization_id, owner[0], owner[1], digest
        )
    return found is not None


async def _upload(
    state: ServiceState, principal: Principal, owner: tuple[OwnerType, str], path: Path
) -> None:
    fields = {"owner_type": owner[0].value, "owner_id": owner[1]}
    source = RawBodySource(_read_chunks(path), fields, path.name)
    async with unit_of_work(state.sessions) as session:
        service = UploadService(session, state.blobs, state.settings)
        await service.upload(principal, source)


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, READ_BLOCK):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(READ_BLOCK):
            digest.update(chunk)
    return digest.hexdigest()
