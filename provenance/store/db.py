"""SQLite storage (WAL) through sqlite-utils: the one adapter the ledger writes
through. Everything here is plain persistence; the decisions are the ledger's.
`Store("postgresql://…")` runs this same code on PostgreSQL (postgres.py).

`Store` lives here; its row models in rows.py, the schema's named migrations in
migrations.py (with backfills.py), the derived tables' reads and writes in
state.py and derived.py, and the questions only the portal or the audit ask in
queries.py and replay.py.

Layout (docs/architecture.md has the why):
- events: one row per accepted event, keyed by its log index; the canonical
  envelope is rebuilt from these columns (signer and lots by id).
- chains: one hash chain per lot and per identity (subject URI or did),
  with its head link and length; links: every link of every chain.
- log_nodes: interior Merkle nodes of complete subtrees at level >= 4
  (lower levels are recomputed from the leaf hashes in events).
- checkpoints: the signed checkpoint made at each commit.
- identities, lots, attachments, shipments: state derived from the events.
- lineage: input lot -> output lot of every transform (both directions indexed);
  recalls: each lot's recalls by source lot, so a recall cascades downstream and
  a lift ends only what its source caused (docs/lineage.md).
- holds, flags: what the rules key decided about each lot (docs/rules.md): holds
  with the release that ended them, flags once per (lot, rule, key).
- rejects: what was refused and why, with a bounded copy of the input; a row
  counts `count` refusals (more than one: an aggregate, provenance/ledger/rejects.py).
- custodians: every party that ever held each lot (the commissioner and every
  receiver), which decides who may sign inspections about a lot and who sees
  it in the portal; prefixes: the GS1 company prefixes each party may
  commission under, from enrolments and grants (docs/protocol.md §3).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

import sqlite_utils

from provenance.core.envelope import Envelope
from provenance.core.errors import ProvenanceError
from provenance.core.kinds import KIND_CODES, KIND_NAMES
from provenance.core.merkle import hash_leaf, root_from_leaf_hashes
from provenance.store.errors import DATABASE_ERRORS
from provenance.store.location import is_database_url
from provenance.store.migrations import MIGRATIONS
from provenance.store.rows import StoredEvent, event_key, parse_ids
from provenance.store.state import DerivedState
from provenance.store.writer_lock import WriterLock

NODE_MIN_LEVEL = 4  # log_nodes keeps complete subtrees from this level up


class StoreError(ProvenanceError):
    """The database is missing, from a newer version, or not a Provenance ledger."""


def _connect(path: Path, *, create: bool, readonly: bool) -> sqlite3.Connection:
    """A connection to the ledger file at ``path``; never creates one unless ``create``."""
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a ledger: give --db the ledger's file")
    if not create and not path.exists():
        raise StoreError(f"no ledger at {path}: run `provenance init` first (or check --db)")
    target = f"file:{pathname2url(str(path.absolute()))}?mode={'ro' if readonly else 'rwc'}"
    try:
        return sqlite3.connect(
            target, uri=True, isolation_level=None, timeout=30, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the ledger {path}: {exc}") from None


class Store(DerivedState):
    """The store. `Store(path)`, `Store.memory()` or `Store("postgresql://…")`
    (then a `provenance.store.postgres.PostgresStore`); one per thread.

    Here: opening, the schema version, transactions, meta, the log, events and
    chains; the derived tables' reads and writes come from `DerivedState`."""

    def __new__(cls, path: str | Path | None = None, **_: Any) -> Store:
        if cls is Store and is_database_url(path):
            from provenance.store.postgres import PostgresStore  # psycopg only when used

            return super().__new__(PostgresStore)
        return super().__new__(cls)

    def __init__(
        self, path: str | Path | None = None, *, create: bool = True, readonly: bool = False
    ):
        """Open the ledger at ``path`` (or a fresh one in memory).

        ``readonly``: never writes, creates or migrates; a missing, foreign or
        outdated database is a `StoreError` saying what to run. Otherwise the
        schema is migrated, and a missing file is made only with ``create``;
        a SQLite file that is not a ledger is refused, never written into.
        """
        self.path = None if path is None else Path(path)
        self.where = str(self.path or ":memory:")
        self._subjects: dict[int, str] = {}
        # Several writer processes queue for the write lock (writer_lock.py).
        self._writer = None if self.path is None or readonly else WriterLock(self.path)
        if self.path is None:
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            conn = _connect(self.path, create=create and not readonly, readonly=readonly)
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        try:
            self._open(readonly)
        except BaseException:
            conn.close()
            raise

    def _open(self, readonly: bool) -> None:
        conn = self.conn
        where = self.path or ":memory:"
        try:
            tables = self.db.table_names()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{where} is not a SQLite database ({exc}), so not a Provenance ledger: "
                "check --db (or PROVENANCE_DB)"
            ) from None
        if "_migrations" not in tables and (tables or readonly):
            what = f"a SQLite database with other tables ({', '.join(sorted(tables)[:5])})"
            raise StoreError(
                f"{where} is {what if tables else 'an empty database'}, not a Provenance "
                "ledger: check --db (or PROVENANCE_DB)"
                + ("; nothing was written to it" if tables else "; run `provenance init`")
            )
        if tables:
            self._check_version(pending_ok=not readonly)  # before anything is written
        if not readonly:
            if self.path is not None:
                conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk (the WAL fsynced) before it returns, so
            # what the ingest acknowledged, or the CLI and portal reported as
            # accepted, survives a power cut. NORMAL would only survive a crash
            # of the process. The ingest pays one fsync per group commit.
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=OFF")
        if not readonly:
            self.migrate()

    def _check_version(self, *, pending_ok: bool) -> None:
        """The schema must be this version's, or an older one when ``pending_ok``
        (then `migrate` brings it up to date)."""
        try:
            applied = self.applied_migrations()
        except DATABASE_ERRORS as exc:
            raise StoreError(
                f"{self.where} has a _migrations table that is not ours ({exc}): it is not a "
                "Provenance ledger (check --db)"
            ) from None
        unknown = set(applied) - {name for name, _ in MIGRATIONS}
        if unknown:
            raise StoreError(
                f"{self.where} has migrations this version does not know "
                f"({', '.join(sorted(unknown)[:5])}): it was made by a newer Provenance "
                "(upgrade Provenance), or it is not a Provenance ledger (check --db)"
            )
        pending = self.pending_migrations()
        if pending and not pending_ok:
            raise StoreError(
                f"{self.where} is a ledger from an older version ({len(pending)} migration"
                f"{'s' if len(pending) != 1 else ''} pending: {', '.join(pending)}); this command "
                "only reads it: run `provenance migrate` first"
            )

    @classmethod
    def memory(cls) -> Store:
        return cls(None)

    def close(self) -> None:
        self.conn.close()
        if self._writer is not None:
            self._writer.close()

    # --- schema

    def applied_migrations(self) -> list[str]:
        if "_migrations" not in self.db.table_names():
            return []
        return [row[0] for row in self.conn.execute("SELECT name FROM _migrations ORDER BY id")]

    def pending_migrations(self) -> list[str]:
        done = set(self.applied_migrations())
        return [name for name, _ in MIGRATIONS if name not in done]

    def migrate(self) -> None:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"
        )
        known = {name for name, _ in MIGRATIONS}
        unknown = set(self.applied_migrations()) - known
        if unknown:
            raise StoreError(
                "database has migrations this version does not know "
                f"({', '.join(sorted(unknown))}):"
                " upgrade Provenance"
            )
        for name, function in MIGRATIONS:
            if name in self.applied_migrations():
                continue
            with self.transaction():
                function(self.db)
                self.conn.execute("INSERT INTO _migrations (name) VALUES (?)", (name,))

    # --- transactions

    _writer: WriterLock | None = None  # SQLite files only (an engine without it: None)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT: one writer at a time, all or nothing."""
        if self._writer is not None:
            self._writer.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                # A chain made in the rolled-back transaction does not exist; its
                # id may go to another subject (here, or in another writer).
                self._subjects.clear()
                raise
            self.conn.execute("COMMIT")
        finally:
            if self._writer is not None:
                self._writer.release()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A consistent read view (deferred transaction)."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("ROLLBACK")

    def data_version(self) -> int:
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    # --- meta

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # --- the log

    def log_size(self) -> int:
        row = self.conn.execute("SELECT max(idx) FROM events").fetchone()
        return 0 if row[0] is None else row[0] + 1

    def leaf_hashes(self, begin: int, end: int) -> list[bytes]:
        rows = self.conn.execute(
            "SELECT leaf FROM events WHERE idx >= ? AND idx < ? ORDER BY idx", (begin, end)
        ).fetchall()
        return [row[0] for row in rows]

    def subtree_hash(self, level: int, index: int) -> bytes:
        """HashReader: the hash of complete subtree (level, index) of the log."""
        if level >= NODE_MIN_LEVEL:
            row = self.conn.execute(
                "SELECT hash FROM log_nodes WHERE level = ? AND idx = ?", (level, index)
            ).fetchone()
            if row is None:
                raise StoreError(f"log node ({level}, {index}) is missing: run `provenance verify`")
            return row[0]
        width = 1 << level
        leaves = self.leaf_hashes(index * width, (index + 1) * width)
        if len(leaves) != width:
            raise StoreError(f"log leaves {index * width}..{(index + 1) * width} are missing")
        return root_from_leaf_hashes(leaves)

    def insert_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        self.conn.executemany(
            "INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)",
            [node for node in nodes if node[0] >= NODE_MIN_LEVEL],
        )

    def log_nodes(self, min_level: int = 0) -> Iterator[tuple[int, int, bytes]]:
        yield from self.conn.execute(
            "SELECT level, idx, hash FROM log_nodes WHERE level >= ? ORDER BY level, idx",
            (min_level,),
        )

    def insert_checkpoint(self, size: int, note: str) -> None:
        self.conn.execute(
            "INSERT INTO checkpoints (size, note) VALUES (?, ?) "
            "ON CONFLICT (size) DO UPDATE SET note = excluded.note",
            (size, note),
        )

    def latest_checkpoint(self) -> str | None:
        row = self.conn.execute(
            "SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return row[0] if row else None

    def checkpoints(self) -> list[tuple[int, str]]:
        return self.conn.execute("SELECT size, note FROM checkpoints ORDER BY size").fetchall()

    # --- events

    def insert_events(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows of (idx, kind, signer, seq, time, batches, lots, data, sig, leaf, key)."""
        self.conn.executemany(
            "INSERT INTO events (idx, kind, signer, seq, time, batches, lots, data, sig, leaf, key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    @staticmethod
    def event_row(
        index: int,
        envelope: Envelope,
        signer: int,
        named: Sequence[int] | None,
        lots: Sequence[int] | None,
        leaf: bytes,
    ) -> tuple[Any, ...]:
        return (
            index,
            KIND_CODES[envelope.kind],
            signer,
            envelope.seq,
            envelope.time,
            None if named is None else "[" + ",".join(map(str, named)) + "]",
            None if lots is None else "[" + ",".join(map(str, lots)) + "]",
            envelope.data_json,
            envelope.signature,
            leaf,
            event_key(envelope.id_bytes),
        )

    def subject(self, chain_id: int) -> str:
        subject = self._subjects.get(chain_id)
        if subject is None:
            row = self.conn.execute(
                "SELECT subject FROM chains WHERE id = ?", (chain_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"chain {chain_id} is missing")
            subject = self._subjects[chain_id] = row[0]
        return subject

    _EVENT_COLUMNS = (
        "SELECT e.idx, e.kind, i.did, e.seq, e.time, e.batches, e.lots, e.data, e.sig, e.leaf "
        "FROM events e LEFT JOIN identities i ON i.id = e.signer "
    )

    def event_from_row(self, row: tuple[Any, ...]) -> StoredEvent:
        """A StoredEvent from a row of `event_rows` (no validation: verify it)."""
        idx, kind, did, seq, time, named, lots, data, sig, leaf = row
        lot_ids = None if named is None else parse_ids(named)
        envelope = Envelope.from_stored(
            KIND_NAMES.get(kind, f"unknown-kind-{kind}"),
            did or "did:key:unknown",
            seq,
            time,
            None if lot_ids is None else tuple(self.subject(i) for i in lot_ids),
            data,
            sig,
        )
        filed = parse_ids(lots) if lots is not None else (lot_ids or [])
        return StoredEvent(idx, envelope, leaf, tuple(filed))

    def event_rows(
        self,
        begin: int = 0,
        end: int | None = None,
        *,
        kinds: Sequence[str] | None = None,
        exclude: bool = False,
    ) -> sqlite3.Cursor:
        """Raw rows (idx, kind code, signer did, seq, time, batch ids, lot ids, data
        JSON, signature, leaf) in log order, for bulk checks; optionally only (or
        all but) some kinds."""
        where, params = ["e.idx >= ?"], [begin]
        if end is not None:
            where.append("e.idx < ?")
            params.append(end)
        if kinds:
            codes = ",".join(str(KIND_CODES[kind]) for kind in kinds)
            where.append(f"e.kind {'NOT IN' if exclude else 'IN'} ({codes})")
        return self.conn.execute(
            self._EVENT_COLUMNS + "WHERE " + " AND ".join(where) + " ORDER BY e.idx", params
        )

    def events(self, begin: int = 0, end: int | None = None) -> Iterator[StoredEvent]:
        end = self.log_size() if end is None else end
        cursor = self.conn.execute(
            self._EVENT_COLUMNS + "WHERE e.idx >= ? AND e.idx < ? ORDER BY e.idx", (begin, end)
        )
        for row in cursor:
            yield self.event_from_row(row)

    def event_at(self, index: int) -> StoredEvent | None:
        row = self.conn.execute(self._EVENT_COLUMNS + "WHERE e.idx = ?", (index,)).fetchone()
        return self.event_from_row(row) if row else None

    def find_event(self, event_id: bytes) -> StoredEvent | None:
        for row in self.conn.execute(
            self._EVENT_COLUMNS + "WHERE e.key = ?", (event_key(event_id),)
        ):
            stored = self.event_from_row(row)
            if stored.envelope.id_bytes == event_id:
                return stored
        return None

    def event_by_seq(self, signer: int, seq: int) -> StoredEvent | None:
        row = self.conn.execute(
            self._EVENT_COLUMNS + "WHERE e.signer = ? AND e.seq = ?", (signer, seq)
        ).fetchone()
        return self.event_from_row(row) if row else None

    def event_kind(self, index: int) -> str | None:
        """The kind of the event at log *index* (None when there is none)."""
        row = self.conn.execute("SELECT kind FROM events WHERE idx = ?", (index,)).fetchone()
        return None if row is None else KIND_NAMES.get(row[0])

    def max_seq(self, signer: int) -> int | None:
        row = self.conn.execute(
            "SELECT max(seq) FROM events WHERE signer = ?", (signer,)
        ).fetchone()
        return row[0]

    # --- chains

    def chain_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM chains").fetchone()[0]

    def insert_chain(self, chain_id: int, subject: str, head: bytes) -> None:
        self.conn.execute(
            "INSERT INTO chains (id, subject, head, length) VALUES (?, ?, ?, 0)",
            (chain_id, subject, head),
        )
        self._subjects[chain_id] = subject

    def update_chains(self, heads: Sequence[tuple[bytes, int, int]]) -> None:
        """(head, length, id) for each chain that moved."""
        self.conn.executemany("UPDATE chains SET head = ?, length = ? WHERE id = ?", heads)

    def chains(self) -> Iterator[tuple[int, str, bytes, int]]:
        yield from self.conn.execute("SELECT id, subject, head, length FROM chains ORDER BY id")

    def chains_moved_since(self, size: int, known: int) -> list[tuple[int, str, bytes, int]]:
        """(id, subject, head, length), by id, of the chains with a link to an
        event at log index *size* or later, and of the chains after the first
        *known*: what other writers changed since a log of *size* events."""
        return self.conn.execute(
            "SELECT id, subject, head, length FROM chains "
            "WHERE id > ? OR id IN (SELECT chain FROM links WHERE event >= ?) ORDER BY id",
            (known, size),
        ).fetchall()

    def chain_by_subject(self, subject: str) -> tuple[int, str, bytes, int] | None:
        return self.conn.execute(
            "SELECT id, subject, head, length FROM chains WHERE subject = ?", (subject,)
        ).fetchone()

    def insert_links(self, rows: Sequence[tuple[int, int, int, bytes]]) -> None:
        """(chain, pos, event index, link)."""
        self.conn.executemany(
            "INSERT INTO links (chain, pos, event, link) VALUES (?, ?, ?, ?)", rows
        )

    def links(self, chain_id: int | None = None) -> Iterator[tuple[int, int, int, bytes]]:
        if chain_id is None:
            yield from self.conn.execute(
                "SELECT chain, pos, event, link FROM links ORDER BY chain, pos"
            )
        else:
            yield from self.conn.execute(
                "SELECT chain, pos, event, link FROM links WHERE chain = ? ORDER BY pos",
                (chain_id,),
            )

    def chain_events(self, chain_id: int, from_pos: int = 0) -> list[StoredEvent]:
        """The chain's events in chain order, from position *from_pos* on."""
        rows = self.conn.execute(
            self._EVENT_COLUMNS.replace(
                "FROM events e", "FROM links l JOIN events e ON e.idx = l.event"
            )
            + "WHERE l.chain = ? AND l.pos >= ? ORDER BY l.pos",
            (chain_id, from_pos),
        ).fetchall()
        return [self.event_from_row(row) for row in rows]

    def event_ids(self, indexes: Sequence[int]) -> dict[int, str]:
        """Event ids (hex) of the events at these log indexes."""
        rows = self.conn.execute(
            self._EVENT_COLUMNS + "WHERE e.idx IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(set(indexes))),),
        )
        return {row[0]: self.event_from_row(row).envelope.event_id for row in rows}

    def count_events_before(self, index: int, *, other_than: str) -> int:
        """How many events before log *index* are not of kind *other_than*."""
        return self.conn.execute(
            "SELECT count(*) FROM events WHERE idx < ? AND kind <> ?",
            (index, KIND_CODES[other_than]),
        ).fetchone()[0]

    # --- what verification reads of the log and the chains, as stored

    def links_with_previous(
        self, begin: int, end: int
    ) -> Iterator[tuple[int, int, int, bytes, bytes | None, int | None]]:
        """(chain, pos, event index, link, previous link, previous link's event
        index) of every link whose event lies in [begin, end); the previous
        columns are None for a first link or a missing one."""
        yield from self.conn.execute(
            "SELECT l.chain, l.pos, l.event, l.link, p.link, p.event FROM links l "
            "LEFT JOIN links p ON p.chain = l.chain AND p.pos = l.pos - 1 "
            "WHERE l.event >= ? AND l.event < ?",
            (begin, end),
        )

    def log_nodes_at(self, level: int, begin: int, end: int) -> Iterator[tuple[int, bytes]]:
        """(index, hash) of the stored log nodes at *level* with index in [begin, end)."""
        yield from self.conn.execute(
            "SELECT idx, hash FROM log_nodes WHERE level = ? AND idx >= ? AND idx < ?",
            (level, begin, end),
        )

    def chain_heads(self) -> Iterator[tuple[int, str, bytes, int, bytes | None, int]]:
        """(id, subject, stored head, stored length, the link at position length - 1
        or None, how many links the chain has) of every chain, by id."""
        yield from self.conn.execute(
            "SELECT c.id, c.subject, c.head, c.length, l.link, "
            "(SELECT count(*) FROM links x WHERE x.chain = c.id) "
            "FROM chains c LEFT JOIN links l ON l.chain = c.id AND l.pos = c.length - 1 "
            "ORDER BY c.id"
        )

    def count_stray_links(self, size: int) -> int:
        """Links that point at no event of a log of *size* events."""
        return self.conn.execute(
            "SELECT count(*) FROM links WHERE event < 0 OR event >= ?", (size,)
        ).fetchone()[0]

    # --- statistics

    def stats(self) -> dict[str, Any]:
        events = {
            KIND_NAMES.get(kind, str(kind)): count
            for kind, count in self.conn.execute("SELECT kind, count(*) FROM events GROUP BY kind")
        }
        count = self.conn.execute
        return {
            "events": events,
            "lots": count("SELECT count(*) FROM lots").fetchone()[0],
            "parties": count("SELECT count(*) FROM identities WHERE type = 'party'").fetchone()[0],
            "devices": count("SELECT count(*) FROM identities WHERE type = 'device'").fetchone()[0],
            "rejects": dict(
                count("SELECT reason, sum(count) FROM rejects GROUP BY reason").fetchall()
            ),
            "log_size": self.log_size(),
        }

    # --- the file

    def checkpoint_wal(self) -> None:
        """Copy the WAL into the database file and empty it."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def bytes_in_use(self) -> int:
        """Bytes of the database's pages that hold data (free pages not counted)."""
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self.conn.execute("PRAGMA page_size").fetchone()[0]

    def backup(self, target: str | Path) -> None:
        """A consistent copy of the ledger in the file *target* (SQLite's backup)."""
        copy = sqlite3.connect(target)
        try:
            self.conn.backup(copy)
        finally:
            copy.close()


def leaf_for(envelope: Envelope) -> bytes:
    """The log's leaf hash for an event: RFC 9162 leaf hash of its 32-byte id."""
    return hash_leaf(envelope.id_bytes)
