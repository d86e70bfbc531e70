"""Where a file's objects live in the BlobStore: generated, never from client input."""

from __future__ import annotations


def file_folder(file_id: str) -> str:
    """Everything stored for one file (original, renditions, crops) is under this prefix.

    The two characters come from the end of the id's random part, so a local directory
    never holds millions of entries.
    """
    return f"files/{file_id[-2:]}/{file_id}/"


def storage_key(file_id: str) -> str:
    """The original upload."""
    return file_folder(file_id) + "original"
