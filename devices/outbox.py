"""A persistent store-and-forward queue in SQLite: what a gateway or logger has
made but the broker has not yet acknowledged.

- An entry is durable once `put` returns (WAL, ``synchronous=FULL``): it
  survives a crash or a power cut from then on.
- Entries keep their order (``id`` ascending; ids are never reused, even after
  the queue empties, because the table is ``AUTOINCREMENT``).
- An entry leaves only through `ack`, which `devices.uplink.Uplink` calls after
  the broker's PUBACK for the message that carried it.
- One `Outbox` object owns a file: a second one (in this or another process)
  is refused with `OutboxLocked`, because two uplinks draining one queue would
  break delivery order. The lock dies with the process, so a restart after
  ``kill -9`` just works.
- Bounded: at `max_entries` a `put` raises `OutboxFull`; nothing is dropped
  silently.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from devices.filelock import exclusive_lock
from provenance.core.errors import ProvenanceError, ValidationError
from provenance.core.timefmt import now_micros

log = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES = 10_000_000
MAX_PAYLOAD_BYTES = 1024 * 1024  # one MQTT message must stay below broker packet limits
MAX_TOPIC_BYTES = 65_535  # MQTT topic names are length-prefixed with 16 bits
_ACK_CHUNK = 500  # ids per DELETE statement (SQLite's variable limit is larger)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_us INTEGER NOT NULL
)
"""


class OutboxFull(ProvenanceError):
    """The outbox holds `max_entries` entries; the caller must not drop data silently."""


class OutboxLocked(ProvenanceError):
    """Another `Outbox` (in this or another process) already owns the file."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    topic: str
    payload: bytes
    created_us: int


def _check_topic(topic: str) -> str:
    if not isinstance(topic, str) or not topic:
        raise ValidationError("topic", "must be a non-empty MQTT topic name")
    if "+" in topic or "#" in topic or "\0" in topic:
        raise ValidationError("topic", f"{topic!r}: a publish topic has no wildcards or NUL")
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        raise ValidationError("topic", f"longer than {MAX_TOPIC_BYTES} bytes")
    return topic


def _check_payload(payload: bytes, limit: int) -> bytes:
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ValidationError("payload", f"must be bytes, got {type(payload).__name__}")
    payload = bytes(payload)
    if len(payload) > limit:
        raise ValidationError("payload", f"{len(payload)} bytes is more than the {limit} allowed")
    return payload


class Outbox:
    """Thread-safe persistent FIFO of (topic, payload). ``path=None`` keeps it
    in memory (tests; nothing survives the process)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_payload: int = MAX_PAYLOAD_BYTES,
        clock: Callable[[], int] = now_micros,
    ):
        if max_entries < 1:
            raise ValidationError("max_entries", "must be at least 1")
        self.path = None if path is None else Path(path)
        self.max_entries = max_entries
        self.max_payload = max_payload
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._lock_fd: int | None = None
        if self.path is None:
            target = ":memory:"
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock_file(self.path)
            target = str(self.path)
        try:
            self._db = sqlite3.connect(
                target, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            if self.path is not None:
                mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise ProvenanceError(f"{self.path}: SQLite refused WAL mode (got {mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
            self._count = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        except BaseException:
            self._release_file_lock()
            raise
        self._closed = False
        if self._count:
            log.info("outbox %s: %d entries waiting from before", self.path, self._count)

    # --- producers

    def put(self, topic: str, payload: bytes) -> int:
        """Append one entry; it is on disk when this returns. Returns its id."""
        return self.put_many([(topic, payload)])[0]

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> list[int]:
        """Append entries in one transaction (all or none); returns their ids in order."""
        rows = [
            (_check_topic(topic), _check_payload(payload, self.max_payload))
            for topic, payload in items
        ]
        if not rows:
            return []
        now = self._clock()
        ids: list[int] = []
        with self._lock:
            self._check_open()
            if self._count + len(rows) > self.max_entries:
                raise OutboxFull(
                    f"outbox {self.path or '(memory)'} is full: {self._count} entries waiting, "
                    f"max_entries={self.max_entries}, cannot add {len(rows)}. Nothing was "
                    "added. The uplink has not delivered for a long time: check the broker "
                    "connection and credentials, or raise max_entries."
                )
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for topic, payload in rows:
                    cursor = self._db.execute(
                        "INSERT INTO outbox (topic, payload, created_us) VALUES (?, ?, ?)",
                        (topic, payload, now),
                    )
                    ids.append(cursor.lastrowid)  # type: ignore[arg-type]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count += len(rows)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:
                log.exception("outbox listener %r failed", listener)
        return ids

    # --- the uplink

    def peek(self, limit: int, after: int = 0) -> list[OutboxEntry]:
        """Up to *limit* entries with id > *after*, oldest first; removes nothing."""
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT id, topic, payload, created_us FROM outbox WHERE id > ? "
                "ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [OutboxEntry(row[0], row[1], bytes(row[2]), row[3]) for row in rows]

    def ack(self, ids: Iterable[int]) -> None:
        """Delete delivered entries (unknown ids are ignored)."""
        wanted = list(ids)
        if not wanted:
            return
        with self._lock:
            self._check_open()
            before = self._db.total_changes
            # A delete that a power cut undoes costs one duplicate (harmless: the
            # ledger dedupes), so acks skip the fsync; the next put syncs them.
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for start in range(0, len(wanted), _ACK_CHUNK):
                        chunk = wanted[start : start + _ACK_CHUNK]
                        marks = ",".join("?" * len(chunk))
                        self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            self._count -= self._db.total_changes - before

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call *listener()* after every successful put (in the producer's thread,
        outside the lock; keep it short). Returns a function that removes it."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    # --- status

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def oldest_age_s(self, now_us: int) -> float | None:
        """Seconds since the oldest waiting entry was put, or None when empty."""
        with self._lock:
            self._check_open()
            row = self._db.execute("SELECT created_us FROM outbox ORDER BY id LIMIT 1").fetchone()
        return None if row is None else max(0.0, (now_us - row[0]) / 1e6)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._db.close()
            self._release_file_lock()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Outbox {self.path or '(memory)'} {self._count} waiting>"

    def _check_open(self) -> None:
        if self._closed:
            raise ProvenanceError(f"outbox {self.path or '(memory)'} is closed")

    def _release_file_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None


def _lock_file(path: Path) -> int:
    """Hold an exclusive flock on ``{path}.lock`` for the owner's lifetime."""
    return exclusive_lock(
        path,
        lambda lock_path: OutboxLocked(
            f"outbox {path} is already open (lock {lock_path} is held by this or another "
            "process): one uplink per outbox keeps delivery in order"
        ),
    )
