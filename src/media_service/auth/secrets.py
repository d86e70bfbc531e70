"""The service's own secret: configured, or generated into the data directory once."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from media_service.config import Settings

SECRET_FILE = "secret.key"  # noqa: S105 - a file name, not a secret


def load_or_create_secret(settings: Settings) -> str:
    """``MEDIA_JWT_SECRET`` if set; else the secret in ``<data_dir>/secret.key``, created
    (mode 0600) on the first start. (Whether to greet a first start is decided by the
    server, see ``cli.startup.greet_first_start``.)"""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    path = settings.data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    return _create_secret_file(path)


def _create_secret_file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its secret
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value
