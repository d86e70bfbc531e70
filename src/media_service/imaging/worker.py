"""The loop run by each imaging worker process (see :mod:`media_service.imaging.pool`)."""

from __future__ import annotations

import signal
from multiprocessing.connection import Connection

from media_service.imaging.errors import ImagingError


def worker_main(conn: Connection) -> None:
    """Serve ``(fn, args)`` requests from ``conn`` until it closes.

    Replies ``(True, result)`` or ``(False, exception)``. The parent closing its end, or
    dying, ends the loop, so no worker outlives the service.
    """
    from media_service.imaging._vips import configure_worker  # loads libvips here only

    # Ctrl-C reaches the whole process group: let the parent decide, and exit on EOF.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_worker()
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[bool, object] = (True, fn(*args))
        except Exception as exc:
            reply = (False, exc)
        try:
            conn.send(reply)
        except Exception as exc:  # the result or the exception could not be pickled
            conn.send((False, ImagingError(f"imaging result cannot be returned: {exc!r}")))
