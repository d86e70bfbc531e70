"""Where a version's objects live in the BlobStore: generated, never from client input.

Every version other than the original has a folder of its own inside the photo's folder
(``files/…/<file_id>/versions/<version_id>/``): its bytes, and the renditions made from
them. Deleting the photo deletes its folder, versions included; deleting a version
deletes its folder.
"""

from __future__ import annotations

from media_service.media.storage_keys import file_folder

CONTENT = "content"


def version_folder(photo_id: str, version_id: str) -> str:
    """Everything stored for one version."""
    return f"{file_folder(photo_id)}versions/{version_id}/"


def version_key(photo_id: str, version_id: str) -> str:
    """A version's bytes."""
    return version_folder(photo_id, version_id) + CONTENT


def rendition_folder(file_id: str, storage_path: str) -> str:
    """The folder renditions of the bytes at ``storage_path`` are kept in: the version's
    own folder for a version, the file's folder for the file itself."""
    versions = f"{file_folder(file_id)}versions/"
    if storage_path.startswith(versions) and storage_path.endswith("/" + CONTENT):
        return storage_path.removesuffix(CONTENT)
    return file_folder(file_id)
