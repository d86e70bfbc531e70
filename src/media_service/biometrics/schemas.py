"""Request and response bodies of ``/api/v1/media/users/{user_id}/consent`` and
``…/biometrics``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool


class ConsentUpdate(BaseModel):
    """A person's choice about face processing."""

    model_config = ConfigDict(extra="forbid")

    face_processing: StrictBool = Field(
        description="false: no face detection, no faces or crops served, and the face "
        "data already held is removed; true: allowed again"
    )


class BiometricReport(BaseModel):
    """What an erasure of biometric data removed (all zeros when there was nothing left)."""

    user_id: str
    profile_images_deleted: int = Field(
        description="Image files owned by the person as a Student, deleted like any file "
        "(file.deleted is published; their stored objects follow)"
    )
    face_records_cleared: int = Field(
        description="Rows whose face data was cleared: detected faces (media_analysis) "
        "and face metadata (photo_metadata), counted separately"
    )
    crops_deleted: int = Field(description="Stored face crops deleted from the person's files")
    files_kept: int = Field(description="The person's other files, which stay")


class ConsentOut(BaseModel):
    """A person's consent to face processing, as it applies now."""

    user_id: str
    face_processing: bool
    explicit: bool = Field(
        description="false: the person made no choice and the default (allowed) applies"
    )
    updated_at: datetime | None
    updated_by: str | None
    cleared: BiometricReport | None = Field(
        default=None, description="On withdrawal: the face data removed by this request"
    )
