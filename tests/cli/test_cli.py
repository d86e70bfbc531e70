"""The operator commands: ``migrate``, ``import``, ``doctor`` and ``gc``, run as the real
``media-service`` console script on a fresh install in a temporary directory."""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from PIL import Image

from media_service.app import create_app
from media_service.auth.principal import Principal, Role
from media_service.config import Settings
from media_service.db.engine import create_engine
from media_service.db.migrate import upgrade_to_head
from media_service.db.uow import unit_of_work
from media_service.ids import new_id
from media_service.media.storage_keys import storage_key
from media_service.media.upload_source import RawBodySource
from media_service.media.uploads import UploadService
from media_service.state import ServiceState

SCRIPT = Path(sys.executable).with_name("media-service")
ORG = "school-1"
HOUR = 3600


def image(
    color: tuple[int, int, int], fmt: str = "JPEG", size: tuple[int, int] = (48, 32)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Install:
    """A fresh install under ``root``: the CLI's environment and the same settings
    in-process."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def blobs(self) -> Path:
        return self.data / "blobs"

    @property
    def database(self) -> Path:
        return self.data / "media.db"

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("MEDIA_")}
        env.update(
            MEDIA_DATA_DIR=str(self.data),
            MEDIA_DATABASE_URL=f"sqlite+aiosqlite:///{self.database}",
            MEDIA_STORAGE_URL=f"file://{self.blobs}",
            MEDIA_LOG_FORMAT="json",
            COLUMNS="250",  # rich tables: one line per row
        )
        env.update(extra)
        return env

    def settings(self) -> Settings:
        return Settings(
            _env_file=None,
            data_dir=self.data,
            database_url=f"sqlite+aiosqlite:///{self.database}",
            storage_url=f"file://{self.blobs}",
            log_format="console",
        )

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        assert SCRIPT.exists(), f"console script not installed: {SCRIPT} (run `make install`)"
        return subprocess.run(
            [str(SCRIPT), *args],
            cwd=self.root,
            env=self.env(**extra_env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def query(self, sql: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.database) as db:
            return db.execute(sql).fetchall()


@pytest.fixture
def install(tmp_path: Path) -> Install:
    return Install(tmp_path)


def summary(result: subprocess.CompletedProcess[str], starts: str) -> str:
    """The one line of the command's human output that starts with ``starts``."""
    lines = [line for line in result.stderr.splitlines() if line.startswith(starts)]
    assert len(lines) == 1, result.stderr
    return lines[0]


def doctor_rows(stdout: str) -> dict[str, tuple[str, str]]:
    """``check -> (ok, detail)`` from the doctor's table (continuation lines joined)."""
    rows: dict[str, tuple[str, str]] = {}
    last = ""
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) != 3:
            continue
        name, ok, detail = cells
        if name:
            last = name
            rows[name] = (ok, detail)
        elif last:
            rows[last] = (rows[last][0], f"{rows[last][1]}{detail}")
    return rows


# -- migrate and doctor ----------------------------------------------------------------------


def test_migrate_creates_the_tables_then_is_a_no_op(install: Install) -> None:
    first = install.run("migrate")
    assert first.returncode == 0, first.stderr
    assert "newest migration" in first.stderr
    tables = {
        name for (name,) in install.query("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert {"media_files", "idempotency_keys", "alembic_version"} <= tables
    schema = install.query("SELECT type, name, sql FROM sqlite_master ORDER BY name")
    version = install.query("SELECT version_num FROM alembic_version")
    assert len(version) == 1

    second = install.run("migrate")
    assert second.returncode == 0, second.stderr
    assert install.query("SELECT type, name, sql FROM sqlite_master ORDER BY name") == schema
    assert install.query("SELECT version_num FROM alembic_version") == version

    checked = install.run("doctor")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rows = doctor_rows(checked.stdout)
    assert rows["database"][0] == "yes" and str(install.database) in rows["database"][1]
    assert rows["migrations"] == ("yes", "at head")
    assert rows["storage"][0] == "yes" and str(install.blobs) in rows["storage"][1]


def test_doctor_fails_on_a_database_that_is_not_migrated(install: Install) -> None:
    result = install.run("doctor", MEDIA_AUTO_MIGRATE="false")
    assert result.returncode == 1, result.stdout + result.stderr
    rows = doctor_rows(result.stdout)
    assert rows["database"][0] == "yes"
    assert rows["migrations"][0] == "NO"
    assert "pending" in rows["migrations"][1] and "media-service migrate" in rows["migrations"][1]
    assert rows["storage"][0] == "yes"
    assert "Traceback" not in result.stderr


async def test_doctor_fails_when_storage_is_unreachable(install: Install) -> None:
    engine = create_engine(install.settings().database_url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
    (install.root / "a-file").write_text("not a directory")
    broken = install.root / "a-file" / "blobs"
    result = install.run("doctor", MEDIA_STORAGE_URL=f"file://{broken}")
    assert result.returncode == 1, result.stdout + result.stderr
    rows = doctor_rows(result.stdout)
    assert rows["database"][0] == "yes" and rows["migrations"][0] == "yes"
    assert rows["storage"][0] == "NO"
    assert "not writable" in rows["storage"][1] and str(broken) in rows["storage"][1]
    assert "Traceback" not in result.stderr


# -- import ----------------------------------------------------------------------------------


def stored_files(install: Install) -> dict[str, tuple[str, str, str]]:
    """file_name -> (sha256, storage_path, owner) of every row."""
    rows = install.query(
        "SELECT file_name, sha256, storage_path, owner_type, owner_id FROM media_files"
    )
    return {str(r[0]): (str(r[1]), str(r[2]), f"{r[3]}:{r[4]}") for r in rows}


def import_args(folder: Path) -> list[str]:
    return [
        "import",
        str(folder),
        "--org",
        ORG,
        "--owner-type",
        "ClassSession",
        "--owner-id",
        "cs-7",
    ]


def test_import_folder_reports_failures_skips_hidden_and_resumes(install: Install) -> None:
    folder = install.root / "photos"
    (folder / "trip" / "day-2").mkdir(parents=True)
    originals = {
        "a.jpg": image((200, 10, 10)),
        "b.jpg": image((10, 200, 10)),
        "c.png": image((10, 10, 200), "PNG"),
        "d.jpg": image((90, 90, 10)),
    }
    (folder / "a.jpg").write_bytes(originals["a.jpg"])
    (folder / "b.jpg").write_bytes(originals["b.jpg"])
    (folder / "trip" / "c.png").write_bytes(originals["c.png"])
    (folder / "trip" / "day-2" / "d.jpg").write_bytes(originals["d.jpg"])
    (folder / ".hidden.jpg").write_bytes(image((1, 1, 1)))
    (folder / ".cache").mkdir()
    (folder / ".cache" / "thumb.jpg").write_bytes(image((2, 2, 2)))
    (folder / "notes.txt").write_text("not a photo\n")

    assert len({sha256(data) for data in originals.values()}) == 4
    first = install.run(*import_args(folder))
    assert first.returncode == 1, first.stderr  # one file failed
    assert summary(first, "imported") == "imported 4, already stored 0, failed 1"
    failure = summary(first, f"  {folder / 'notes.txt'}")
    assert "not one of the allowed formats" in failure
    assert "importing" in first.stderr  # the progress bar was drawn
    assert "Traceback" not in first.stderr

    stored = stored_files(install)
    assert set(stored) == set(originals)  # neither hidden file nor the text file
    for name, (digest, key, owner) in stored.items():
        assert digest == sha256(originals[name])
        assert (install.blobs / key).read_bytes() == originals[name]
        assert owner == "ClassSession:cs-7"
    assert {org for (org,) in install.query("SELECT organization_id FROM media_files")} == {ORG}

    again = install.run(*import_args(folder))
    assert summary(again, "imported") == "imported 0, already stored 4, failed 1"
    assert stored_files(install) == stored


def test_import_after_an_interruption_uploads_only_the_new_files(install: Install) -> None:
    folder = install.root / "incoming"
    folder.mkdir()
    (folder / "1.jpg").write_bytes(image((250, 0, 0)))
    (folder / "2.jpg").write_bytes(image((0, 250, 0)))
    assert len({sha256(path.read_bytes()) for path in folder.iterdir()}) == 2
    first = install.run(*import_args(folder))
    assert first.returncode == 0, first.stderr
    assert summary(first, "imported") == "imported 2, already stored 0, failed 0"
    before = stored_files(install)

    (folder / "3.jpg").write_bytes(image((0, 0, 250)))
    (folder / "later").mkdir()
    (folder / "later" / "4.png").write_bytes(image((250, 250, 0), "PNG"))
    second = install.run(*import_args(folder))
    assert second.returncode == 0, second.stderr
    assert summary(second, "imported") == "imported 2, already stored 2, failed 0"
    after = stored_files(install)
    assert set(after) == {"1.jpg", "2.jpg", "3.jpg", "4.png"}
    assert {name: after[name] for name in before} == before  # the first two untouched
    assert len(list((install.blobs / "files").rglob("original"))) == 4


# -- gc --------------------------------------------------------------------------------------


async def upload_one(settings: Settings, data: bytes) -> tuple[str, str]:
    """Store ``data`` through the service (as the API does); return its id and key."""
    state = ServiceState.build(settings)
    try:
        await upgrade_to_head(state.engine)
        principal = Principal("teacher-1", ORG, frozenset({Role.TEACHER}))
        source = RawBodySource(
            _chunks(data), {"owner_type": "ClassSession", "owner_id": "cs"}, "x.jpg"
        )
        async with unit_of_work(state.sessions) as session:
            outcome = await UploadService(session, state.blobs, settings).upload(principal, source)
        return outcome.file.file_id, outcome.file.storage_path
    finally:
        await state.close()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def write_object(settings: Settings, key: str, data: bytes) -> Path:
    state = ServiceState.build(settings)
    try:
        await state.blobs.put(key, _chunks(data))
    finally:
        await state.close()
    return settings.data_dir / "blobs" / key


def backdate(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


async def test_gc_removes_old_orphans_and_temporaries_but_keeps_stored_files(
    install: Install,
) -> None:
    settings = install.settings()
    photo = image((120, 60, 30), size=(200, 100))
    file_id, key = await upload_one(settings, photo)
    real = install.blobs / key
    backdate(real, 2 * HOUR)  # old, but a row refers to it
    old_orphan = await write_object(settings, storage_key(new_id("file")), b"left by a crash")
    backdate(old_orphan, 2 * HOUR)
    young_orphan = await write_object(settings, storage_key(new_id("file")), b"still committing")
    stale_tmp = install.blobs / ".tmp" / "0123456789abcdef"
    stale_tmp.write_bytes(b"half an upload")
    backdate(stale_tmp, 2 * HOUR)

    dry = install.run("gc", "--dry-run", "--grace-seconds", str(HOUR))
    assert dry.returncode == 0, dry.stderr
    assert "would remove 1 orphans, 1 temporary files" in summary(dry, "scanned 3 objects")
    assert all(path.exists() for path in (real, old_orphan, young_orphan, stale_tmp))

    swept = install.run("gc", "--grace-seconds", str(HOUR))
    assert swept.returncode == 0, swept.stderr
    assert "removed 1 orphans, 1 temporary files" in summary(swept, "scanned 3 objects")
    assert not old_orphan.exists() and not old_orphan.parent.exists()  # folder pruned too
    assert not stale_tmp.exists()
    assert young_orphan.exists()  # younger than the grace period: may still be committing
    assert real.exists()

    fresh_tmp = install.blobs / ".tmp" / "fedcba9876543210"
    fresh_tmp.write_bytes(b"another half upload")
    backdate(fresh_tmp, 1)
    backdate(young_orphan, 1)
    everything = install.run("gc", "--grace-seconds", "0")
    assert everything.returncode == 0, everything.stderr
    assert "removed 1 orphans, 1 temporary files" in summary(everything, "scanned 2 objects")
    assert not young_orphan.exists() and not fresh_tmp.exists()
    assert [
        p.relative_to(install.blobs).as_posix() for p in install.blobs.rglob("*") if p.is_file()
    ] == [key]

    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://media.test") as http:
            state: ServiceState = app.state.media
            token = state.tokens.mint("teacher-1", ORG, [Role.TEACHER], ttl=timedelta(minutes=5))
            response = await http.get(
                f"/api/v1/media/files/{file_id}/content",
                headers={"Authorization": f"Bearer {token}"},
            )
    assert response.status_code == 200
    assert response.content == photo
