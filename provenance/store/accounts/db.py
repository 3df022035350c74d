"""The accounts database itself: its file, the one connection (one writer at a
time, ``BEGIN IMMEDIATE``), the schema and its named migrations. The jobs
(`users`, `tokens`, `vault`, `audit_trail`, `scans`, `documents`) each build on
`AccountsDatabase`; `accounts.Accounts` is all of them at once."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from provenance.core.timefmt import format_time, now_micros
from provenance.store.accounts.models import AccountError
from provenance.store.location import is_database_url, local_path

DATABASE_FILE = "accounts.db"

# --- schema

_MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = []


def _migration(name: str):
    def register(function):
        _MIGRATIONS.append((name, function))
        return function

    return register


@_migration("0001_accounts")
def _initial(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            role TEXT NOT NULL, party_did TEXT, party_name TEXT,
            password TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE login_failures (
            name TEXT PRIMARY KEY COLLATE NOCASE, failures INTEGER NOT NULL,
            last_us INTEGER NOT NULL, locked_until_us INTEGER NOT NULL DEFAULT 0)"""
    )
    db.execute(
        """CREATE TABLE sessions (
            id_hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL,
            created_us INTEGER NOT NULL, seen_us INTEGER NOT NULL)"""
    )
    db.execute("CREATE INDEX sessions_user ON sessions (user_id)")
    db.execute(
        """CREATE TABLE tokens (
            id INTEGER PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE,
            party_did TEXT NOT NULL, party_name TEXT NOT NULL, role TEXT NOT NULL,
            scope TEXT NOT NULL, label TEXT NOT NULL, created_by TEXT NOT NULL,
            created_at TEXT NOT NULL, revoked_at TEXT, last_used_us INTEGER)"""
    )
    db.execute(
        """CREATE TABLE party_keys (
            party_did TEXT PRIMARY KEY, party_name TEXT NOT NULL,
            pem BLOB NOT NULL, stored_at TEXT NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,
            role TEXT, party TEXT, action TEXT NOT NULL, params TEXT NOT NULL,
            outcome TEXT NOT NULL, hash TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX audit_action ON audit (action)")
    db.execute(
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
    )
    db.execute(
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
    )
    db.execute(
        """CREATE TABLE scans (
            lot TEXT NOT NULL, hour TEXT NOT NULL, place TEXT NOT NULL,
            count INTEGER NOT NULL, PRIMARY KEY (lot, hour, place)) WITHOUT ROWID"""
    )
    db.execute(
        """CREATE TABLE documents (
            sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, media_type TEXT NOT NULL,
            size INTEGER NOT NULL, party_did TEXT NOT NULL, uploaded_at TEXT NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE document_lots (
            sha256 TEXT NOT NULL, lot TEXT NOT NULL, event_id TEXT NOT NULL,
            PRIMARY KEY (sha256, lot, event_id)) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX document_lots_lot ON document_lots (lot)")


@_migration("0002_serial_scans")
def _serial_scans(db: sqlite_utils.Database) -> None:
    """Consumer scans of serialised items (`/01/…/10/{lot}/21/{serial}`) by serial,
    hour and coarse place, for the counterfeit rule (docs/rules.md)."""
    db.execute(
        """CREATE TABLE serial_scans (
            lot TEXT NOT NULL, serial TEXT NOT NULL, hour TEXT NOT NULL, place TEXT NOT NULL,
            count INTEGER NOT NULL, PRIMARY KEY (lot, serial, hour, place)) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX serial_scans_hour ON serial_scans (hour)")


@_migration("0003_serial_sightings")
def _serial_sightings(db: sqlite_utils.Database) -> None:
    """Consumer scans of a serial by minute and coarse position (latitude and longitude
    to 0.1°, about 11 km, from trusted CDN headers), for the impossible-travel rule
    (docs/rules.md). Never an address; kept for a bounded time (scans.RETENTION_DAYS)."""
    db.execute(
        """CREATE TABLE serial_sightings (
            lot TEXT NOT NULL, serial TEXT NOT NULL, minute TEXT NOT NULL,
            lat REAL NOT NULL, lon REAL NOT NULL, count INTEGER NOT NULL,
            PRIMARY KEY (lot, serial, minute, lat, lon)) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX serial_sightings_minute ON serial_sightings (minute)")


@_migration("0004_epcis_interface")
def _epcis_interface(db: sqlite_utils.Database) -> None:
    """The EPCIS REST interface's own records (docs/epcis.md): capture jobs and
    their outcome, named queries and their subscriptions, each kept per owner
    (the token's party DID, or its actor for a token without a party)."""
    db.execute(
        """CREATE TABLE epcis_capture_jobs (
            id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at TEXT NOT NULL,
            finished_at TEXT, running INTEGER NOT NULL, success INTEGER NOT NULL,
            behaviour TEXT NOT NULL, errors TEXT NOT NULL, events TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX epcis_capture_jobs_owner ON epcis_capture_jobs (owner, created_at)")
    db.execute(
        """CREATE TABLE epcis_queries (
            owner TEXT NOT NULL, name TEXT NOT NULL, query TEXT NOT NULL,
            created_at TEXT NOT NULL, PRIMARY KEY (owner, name)) WITHOUT ROWID"""
    )
    db.execute(
        """CREATE TABLE epcis_subscriptions (
            id TEXT PRIMARY KEY, owner TEXT NOT NULL, query_name TEXT NOT NULL,
            dest TEXT NOT NULL, secret TEXT, stream INTEGER NOT NULL, schedule TEXT,
            report_if_empty INTEGER NOT NULL, created_at TEXT NOT NULL,
            delivered_size INTEGER NOT NULL, next_due_us INTEGER, failures INTEGER NOT NULL,
            last_error TEXT, principal TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX epcis_subscriptions_query ON epcis_subscriptions (owner, query_name)")


class AccountsDatabase:
    """The accounts file, open and migrated. Thread-safe: one connection behind a
    lock (the work per call is small); other processes (the CLI) write beside it."""

    def __init__(self, directory: str | os.PathLike[str], *, clock: Callable[[], int] = now_micros):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.clock = clock
        path = self.directory / DATABASE_FILE
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # not world-readable
        self.path = path
        self.conn = sqlite3.connect(
            str(path), isolation_level=None, timeout=30, check_same_thread=False
        )
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: accounts, keys and the audit trail survive a power cut.
        self.conn.execute("PRAGMA synchronous=FULL")
        self.db = sqlite_utils.Database(self.conn)
        self._lock = threading.RLock()
        self._migrate()

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    def _migrate(self) -> None:
        with self._lock:
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"
            )
            done = {row[0] for row in self.conn.execute("SELECT name FROM _migrations")}
            unknown = done - {name for name, _ in _MIGRATIONS}
            if unknown:
                raise AccountError(
                    f"{self.path} has migrations this version does not know "
                    f"({', '.join(sorted(unknown))}): upgrade Provenance"
                )
            for name, function in _MIGRATIONS:
                if name in done:
                    continue
                with self._write():
                    function(self.db)
                    self.conn.execute("INSERT INTO _migrations (name) VALUES (?)", (name,))

    def _now(self) -> tuple[int, str]:
        now = self.clock()
        return now, format_time(now)


def default_directory(database: str | os.PathLike[str]) -> Path:
    """Where accounts live when not configured: ``accounts/`` beside the
    ledger's file; for a PostgreSQL ledger (a URL, which is no place on disk),
    ``accounts/`` in the working directory, as the CLI puts its cursors
    (`provenance.store.location.local_path`)."""
    place = str(database)
    ledger = local_path(place) if is_database_url(place) else Path(database)
    return ledger.resolve().parent / "accounts"
