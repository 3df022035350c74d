"""Online backups of a SQLite ledger: a consistent copy taken while the ingest
service, the web app and the rules keep writing and reading (docs/deploy.md).

SQLite's online backup API copies the database as one committed state of the
ledger — never half a group commit. It copies in a single step, under one read
snapshot: the ledger is in WAL mode, so writers keep appending to the
write-ahead log meanwhile and are never stopped (a copy in several steps would
start again after every commit by another connection, and under a steady
ingest might never finish). The copy
is then opened on its own and checked (SQLite's integrity check, the schema
version, the log's size) before it is put in place, by rename, so a backup
file is either complete and checked or absent.

PostgreSQL ledgers are backed up with PostgreSQL's own tools (pg_dump or base
backups with WAL archiving); docs/deploy.md says how.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from provenance.store.db import Store, StoreError


@dataclass(frozen=True)
class Backup:
    path: Path
    log_size: int
    bytes: int


def backup(source: Path, target: Path) -> Backup:
    """Copy the ledger at *source* into *target* (which must not exist), check
    the copy and return what it holds. Raises `StoreError` with what to do."""
    if target.exists():
        raise StoreError(f"{target} exists already: give a new file (backups never overwrite)")
    if not target.parent.is_dir():
        raise StoreError(f"no folder {target.parent}: create it first")
    live = Store(source, create=False, readonly=True)  # refuses what is not a ledger
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)  # left by a backup that was killed
    try:
        copy = sqlite3.connect(partial)
        try:
            live.conn.backup(copy)  # pages=-1: everything in one step, one snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            copy.close()
        checked = _check(partial)
        os.replace(partial, target)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"the backup of {source} failed: {exc}; nothing was written") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        live.close()
    return Backup(target, checked, target.stat().st_size)


def _check(path: Path) -> int:
    """The log size of the copy at *path*, after SQLite's integrity check and
    our own schema check; `StoreError` if the copy is not sound."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if verdict != "ok":
        raise StoreError(f"the copy failed SQLite's integrity check ({verdict}); nothing was kept")
    copy = Store(path, create=False, readonly=True)
    try:
        return copy.log_size()
    finally:
        copy.close()
