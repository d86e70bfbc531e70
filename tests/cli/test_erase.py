"""``media-service erase``, run as the real console script on a fresh SQLite install:
carried out here with ``--wait`` (report printed, nothing of the person left), or queued
for the service without it; bad input is one line on stderr."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_cli import Install, image

ORG = "school-1"
PERSON = "teacher-erz9"


@pytest.fixture
def install(tmp_path: Path) -> Install:
    return Install(tmp_path)


def import_photos(install: Install, owner_id: str, count: int) -> None:
    folder = install.root / f"photos-{owner_id}"
    folder.mkdir()
    for n in range(count):
        (folder / f"{n}.jpg").write_bytes(image((40 * n, 90, 200)))
    result = install.run(
        "import", str(folder), "--org", ORG, "--owner-type", "Teacher", "--owner-id", owner_id,
        "--uploaded-by", owner_id,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def report_rows(stderr: str) -> dict[str, int]:
    """``name -> count`` from the printed report table."""
    rows = {}
    for line in stderr.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 2 and cells[1].isdigit():
            rows[cells[0]] = int(cells[1])
    return rows


def values_naming(database: Path, needle: str) -> list[str]:
    """``table.column`` of every stored value that contains ``needle``."""
    found = []
    with sqlite3.connect(database) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cursor = db.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - names from the schema
            names = [column[0] for column in cursor.description]
            for row in cursor.fetchall():
                for name, value in zip(names, row, strict=True):
                    text = (
                        value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                    )
                    if needle in text:
                        found.append(f"{table}.{name}")
    return found


def test_erase_with_wait_carries_it_out_and_prints_the_report(install: Install) -> None:
    import_photos(install, PERSON, 2)
    file_ids = [str(r[0]) for r in install.query("SELECT file_id FROM media_files")]
    assert len(file_ids) == 2 and values_naming(install.database, PERSON)

    result = install.run("erase", PERSON, "--org", ORG, "--wait")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rows = report_rows(result.stderr)
    assert rows["files"] == 2 and rows["objects"] == 2 and rows["playlists"] == 0, rows
    assert "subject erased_" in result.stderr and PERSON not in result.stderr
    assert install.query("SELECT count(*) FROM media_files") == [(0,)]
    assert install.query("SELECT status, user_id LIKE 'erased_%' FROM erasures") == [("done", 1)]
    assert values_naming(install.database, PERSON) == []
    for file_id in file_ids:  # only in the file.deleted events the erasure published
        assert set(values_naming(install.database, file_id)) <= {"outbox.payload"}
        assert not list(install.blobs.rglob(f"*{file_id}*"))
    again = install.run("erase", PERSON, "--org", ORG, "--wait")
    assert again.returncode == 0 and report_rows(again.stderr)["files"] == 0


def test_erase_without_wait_queues_the_job(install: Install) -> None:
    import_photos(install, PERSON, 1)
    result = install.run("erase", PERSON, "--org", ORG)
    assert result.returncode == 0, result.stderr
    assert "queued erasure era_" in result.stderr
    ((erasure_id, status),) = install.query("SELECT erasure_id, status FROM erasures")
    assert status == "queued" and f"erasure {erasure_id}" in result.stderr
    jobs = install.query("SELECT payload FROM outbox WHERE subject = 'jobs.media.erase-person'")
    assert len(jobs) == 1 and erasure_id in str(jobs[0][0]) and PERSON not in str(jobs[0][0])
    assert install.query("SELECT count(*) FROM media_files") == [(1,)]  # not yet


def test_erase_refuses_a_bad_user_id_in_one_line(install: Install) -> None:
    result = install.run("erase", "x" * 500, "--org", ORG)
    assert result.returncode == 1
    assert result.stderr.startswith("error: not a user id") and "Traceback" not in result.stderr
