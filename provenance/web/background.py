"""Serve a WSGI app with waitress on a loopback port from a background thread,
and stop it cleanly — for the browser test and the scan benchmark.

waitress has no thread-safe stop: closing its sockets from another thread while
its loop sits in select() raises EBADF in the serving thread. So the loop here
runs one poll at a time, checks a stop flag between polls, and closes its own
sockets from the thread that owns them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

POLL_SECONDS = 0.05
JOIN_SECONDS = 10.0


@contextmanager
def serving(app, *, threads: int = 4) -> Iterator[str]:
    """Run `app` on 127.0.0.1 and a free port; yields its base URL."""
    import waitress.server
    from waitress import wasyncore

    httpd = waitress.server.create_server(app, host="127.0.0.1", port=0, threads=threads)
    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.is_set():
                # _map holds the listening socket, its trigger and every open
                # connection; the one-server run() loops over the same map.
                wasyncore.loop(timeout=POLL_SECONDS, map=httpd._map, count=1)
        finally:
            httpd.task_dispatcher.shutdown()
            wasyncore.close_all(httpd._map)

    thread = threading.Thread(target=run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.effective_port}"
    finally:
        stop.set()
        thread.join(timeout=JOIN_SECONDS)
        portal = app.extensions.get("provenance.portal")
        if portal is not None:  # the portal's background jobs and their files
            portal.jobs.close()
        if thread.is_alive():
            raise RuntimeError(f"waitress did not stop within {JOIN_SECONDS:.0f} s")
