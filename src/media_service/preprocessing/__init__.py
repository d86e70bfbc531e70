"""The preprocessing engine: renditions, posters, on-the-fly transforms and face crops.

An upload queues ``media.preprocess`` in its own transaction (the ``file.uploaded``
consumer queues it for files another storage service announces); that job decodes the
original once (in the imaging process pool), stores a thumbnail and a preview (plus a
poster frame for videos and PDFs), records what it learnt in ``media_analysis`` and marks
the file processed. ``GET …/rendition`` renders any other size on demand, keeps the result
in storage under the file's folder, and renders identical concurrent requests once. Face
boxes are detected on demand (or by ``media.detect-faces``) and aligned crops are
served at a requested size.
"""
