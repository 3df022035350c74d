"""The witness's durable state: one SQLite file (WAL, synchronous=FULL).

Per log origin it keeps the size and root hash of the last checkpoint it cosigned
(with that checkpoint, cosigned, for monitors), and the log keys it trusts. The only
way to move a log forward is :meth:`WitnessState.advance`, a compare-and-swap: it
applies only if the stored (size, root) are still the ones the caller checked its
consistency proof against, so two concurrent requests can never both advance a log
(tlog-witness's rollback race). One writer thread commits swaps in groups: requests
for different logs that arrive together share one fsync.

It also keeps **evidence**: every checkpoint signed by a trusted log key that
was refused as inconsistent with what was cosigned (a fork of the same size, or
a history the log's own proof cannot join), with the request's proof and the
checkpoint cosigned then — two notes signed by one log that cannot both be true
are what anyone needs to show that the log split its view (docs/protocol.md §10).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import queue
import sqlite3
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from provenance.core.checkpoint import format_verifier_key, parse_verifier_key
from provenance.core.errors import ProvenanceError
from provenance.core.merkle import EMPTY_ROOT

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: the evidence table (a version-1 database is brought up to it)
MAX_GROUP = 256
MAX_EVIDENCE = 1000
"""ForkEvidence kept per log: the first ones are kept (the first proof of a split
view is what matters); further refusals are only logged and counted."""
"""At most this many swaps share one transaction (one fsync)."""
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    size TEXT NOT NULL,             -- last cosigned tree size, decimal (up to 2**64-1)
    root_hash BLOB NOT NULL,        -- its root (the empty tree's root at size 0)
    note TEXT,                      -- that checkpoint, with the log's and our signatures
    updated INTEGER                 -- POSIX seconds of our cosignature
);
CREATE TABLE IF NOT EXISTS log_keys (
    origin TEXT NOT NULL REFERENCES logs(origin),
    verifier_key TEXT NOT NULL,
    PRIMARY KEY (origin, verifier_key)
);
"""
_EVIDENCE = """
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    received INTEGER NOT NULL,      -- POSIX seconds
    reason TEXT NOT NULL,           -- why it was refused
    old_size TEXT NOT NULL,         -- the request's old size (decimal)
    proof TEXT NOT NULL,            -- its consistency proof, base64 lines
    refused TEXT NOT NULL,          -- the checkpoint note refused, as the log signed it
    cosigned TEXT,                  -- what we had cosigned then (log's and our signatures)
    digest BLOB NOT NULL UNIQUE     -- SHA-256 of old size, proof and note: kept once
);
"""


class StateError(ProvenanceError):
    """The witness's folder or database is missing, not a witness's, or unusable."""


@dataclass(frozen=True)
class LogState:
    origin: str
    size: int
    root_hash: bytes
    note: str | None


@dataclass(frozen=True)
class ForkEvidence:
    """A checkpoint signed by a log key we trust that this witness refused as
    inconsistent with what it had cosigned: with *cosigned* (both signed by
    the log), proof that the log showed two histories (docs/protocol.md §10)."""

    origin: str
    received: int
    reason: str
    old_size: int
    proof: tuple[bytes, ...]
    refused: str
    cosigned: str | None

    def digest(self) -> bytes:
        text = f"{self.old_size}\n" + "".join(
            base64.b64encode(p).decode() + "\n" for p in self.proof
        )
        return hashlib.sha256((text + self.refused).encode("utf-8")).digest()

    def to_json(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "received": self.received,
            "reason": self.reason,
            "old_size": self.old_size,
            "proof": [base64.b64encode(p).decode() for p in self.proof],
            "refused": self.refused,
            "cosigned": self.cosigned,
        }


@dataclass(frozen=True)
class Swap:
    """Move ``origin`` from (old_size, old_root) to (size, root, note)."""

    origin: str
    old_size: int
    old_root: bytes
    size: int
    root_hash: bytes
    note: str
    updated: int


class Conflict(Exception):
    """The log moved since the caller looked: ``size`` is the stored size now."""

    def __init__(self, size: int):
        self.size = size
        super().__init__(f"the last cosigned size is now {size}")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StateError(f"{path}: cannot use write-ahead logging (journal mode {mode})")
    conn.execute("PRAGMA synchronous=FULL")  # a swap is on disk before we answer
    return conn


class WitnessState:
    """The witness database at ``path``. ``create`` makes a new one (refusing an
    existing file); otherwise the file must exist and be a witness's."""

    def __init__(self, path: str | Path, *, create: bool = False, name: str | None = None):
        self.path = Path(path)
        if create:
            if self.path.exists():
                raise StateError(f"{self.path} already exists; refusing to overwrite a witness")
            if not name:
                raise StateError("a new witness needs its name")
        elif not self.path.is_file():
            raise StateError(
                f"{self.path}: no witness here; run `provenance witness init --dir "
                f"{self.path.parent} --name NAME` first"
            )
        try:
            self._conn = _connect(self.path)
            if create:
                self._conn.executescript(_SCHEMA + _EVIDENCE)
                with self._transaction():
                    self._conn.execute(
                        "INSERT INTO meta VALUES ('schema', ?), ('name', ?)",
                        (str(SCHEMA_VERSION), name),
                    )
            version = self._meta("schema")
            if version == "1":  # before evidence was kept: add its table
                with self._transaction():
                    self._conn.execute(_EVIDENCE)
                    self._conn.execute(
                        "UPDATE meta SET value = ? WHERE name = 'schema'", (str(SCHEMA_VERSION),)
                    )
                version = str(SCHEMA_VERSION)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path}: not a witness database ({exc})") from None
        if version != str(SCHEMA_VERSION):
            raise StateError(
                f"{self.path}: witness database version {version}, this witness reads "
                f"{SCHEMA_VERSION}: run the newer release that made it"
            )
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Swap, Future[None]] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None

    # --- reading ---------------------------------------------------------------------------

    def _meta(self, name: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    @property
    def name(self) -> str:
        return self._meta("name") or ""

    def log(self, origin: str) -> LogState | None:
        """The stored state of a followed log, or None when the witness does not follow it."""
        with self._lock:
            row = self._conn.execute(
                "SELECT size, root_hash, note FROM logs WHERE origin = ?", (origin,)
            ).fetchone()
        return LogState(origin, int(row[0]), bytes(row[1]), row[2]) if row else None

    def logs(self) -> list[LogState]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT origin, size, root_hash, note FROM logs ORDER BY origin"
            ).fetchall()
        return [LogState(o, int(s), bytes(r), n) for o, s, r, n in rows]

    def log_keys(self) -> dict[str, list[tuple[str, bytes]]]:
        """origin -> [(key name, public key)] of every followed log."""
        with self._lock:
            rows = self._conn.execute("SELECT origin, verifier_key FROM log_keys").fetchall()
        out: dict[str, list[tuple[str, bytes]]] = {}
        for origin, vkey in rows:
            out.setdefault(origin, []).append(parse_verifier_key(vkey))
        return out

    def evidence(self, origin: str | None = None) -> list[ForkEvidence]:
        """The evidence kept, oldest first (of one log, or of all)."""
        query = "SELECT origin, received, reason, old_size, proof, refused, cosigned FROM evidence"
        args: tuple[str, ...] = ()
        if origin is not None:
            query, args = query + " WHERE origin = ?", (origin,)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY id", args).fetchall()
        return [
            ForkEvidence(
                o,
                int(t),
                r,
                int(old),
                tuple(base64.b64decode(line) for line in proof.split()),
                refused,
                cosigned,
            )
            for o, t, r, old, proof, refused, cosigned in rows
        ]

    def keep_evidence(self, evidence: ForkEvidence) -> bool:
        """Keep *evidence* (once; at most MAX_EVIDENCE per log); False when it
        was kept already or the log has its maximum; `StateError` when the
        database fails."""
        try:
            return self._keep(evidence)
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: the evidence was not kept ({exc})") from None

    def _keep(self, evidence: ForkEvidence) -> bool:
        proof = "".join(base64.b64encode(p).decode() + "\n" for p in evidence.proof)
        with self._lock, self._transaction():
            (count,) = self._conn.execute(
                "SELECT COUNT(*) FROM evidence WHERE origin = ?", (evidence.origin,)
            ).fetchone()
            if count >= MAX_EVIDENCE:
                return False
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO evidence (origin, received, reason, old_size, proof, "
                "refused, cosigned, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    evidence.origin,
                    evidence.received,
                    evidence.reason,
                    str(evidence.old_size),
                    proof,
                    evidence.refused,
                    evidence.cosigned,
                    evidence.digest(),
                ),
            )
            return cursor.rowcount == 1

    # --- writing ---------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    def add_log(self, origin: str, name: str, public_key: bytes) -> bool:
        """Follow ``origin``, trusting this log key for it; False if already trusted."""
        vkey = format_verifier_key(name, public_key)
        with self._lock, self._transaction():
            self._conn.execute(
                "INSERT OR IGNORE INTO logs (origin, size, root_hash) VALUES (?, '0', ?)",
                (origin, EMPTY_ROOT),
            )
            cur = self._conn.execute("INSERT OR IGNORE INTO log_keys VALUES (?, ?)", (origin, vkey))
            return cur.rowcount == 1

    def advance(self, swap: Swap) -> None:
        """Compare-and-swap, durable when it returns; raises :class:`Conflict` when
        the stored (size, root) are no longer ``(swap.old_size, swap.old_root)``."""
        future: Future[None] = Future()
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="witness-writer", daemon=True
                )
                self._writer.start()
        self._queue.put((swap, future))
        future.result()

    def _write_loop(self) -> None:
        conn = _connect(self.path)
        while True:
            first = self._queue.get()
            if first is None:
                conn.close()
                return
            jobs = [first]
            while len(jobs) < MAX_GROUP:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)
                    break
                jobs.append(job)
            outcomes: list[BaseException | None] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for swap, _ in jobs:
                        outcomes.append(self._apply(conn, swap))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                log.error("witness database write failed: %s", exc)
                error = StateError(f"{self.path}: the witness database failed ({exc})")
                outcomes = [error] * len(jobs)
            for (_, future), outcome in zip(jobs, outcomes, strict=True):
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)

    @staticmethod
    def _apply(conn: sqlite3.Connection, swap: Swap) -> Conflict | None:
        row = conn.execute(
            "SELECT size, root_hash FROM logs WHERE origin = ?", (swap.origin,)
        ).fetchone()
        if row is None:
            return Conflict(0)
        size, root = int(row[0]), bytes(row[1])
        if (size, root) != (swap.old_size, swap.old_root):
            return Conflict(size)
        conn.execute(
            "UPDATE logs SET size = ?, root_hash = ?, note = ?, updated = ? WHERE origin = ?",
            (str(swap.size), swap.root_hash, swap.note, swap.updated, swap.origin),
        )
        return None

    def close(self) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(None)
            writer.join(timeout=10)
        self._conn.close()


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
