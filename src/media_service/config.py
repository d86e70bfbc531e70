"""Settings from ``MEDIA_*`` environment variables and an optional ``.env`` file.

Backends are chosen by URL. Nothing here connects to anything: ``create_app(settings)``
and the CLI build the backends from these values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
GiB = 1024 * MiB
SEVEN_DAYS = 7 * 24 * 3600


class Settings(BaseSettings):
    """Every setting of the service; see the configuration table in README.md."""

    model_config = SettingsConfigDict(
        env_prefix="MEDIA_", env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Path("./data")
    database_url: str = "sqlite+aiosqlite:///./data/media.db"
    storage_url: str = "file://./data/blobs"
    events_url: str = "memory://"
    auto_migrate: bool | None = Field(
        default=None, description="Migrate on start; default: only on SQLite"
    )

    host: str = "0.0.0.0"  # noqa: S104 - a frame on the LAN must reach the service
    port: int = 8222
    web_workers: int = Field(
        default=1, ge=1, le=64, description="Server processes of `serve` (each runs consumers)"
    )
    public_url: str | None = Field(
        default=None, description="Base URL clients use, for absolute signed URLs"
    )

    jwt_secret: SecretStr | None = None
    jwks_url: str | None = None
    jwt_issuer: str = "media-service"
    jwt_audience: str | None = None
    signing_keys: SecretStr | None = Field(
        default=None, description="kid:secret,kid:secret — the first one signs"
    )
    signed_url_ttl_seconds: int = Field(default=900, ge=1, le=SEVEN_DAYS)
    signed_url_max_seconds: int = Field(default=SEVEN_DAYS, ge=1, le=SEVEN_DAYS)

    max_image_bytes: int = Field(default=200 * MiB, ge=1)
    max_video_bytes: int = Field(default=4 * GiB, ge=1)
    max_document_bytes: int = Field(default=200 * MiB, ge=1)
    max_image_pixels: int = Field(default=100_000_000, ge=1)
    max_file_name_length: int = Field(default=255, ge=16, le=1024)

    preprocess_uploads: bool = Field(
        default=True, description="Make renditions (and find faces) after each upload"
    )
    imaging_workers: int | None = Field(
        default=None, ge=1, le=64, description="Decode/encode processes; default: one per core"
    )
    render_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    upload_idle_timeout_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="An upload body silent this long is 408"
    )
    thumbnail_size: int = Field(default=256, ge=16, le=1024)
    thumbnail_quality: int = Field(default=75, ge=1, le=100)
    preview_size: int = Field(default=1440, ge=256, le=8192)
    preview_quality: int = Field(default=82, ge=1, le=100)
    preview_max_bytes: int | None = Field(
        default=None, ge=10_000, description="Byte budget of a preview (quality is lowered)"
    )
    max_rendition_side: int = Field(default=8192, ge=256, le=16384)
    feed_memory_bytes: int = Field(
        default=64 * MiB, ge=0, description="Frames' built feeds kept per process (0: none)"
    )
    detect_faces: bool = Field(default=True, description="Find faces when analysing photos")
    analyse_photos: bool = Field(
        default=True, description="EXIF, place, quality, colours, faces and text of each photo"
    )
    ocr: bool = Field(default=True, description="Read text with Tesseract when it is installed")
    ai_service_url: str | None = Field(
        default=None,
        description="An external AI/vision service to ask for labels (docs/analyzer.md)",
    )
    ai_service_token: SecretStr | None = None
    ai_service_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    gc_grace_seconds: int = Field(default=3600, ge=0)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    events_retention_days: float = Field(
        default=14.0,
        ge=1.0,
        description="Forget published events and handled-event records after this many days",
    )
    audit_retention_days: float = Field(
        default=365.0, ge=1.0, description="Forget audit trail entries after this many days"
    )
    housekeeping_interval_seconds: float = Field(default=3600.0, ge=1.0, le=7 * 24 * 3600)

    frame_precache_interval_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How often every active frame's upcoming photos are pre-cached; 0: never",
    )

    metrics_token: SecretStr | None = Field(
        default=None, description="When set, /metrics asks for Authorization: Bearer <token>"
    )

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "MEDIA_DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def migrate_on_start(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    @property
    def max_upload_bytes(self) -> int:
        """The largest upload of any type: the limit before the type is known."""
        return max(self.max_image_bytes, self.max_video_bytes, self.max_document_bytes)
