"""Request and response bodies of the versions API (spec 003 §1 fields, plus a few)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    field_validator,
    model_validator,
)

from media_service.versions.models import PhotoVersion, VersionType
from media_service.versions.modes import ANGLES, CropBox, Edit, Mode

FILES_PATH = "/api/v1/media/files"
MAX_PARAMS_BYTES = 4096
EPSILON = 1e-9  # fractions that add up to 1 in decimal may not in binary

# No control characters, no invisible direction or zero-width marks: shown to people.
VersionName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        pattern=r"^[^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]+$",
    ),
]
VersionId = Annotated[str, Field(min_length=1, max_length=50)]


class VersionOut(BaseModel):
    """One version. ``file_id`` is the media file holding its bytes (the photo's own
    file); ``cloud_url`` is where the bytes are downloaded (bearer token required);
    ``local_path`` is their storage key."""

    version_id: str
    photo_id: str
    user_id: str
    organization_id: str
    version_name: str
    version_type: VersionType
    processing_mode: str | None
    file_id: str
    cloud_url: str
    local_path: str
    file_size: int
    content_type: str
    sha256: str
    width: int | None
    height: int | None
    processing_params: dict[str, Any]
    metadata: dict[str, Any]
    is_current: bool
    version_number: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, version: PhotoVersion) -> VersionOut:
        return cls(
            version_id=version.version_id,
            photo_id=version.photo_id,
            user_id=version.user_id,
            organization_id=version.organization_id,
            version_name=version.version_name,
            version_type=version.version_type,
            processing_mode=version.processing_mode,
            file_id=version.file_id,
            cloud_url=f"{FILES_PATH}/{version.photo_id}/content?version={version.version_number}",
            local_path=version.storage_path,
            file_size=version.file_size,
            content_type=version.content_type,
            sha256=version.sha256,
            width=version.width,
            height=version.height,
            processing_params=dict(version.processing_params or {}),
            metadata=dict(version.version_metadata or {}),
            is_current=version.is_current,
            version_number=version.version_number,
            created_at=version.created_at,
            updated_at=version.updated_at,
        )


class VersionList(BaseModel):
    """Every version of a photo, oldest first (at most a few dozen: see MAX_VERSIONS)."""

    photo_id: str
    current_version_id: str | None
    items: list[VersionOut]


class VersionRequested(BaseModel):
    """An AI-enhanced version on its way: it appears under ``version_id`` when the job
    is done (``media.version.created`` announces it)."""

    version_id: str
    photo_id: str
    version_type: VersionType
    status: Literal["queued"] = "queued"
    job_id: str


# -- what a client asks for -----------------------------------------------------------------


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RotateParams(_Params):
    angle: Literal[90, 180, 270] = Field(description=f"Clockwise, one of {ANGLES}")


class CropParams(_Params):
    """A box in pixels of the upright image, or (``unit="fraction"``) in fractions of
    its sides; checked against the image when it is rendered."""

    x: float = Field(ge=0)
    y: float = Field(ge=0)
    width: float = Field(gt=0)
    height: float = Field(gt=0)
    unit: Literal["px", "fraction"] = "px"

    @model_validator(mode="after")
    def _inside(self) -> CropParams:
        if self.unit == "fraction" and (
            self.x + self.width > 1 + EPSILON or self.y + self.height > 1 + EPSILON
        ):
            raise ValueError("a fractional box must lie inside the image (x+width, y+height ≤ 1)")
        return self


class NoParams(_Params):
    pass


_PARAMS: dict[Mode, type[_Params]] = {Mode.ROTATE: RotateParams, Mode.CROP: CropParams}


class _Create(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version_name: VersionName | None = None
    source_version_id: VersionId | None = Field(
        default=None, description="The version to start from (default: the current one)"
    )
    set_current: bool = Field(default=False, description="Make the new version current")


class StyledVersionCreate(_Create):
    """A built-in processing mode, rendered now from the source version."""

    version_type: Literal[VersionType.STYLED]
    processing_mode: Mode
    processing_params: dict[str, Any] = Field(default_factory=dict)

    def edit(self) -> Edit:
        """The edit for the imaging worker. Raises ``ValidationError`` when
        ``processing_params`` do not fit the mode (located inside ``processing_params``)."""
        model = _PARAMS.get(self.processing_mode, NoParams)
        params = model.model_validate(self.processing_params)
        if isinstance(params, RotateParams):
            return Edit(self.processing_mode, angle=params.angle)
        if isinstance(params, CropParams):
            box = CropBox(params.x, params.y, params.width, params.height, params.unit)
            return Edit(self.processing_mode, crop=box)
        return Edit(self.processing_mode)


class AiVersionCreate(_Create):
    """An enhancement by the external AI service, made by a background job."""

    version_type: Literal[VersionType.AI_ENHANCED]
    processing_mode: str = Field(default="auto", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    processing_params: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("processing_params")
    @classmethod
    def _small(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        try:
            encoded = orjson.dumps(value)
        except TypeError as exc:  # e.g. an integer beyond 64 bits: a client error, not a 500
            raise ValueError(f"not storable as JSON: {exc}") from None
        if len(encoded) > MAX_PARAMS_BYTES:
            raise ValueError(f"at most {MAX_PARAMS_BYTES} bytes of JSON")
        if b"\\u0000" in encoded:  # PostgreSQL's JSONB cannot hold NUL
            raise ValueError("NUL characters are not allowed")
        return value


VersionCreate = Annotated[
    StyledVersionCreate | AiVersionCreate, Field(discriminator="version_type")
]


class EditedFields(BaseModel):
    """Form fields next to an edited file's ``file`` part."""

    model_config = ConfigDict(extra="forbid")

    version_type: Literal[VersionType.EDITED] = VersionType.EDITED
    version_name: VersionName | None = None
    set_current: bool = False


def inline_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """``adapter``'s JSON schema with its definitions written in place (a request body
    given through ``openapi_extra`` cannot point into the document's components)."""
    schema = adapter.json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    resolved.get("discriminator", {}).pop("mapping", None)  # it pointed at the definitions
    return resolved
