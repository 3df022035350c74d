"""One owner per file: an exclusive, non-blocking flock on ``{path}.lock``,
held for the owner's lifetime and released when its descriptor closes (also
when the process dies)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path


def exclusive_lock(path: Path, busy: Callable[[Path], Exception]) -> int:
    """The descriptor holding the lock; raises ``busy(lock_path)`` if another
    owner (in this process or another) holds it."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise busy(lock_path) from None
    return fd
