"""Photo versions (spec 003 §1): the original, edited uploads, built-in styles rendered
by the imaging pool, and AI-enhanced versions made by the external AI service.

A photo is an Image media file; its versions are stored under the file's folder and
listed in ``photo_versions``. Exactly one version of a photo is current (a partial unique
index says so); downloads and renditions serve it unless a version is named.
"""
