"""Which imaging failures are the file's fault (fail the job now) and how clients see them."""

from __future__ import annotations

import pytest

from media_service.imaging.errors import CorruptImage, ImageTooLarge, ImagingError, UnsupportedImage
from media_service.imaging.video import CorruptMedia
from media_service.preprocessing.errors import (
    RenderUnavailable,
    SourceCorrupt,
    SourceTooLarge,
    SourceUnsupported,
    client_error,
    source_at_fault,
)


@pytest.mark.parametrize(
    ("error", "at_fault", "answer"),
    [
        (CorruptImage("truncated"), True, SourceCorrupt),
        (CorruptMedia("no video stream"), True, SourceCorrupt),
        (ImageTooLarge("102 MP"), True, SourceTooLarge),
        (UnsupportedImage("svg"), True, SourceUnsupported),
        (ImagingError("imaging worker crashed"), False, RenderUnavailable),
    ],
)
def test_only_errors_about_the_file_fail_a_job_for_good(
    error: ImagingError, at_fault: bool, answer: type
) -> None:
    assert source_at_fault(error) is at_fault
    response = client_error(error)
    assert type(response) is answer
    assert response.status == (422 if at_fault else 503)
