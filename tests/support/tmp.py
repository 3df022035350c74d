"""Temporary files in memory (a pytest plugin, registered in tests/conftest.py).

Most tests write a SQLite ledger under `tmp_path`, and SQLite syncs every commit
to the disk: on a disk that other work keeps busy, those syncs were most of the
suite's time (a portal test: 0.2 s of fsync, 0.03 s of work). When the machine
has a tmpfs at /dev/shm with room to spare, `tmp_path` (and `tempfile`) use it.
Nothing a test checks depends on the disk: the kill -9 tests kill processes,
not the machine, and what a killed process wrote is in the page cache either way.

Left alone when you chose a place yourself (`--basetemp`, PYTEST_DEBUG_TEMPROOT,
TMPDIR) or set PROVENANCE_TEST_TMP=disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MEMORY = Path("/dev/shm")
ROOM = 1 << 30  # free bytes the tmpfs must have: the suite writes a few hundred MiB at most


def in_memory_tmp(config, environ=os.environ) -> Path | None:
    """The tmpfs to put temporary files in, or None to leave them where they are."""
    chosen = config.option.basetemp or any(
        environ.get(name) for name in ("PYTEST_DEBUG_TEMPROOT", "TMPDIR")
    )
    if chosen or environ.get("PROVENANCE_TEST_TMP") == "disk":
        return None
    try:
        if not os.access(MEMORY, os.W_OK | os.X_OK) or shutil.disk_usage(MEMORY).free < ROOM:
            return None
        if os.statvfs(MEMORY).f_flag & os.ST_NOEXEC:  # tests run programs they build there
            return None
    except OSError:
        return None
    return MEMORY


def pytest_configure(config):
    place = in_memory_tmp(config)
    if place is not None:
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(place)  # tmp_path, tmp_path_factory
        os.environ["TMPDIR"] = str(place)  # tempfile, here and in child processes
        tempfile.tempdir = None  # recomputed from TMPDIR on next use
