"""Every table of every domain, imported so that migrations see one metadata."""

from media_service.audit import models as audit_models
from media_service.biometrics import models as biometrics_models
from media_service.db.base import Base
from media_service.events import models as events_models
from media_service.frames import models as frames_models
from media_service.media import models as media_models
from media_service.metadata import models as metadata_models
from media_service.metadata import sync as metadata_sync  # keeps copies in step on flush
from media_service.playlists import models as playlists_models
from media_service.preprocessing import models as preprocessing_models
from media_service.privacy import models as privacy_models
from media_service.versions import models as versions_models

metadata = Base.metadata

__all__ = [
    "audit_models",
    "biometrics_models",
    "events_models",
    "frames_models",
    "media_models",
    "metadata",
    "metadata_models",
    "metadata_sync",
    "playlists_models",
    "preprocessing_models",
    "privacy_models",
    "versions_models",
]
