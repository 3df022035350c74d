"""The queue in front of a SQLite ledger's write lock, for several writer processes.

SQLite serialises writers itself (`BEGIN IMMEDIATE`), but a writer that finds
the lock taken sleeps in its busy handler on a fixed schedule that grows to
100 ms a try, so with two ingest nodes committing back to back the lock was
often free while the other slept. Writers first take an advisory `flock` on
`{ledger}-writer` (next to SQLite's own `-wal` and `-shm`), polled every
0.1–2 ms, and hand the write lock over within about a millisecond of its release
(docs/ingest.md, "Several writers, one ledger"). It is only a queue:
correctness stays with SQLite's lock, a writer that does not take it (an older
version, the sqlite3 shell) is still excluded by SQLite, and after
*timeout* a writer stops queueing and lets SQLite's busy timeout decide.
The kernel drops the lock with the process that held it (kill -9 included).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

POLL_MIN_S = 0.0001
POLL_MAX_S = 0.002
QUEUE_TIMEOUT_S = 30.0  # then SQLite's own busy timeout takes over


class WriterLock:
    """An advisory lock on ``{path}-writer``; the file is made at first use."""

    def __init__(self, path: Path, timeout: float = QUEUE_TIMEOUT_S):
        self.path = Path(f"{path}-writer")
        self.timeout = timeout
        self._fd: int | None = None
        self._held = False
        self._tick = threading.Event()  # never set: its wait is the polling interval

    def acquire(self) -> None:
        """Take the lock, or give up queueing after the timeout (never raises
        for a lock file that cannot be made: SQLite's lock still holds)."""
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                return
        deadline = time.monotonic() + self.timeout
        delay = POLL_MIN_S
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return
                self._tick.wait(delay)
                delay = min(POLL_MAX_S, delay * 2)
            else:
                self._held = True
                return

    def release(self) -> None:
        if self._held and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._held = False

    def close(self) -> None:
        self.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
