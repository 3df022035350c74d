"""SQLite storage (WAL) through sqlite-utils: the one adapter the ledger writes
through. Everything here is plain persistence; the decisions are the ledger's.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

import sqlite_utils

from provenance.core.envelope import Envelope
from provenance.core.errors import ProvenanceError
from provenance.core.kinds import KIND_CODES, KIND_NAMES, PREFIXES_FIELD
from provenance.core.merkle import hash_leaf, root_from_leaf_hashes

NODE_MIN_LEVEL = 4
MAX_REJECT_RAW = 4096

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(name: str) -> Callable[[Migration], Migration]:
    """Register a named schema migration; each runs once, in its own transaction."""

    def register(function: Migration) -> Migration:
        MIGRATIONS.append((name, function))
        return function

    return register


@migration("0001_initial")
def _initial(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        """CREATE TABLE events (
            idx INTEGER PRIMARY KEY,  -- position in the Merkle log
            kind INTEGER NOT NULL,
            signer INTEGER NOT NULL,  -- chains.id of the signer's identity
            seq INTEGER NOT NULL,
            time TEXT NOT NULL,
            batches TEXT,             -- JSON list of chains.id, NULL when the envelope had none
            lots TEXT,                -- JSON list of chains.id it was filed under, when different
            data TEXT NOT NULL,       -- RFC 8785 text of data
            sig BLOB NOT NULL,
            leaf BLOB NOT NULL,       -- RFC 9162 leaf hash of the event id
            key INTEGER NOT NULL      -- first 8 bytes of the event id, for lookups
        )"""
    )
    db.execute("CREATE UNIQUE INDEX events_signer_seq ON events (signer, seq)")
    db.execute("CREATE INDEX events_key ON events (key)")
    db.execute(
        """CREATE TABLE chains (
            id INTEGER PRIMARY KEY, subject TEXT NOT NULL UNIQUE,
            head BLOB NOT NULL, length INTEGER NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE links (
            chain INTEGER NOT NULL, pos INTEGER NOT NULL, event INTEGER NOT NULL,
            link BLOB NOT NULL, PRIMARY KEY (chain, pos)) WITHOUT ROWID"""
    )
    db.execute("CREATE INDEX links_event ON links (event)")
    db.execute(
        """CREATE TABLE log_nodes (
            level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
            PRIMARY KEY (level, idx)) WITHOUT ROWID"""
    )
    db.execute("CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL)")
    db.execute(
        """CREATE TABLE identities (
            id INTEGER PRIMARY KEY, did TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
            name TEXT NOT NULL, role TEXT, owner INTEGER, enrol_event INTEGER NOT NULL,
            revoked_from TEXT, revoke_event INTEGER, UNIQUE (type, name))"""
    )
    db.execute(
        """CREATE TABLE lots (
            id INTEGER PRIMARY KEY, gtin TEXT NOT NULL, lot TEXT NOT NULL,
            product TEXT NOT NULL, category TEXT, expiry TEXT, profile TEXT,
            custodian INTEGER NOT NULL, commissioned_by INTEGER NOT NULL,
            origin_event INTEGER NOT NULL, recalled INTEGER NOT NULL DEFAULT 0,
            UNIQUE (gtin, lot))"""
    )
    db.execute(
        """CREATE TABLE attachments (
            id INTEGER PRIMARY KEY, device INTEGER NOT NULL, lot INTEGER NOT NULL,
            from_us INTEGER NOT NULL, until_us INTEGER,
            attach_event INTEGER NOT NULL, detach_event INTEGER)"""
    )
    db.execute("CREATE INDEX attachments_device ON attachments (device)")
    db.execute("CREATE INDEX attachments_lot ON attachments (lot)")
    db.execute(
        """CREATE TABLE shipments (
            event INTEGER PRIMARY KEY, sender INTEGER NOT NULL, receiver INTEGER NOT NULL,
            lots TEXT NOT NULL, receive_event INTEGER)"""
    )
    db.execute(
        """CREATE TABLE rejects (
            id INTEGER PRIMARY KEY, at TEXT NOT NULL, reason TEXT NOT NULL,
            detail TEXT NOT NULL, source TEXT, event_id TEXT, raw BLOB)"""
    )
    db.execute("CREATE INDEX rejects_reason ON rejects (reason)")


@migration("0002_lineage")
def _lineage(db: sqlite_utils.Database) -> None:
    """The lineage graph (input lot -> output lot of every transform) and what a
    trace shows of each lot: registered quantity, amount used since, last known
    location. Backfilled from the events already in the log."""
    conn = db.conn
    conn.execute(
        """CREATE TABLE lineage (
            parent INTEGER NOT NULL,  -- lots.id of a transform input
            child INTEGER NOT NULL,   -- lots.id of an output of the same transform
            event INTEGER NOT NULL,   -- log index of the transform
            in_value REAL, in_unit TEXT,    -- how much of the input the transform used
            out_value REAL, out_unit TEXT,  -- how much of the output it made
            PRIMARY KEY (parent, child)) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX lineage_child ON lineage (child, parent)")
    for column in (
        "quantity REAL",  # registered: commission or transform output
        "unit TEXT",
        "used REAL NOT NULL DEFAULT 0",  # used by transforms and dispensed, in `unit`
        "used_other INTEGER NOT NULL DEFAULT 0",  # 1: some use was in another unit
        "location TEXT",  # JSON: last location given by commission/transform/ship/receive/dispense
    ):
        conn.execute(f"ALTER TABLE lots ADD COLUMN {column}")
    # Open shipments are few; without this index each ship scans every shipment.
    conn.execute("CREATE INDEX shipments_open ON shipments (event) WHERE receive_event IS NULL")
    _backfill_lots(conn)


@migration("0003_recall_sources")
def _recall_sources(db: sqlite_utils.Database) -> None:
    """Recalls per (affected lot, source lot, recall event), so that a recall
    cascades downstream and a lift ends only what its source caused."""
    conn = db.conn
    conn.execute(
        """CREATE TABLE recalls (
            lot INTEGER NOT NULL,     -- the recalled lot
            source INTEGER NOT NULL,  -- the lot the recall named (lot itself, or an ancestor)
            event INTEGER NOT NULL,   -- log index of the recall
            lift_event INTEGER,       -- log index of the lift that ended it; NULL: active
            PRIMARY KEY (lot, event, source)) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX recalls_event ON recalls (event)")
    conn.execute("CREATE INDEX recalls_source ON recalls (source) WHERE lift_event IS NULL")
    conn.execute("CREATE INDEX recalls_lift ON recalls (lift_event) WHERE lift_event IS NOT NULL")
    # The cascade's filing and the `recalled` refusals apply to events from here on;
    # what the log already holds was accepted under the earlier rules.
    # Never moved once set (a boundary already recorded stays where it was).
    size = conn.execute("SELECT coalesce(max(idx) + 1, 0) FROM events").fetchone()[0]
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
        (RECALL_RULES_FROM, str(size)),
    )
    _backfill_recalls(conn)


RECALL_RULES_FROM = "recall_rules_from"  # meta: log index from which recall rules apply


@migration("0004_holds_and_flags")
def _holds_and_flags(db: sqlite_utils.Database) -> None:
    """Holds (a lot stopped by a rule until released) and flags (signals such as
    a silent logger or a counterfeit serial), derived from `hold`, `release` and
    `flag` events; `lots.held` says whether any hold is in force. Backfilled from
    the log (empty unless the log already holds such events)."""
    conn = db.conn
    conn.execute(
        """CREATE TABLE holds (
            lot INTEGER NOT NULL,      -- the held lot
            event INTEGER NOT NULL,    -- log index of the hold
            rule TEXT NOT NULL,        -- the rule that decided it (data.rule)
            release_event INTEGER,     -- log index of the release that ended it; NULL: active
            PRIMARY KEY (lot, event)) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX holds_active ON holds (event) WHERE release_event IS NULL")
    conn.execute(
        """CREATE TABLE flags (
            lot INTEGER NOT NULL,
            rule TEXT NOT NULL,
            key TEXT NOT NULL,         -- what the flag is about: one flag per lot, rule and key
            signal TEXT NOT NULL,      -- e.g. logger-silent, counterfeit, coldchain
            event INTEGER NOT NULL,    -- log index of the flag
            PRIMARY KEY (lot, rule, key)) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX flags_event ON flags (event)")
    conn.execute("ALTER TABLE lots ADD COLUMN held INTEGER NOT NULL DEFAULT 0")
    # The rules service looks at the loggers attached now, every round.
    conn.execute("CREATE INDEX attachments_open ON attachments (id) WHERE until_us IS NULL")
    _backfill_holds(conn)


@migration("0005_access")
def _access(db: sqlite_utils.Database) -> None:
    """Custody history per lot and GS1 company prefixes per party, for the
    access rules (docs/protocol.md §3): who may sign `inspect`/`epcis` about a
    lot, and who may commission under a GTIN. Backfilled from the log; the
    rules apply to events from the log's size now on (meta `access_rules_from`),
    so the events already logged stay valid on replay."""
    conn = db.conn
    conn.execute(
        """CREATE TABLE custodians (
            lot INTEGER NOT NULL,    -- lots.id
            party INTEGER NOT NULL,  -- identities.id of a party that held it (made or received)
            PRIMARY KEY (lot, party)) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX custodians_party ON custodians (party, lot)")
    conn.execute(
        """CREATE TABLE prefixes (
            party INTEGER NOT NULL,  -- identities.id
            prefix TEXT NOT NULL,    -- a GS1 company prefix, 6-12 digits
            event INTEGER NOT NULL,  -- log index of the enrolment or grant that gave it
            PRIMARY KEY (party, prefix)) WITHOUT ROWID"""
    )
    size = conn.execute("SELECT coalesce(max(idx) + 1, 0) FROM events").fetchone()[0]
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
        (ACCESS_RULES_FROM, str(size)),
    )
    conn.execute("INSERT OR IGNORE INTO custodians SELECT id, commissioned_by FROM lots")
    conn.execute("INSERT OR IGNORE INTO custodians SELECT id, custodian FROM lots")
    for receiver, lots in conn.execute(
        "SELECT receiver, lots FROM shipments WHERE receive_event IS NOT NULL"
    ).fetchall():
        conn.executemany(
            "INSERT OR IGNORE INTO custodians (lot, party) VALUES (?, ?)",
            [(lot, receiver) for lot in parse_ids(lots)],
        )
    for idx, data_text in conn.execute(
        "SELECT idx, data FROM events WHERE kind = ? ORDER BY idx", (KIND_CODES["enrol"],)
    ).fetchall():
        data = json.loads(data_text)
        if data.get(PREFIXES_FIELD):
            party = conn.execute(
                "SELECT id FROM identities WHERE did = ?", (data["subject"],)
            ).fetchone()
            if party:
                record_prefixes(conn, party[0], data[PREFIXES_FIELD], idx)


ACCESS_RULES_FROM = "access_rules_from"  # meta: log index from which access rules apply


def record_prefixes(
    conn: sqlite3.Connection, party_id: int, prefixes: Sequence[str], event_index: int
) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO prefixes (party, prefix, event) VALUES (?, ?, ?)",
        [(party_id, prefix, event_index) for prefix in prefixes],
    )


@migration("0006_reject_counts")
def _reject_counts(db: sqlite_utils.Database) -> None:
    """A reject row may stand for several refusals (provenance/ledger/rejects.py):
    `count` of them, the last at `last_at`. Existing rows are one each."""
    conn = db.conn
    conn.execute("ALTER TABLE rejects ADD COLUMN count INTEGER NOT NULL DEFAULT 1")
    conn.execute("ALTER TABLE rejects ADD COLUMN last_at TEXT")


@migration("0007_time_rules")
def _time_rules(db: sqlite_utils.Database) -> None:
    """The time rules of a lot (docs/protocol.md §3.1: nothing dated before its
    commissioning, custody changes in time order) refuse events from the log
    index recorded here on; what the log already holds was accepted without
    them and stays valid (`verify` replays each event under the rules of its time).
    Never moved once set."""
    size = db.conn.execute("SELECT coalesce(max(idx) + 1, 0) FROM events").fetchone()[0]
    db.conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
        (TIME_RULES_FROM, str(size)),
    )


TIME_RULES_FROM = "time_rules_from"  # meta: log index from which the time rules apply


def _backfill_holds(conn: sqlite3.Connection) -> None:
    codes = ",".join(str(KIND_CODES[k]) for k in ("hold", "release", "flag"))
    rows = conn.execute(
        f"SELECT idx, kind, batches, data FROM events WHERE kind IN ({codes}) ORDER BY idx"
    ).fetchall()
    for idx, kind, batches, data_text in rows:
        data = json.loads(data_text)
        lots = parse_ids(batches) if batches else []
        name = KIND_NAMES[kind]
        if name == "hold":
            record_hold(conn, idx, lots, data["rule"])
        elif name == "release":
            hold = None
            if "hold" in data:  # the named hold, found by its id's key among holds
                found = conn.execute(
                    "SELECT idx FROM events WHERE key = ? AND kind = ? AND idx < ?",
                    (_key(bytes.fromhex(data["hold"])), KIND_CODES["hold"], idx),
                ).fetchone()
                hold = found[0] if found else -1
            record_release(conn, idx, lots, hold)
        else:
            record_flag(conn, idx, lots, data["rule"], data["signal"], data["key"])


def _subject_ids(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT subject, id FROM chains"))


def _backfill_lots(conn: sqlite3.Connection) -> None:
    """Replay commission, transform, ship, receive and dispense into the lineage
    table and the lots' quantity and location columns, through the same
    functions the ledger writes with."""
    ids = _subject_ids(conn)
    codes = ",".join(
        str(KIND_CODES[k]) for k in ("commission", "transform", "ship", "receive", "dispense")
    )
    rows = conn.execute(
        f"SELECT idx, kind, batches, data FROM events WHERE kind IN ({codes}) ORDER BY idx"
    ).fetchall()
    for idx, kind, batches, data_text in rows:
        data = json.loads(data_text)
        lots = parse_ids(batches) if batches else []
        name = KIND_NAMES[kind]
        if name == "commission":
            record_commission(conn, lots[0], data)
        elif name == "transform":
            record_transform(conn, idx, data, ids)
        elif name == "dispense":
            record_dispense(conn, lots, data)
        else:  # ship, receive
            record_location(conn, lots, data.get("location"))


def _backfill_recalls(conn: sqlite3.Connection) -> None:
    codes = f"{KIND_CODES['recall']},{KIND_CODES['recall-lift']}"
    rows = conn.execute(
        f"SELECT idx, kind, batches FROM events WHERE kind IN ({codes}) ORDER BY idx"
    ).fetchall()
    for idx, kind, batches in rows:
        sources = parse_ids(batches) if batches else []
        if KIND_NAMES[kind] == "recall":
            record_recall(conn, idx, sources)
        else:
            record_lift(conn, idx, sources)


# --- derived lot state, written by the ledger and by the backfills alike


def _location_json(location: Any) -> str | None:
    if not isinstance(location, dict):
        return None
    return json.dumps(location, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_commission(conn: sqlite3.Connection, lot_id: int, data: dict[str, Any]) -> None:
    """A commissioned lot's registered quantity and its origin as first location."""
    quantity = data.get("quantity") or {}
    conn.execute(
        "UPDATE lots SET quantity = ?, unit = ?, location = ? WHERE id = ?",
        (quantity.get("value"), quantity.get("unit"), _location_json(data.get("origin")), lot_id),
    )


def _use(conn: sqlite3.Connection, lot_id: int, quantity: dict[str, Any]) -> None:
    value, unit = quantity["value"], quantity["unit"]
    conn.execute(
        "UPDATE lots SET used = used + CASE WHEN unit = ? THEN ? ELSE 0 END, "
        "used_other = CASE WHEN unit IS ? THEN used_other ELSE 1 END WHERE id = ?",
        (unit, value, unit, lot_id),
    )


def record_transform(
    conn: sqlite3.Connection, event_index: int, data: dict[str, Any], ids: dict[str, int]
) -> list[tuple[int, int]]:
    """Lineage edges of a transform (every input x every output, each edge with
    the input's and the output's quantity: the event does not say how inputs
    split among outputs), the inputs' use and the outputs' quantity and
    location. Returns the (parent, child) edges."""
    location = _location_json(data.get("location"))
    rows, edges = [], []
    for item in data["inputs"]:
        parent = ids[item["batch"]]
        _use(conn, parent, item["quantity"])
        for out in data["outputs"]:
            child = ids[out["batch"]]
            q_in, q_out = item["quantity"], out["quantity"]
            rows.append(
                (
                    parent,
                    child,
                    event_index,
                    q_in["value"],
                    q_in["unit"],
                    q_out["value"],
                    q_out["unit"],
                )
            )
            edges.append((parent, child))
    conn.executemany(
        "INSERT INTO lineage (parent, child, event, in_value, in_unit, out_value, out_unit) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    for out in data["outputs"]:
        conn.execute(
            "UPDATE lots SET quantity = ?, unit = ?, used = 0, used_other = 0, "
            "location = coalesce(?, location) WHERE id = ?",
            (out["quantity"]["value"], out["quantity"]["unit"], location, ids[out["batch"]]),
        )
    return edges


def record_dispense(conn: sqlite3.Connection, lot_ids: Sequence[int], data: dict[str, Any]) -> None:
    for lot_id in lot_ids:
        _use(conn, lot_id, data["quantity"])
    record_location(conn, lot_ids, data.get("location"))


def record_location(conn: sqlite3.Connection, lot_ids: Sequence[int], location: Any) -> None:
    text = _location_json(location)
    if text is not None:
        conn.executemany(
            "UPDATE lots SET location = ? WHERE id = ?", [(text, lot_id) for lot_id in lot_ids]
        )


_DESCENDANTS = (
    "WITH RECURSIVE down(id) AS (SELECT ? UNION "
    "SELECT l.child FROM lineage l JOIN down d ON l.parent = d.id) "
)
_EDGE = "SELECT parent, child, event, in_value, in_unit, out_value, out_unit FROM lineage "
_ANCESTORS = (
    "WITH RECURSIVE up(id) AS (SELECT ? UNION "
    "SELECT l.parent FROM lineage l JOIN up u ON l.child = u.id) "
)


def descendants(conn: sqlite3.Connection, lot_id: int, before: int | None = None) -> list[int]:
    """Every lot made, transitively, from *lot_id* (not itself), by id; with
    *before*, only through transforms logged before that index."""
    sql, params = _DESCENDANTS, [lot_id, lot_id]
    if before is not None:
        sql = (
            "WITH RECURSIVE down(id) AS (SELECT ? UNION SELECT l.child FROM lineage l "
            "JOIN down d ON l.parent = d.id WHERE l.event < ?) "
        )
        params = [lot_id, before, lot_id]
    return [
        row[0]
        for row in conn.execute(sql + "SELECT id FROM down WHERE id <> ? ORDER BY id", params)
    ]


def record_recall(conn: sqlite3.Connection, event_index: int, sources: Sequence[int]) -> list[int]:
    """A recall of *sources*: each source and every lot downstream of it gets an
    active row naming that source; all become recalled. Returns the affected
    lots: the sources in order, then the rest by id."""
    rows: list[tuple[int, int, int]] = []
    for source in sources:
        rows.append((source, source, event_index))
        rows.extend(
            (lot_id, source, event_index) for lot_id in descendants(conn, source, event_index)
        )
    conn.executemany("INSERT OR IGNORE INTO recalls (lot, source, event) VALUES (?, ?, ?)", rows)
    affected = list(dict.fromkeys([*sources, *sorted({row[0] for row in rows})]))
    conn.executemany("UPDATE lots SET recalled = 1 WHERE id = ?", [(i,) for i in affected])
    return affected


def record_lift(conn: sqlite3.Connection, event_index: int, sources: Sequence[int]) -> list[int]:
    """A lift of *sources*: every active row naming one of them as source ends;
    a lot stays recalled while any other active row remains. Returns the lots
    whose rows it ended: the sources in order, then the rest by id."""
    marks = ",".join("?" * len(sources))
    touched = [
        row[0]
        for row in conn.execute(
            f"SELECT DISTINCT lot FROM recalls WHERE source IN ({marks}) AND lift_event IS NULL",
            list(sources),
        )
    ]
    conn.execute(
        f"UPDATE recalls SET lift_event = ? WHERE source IN ({marks}) AND lift_event IS NULL",
        [event_index, *sources],
    )
    affected = list(dict.fromkeys([*sources, *sorted(set(touched) - set(sources))]))
    conn.executemany(
        "UPDATE lots SET recalled = EXISTS (SELECT 1 FROM recalls r "
        "WHERE r.lot = lots.id AND r.lift_event IS NULL) WHERE id = ?",
        [(lot_id,) for lot_id in affected],
    )
    return affected


def record_hold(
    conn: sqlite3.Connection, event_index: int, lot_ids: Sequence[int], rule: str
) -> None:
    """A hold of *lot_ids* by *rule*: an active row each; the lots become held."""
    conn.executemany(
        "INSERT INTO holds (lot, event, rule) VALUES (?, ?, ?)",
        [(lot_id, event_index, rule) for lot_id in lot_ids],
    )
    conn.executemany("UPDATE lots SET held = 1 WHERE id = ?", [(i,) for i in lot_ids])


def record_release(
    conn: sqlite3.Connection, event_index: int, lot_ids: Sequence[int], hold: int | None
) -> None:
    """A release of *lot_ids*: ends the hold at log index *hold* on them, or (None)
    every active hold on them; a lot stays held while another hold remains."""
    marks = ",".join("?" * len(lot_ids))
    sql = f"UPDATE holds SET release_event = ? WHERE lot IN ({marks}) AND release_event IS NULL"
    params: list[Any] = [event_index, *lot_ids]
    if hold is not None:
        sql += " AND event = ?"
        params.append(hold)
    conn.execute(sql, params)
    conn.executemany(
        "UPDATE lots SET held = EXISTS (SELECT 1 FROM holds h "
        "WHERE h.lot = lots.id AND h.release_event IS NULL) WHERE id = ?",
        [(lot_id,) for lot_id in lot_ids],
    )


def record_flag(
    conn: sqlite3.Connection,
    event_index: int,
    lot_ids: Sequence[int],
    rule: str,
    signal: str,
    key: str,
) -> None:
    conn.executemany(
        "INSERT INTO flags (lot, rule, key, signal, event) VALUES (?, ?, ?, ?, ?)",
        [(lot_id, rule, key, signal, event_index) for lot_id in lot_ids],
    )


@dataclass
class Identity:
    id: int
    did: str
    type: str  # party | device | registrar
    name: str
    role: str | None
    owner: int | None
    enrol_event: int
    revoked_from: str | None = None
    revoked_from_us: int | None = None


@dataclass
class Lot:
    id: int
    uri: str
    gtin: str
    lot: str
    product: str
    category: str | None
    expiry: str | None
    profile: str | None
    custodian: int
    commissioned_by: int
    origin_event: int
    recalled: bool
    held: bool = False  # under an active hold (docs/rules.md)


@dataclass(frozen=True)
class LineageEdge:
    """One row of the lineage table: *parent* went into the transform at log
    index *event*, which made *child*."""

    parent: int
    child: int
    event: int
    in_value: float | None
    in_unit: str | None
    out_value: float | None
    out_unit: str | None


@dataclass(frozen=True)
class LotState:
    """A lot as a trace shows it (`Store.lot_states`)."""

    id: int
    uri: str
    gtin: str
    lot: str
    product: str
    category: str | None
    expiry: str | None
    custodian_did: str | None
    custodian_name: str | None
    custodian_role: str | None
    quantity: float | None  # registered by the commission or the transform that made it
    unit: str | None
    used: float  # used by transforms and dispensed since, in `unit`
    used_other: bool  # some use was stated in another unit
    location: dict[str, Any] | None  # the last location an event gave
    recalled: bool
    origin_event: int


@dataclass
class StoredEvent:
    index: int
    envelope: Envelope
    leaf: bytes
    lots: tuple[int, ...]  # chains the event is filed under


class StoreError(ProvenanceError):
    """The database is missing, from a newer version, or not a Provenance ledger."""


def parse_ids(text: str) -> list[int]:
    """Chain ids stored as "[3,7]" (faster than json.loads for this one shape)."""
    inner = text[1:-1]
    return [int(part) for part in inner.split(",")] if inner else []


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


def _key(event_id: bytes) -> int:
    return int.from_bytes(event_id[:8], "big", signed=True)


class Store:
    """The SQLite store. `Store(path)` or `Store.memory()`; one per thread."""

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
        self._subjects: dict[int, str] = {}
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
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path} has a _migrations table that is not ours ({exc}): it is not a "
                "Provenance ledger (check --db)"
            ) from None
        unknown = set(applied) - {name for name, _ in MIGRATIONS}
        if unknown:
            raise StoreError(
                f"{self.path} has migrations this version does not know "
                f"({', '.join(sorted(unknown)[:5])}): it was made by a newer Provenance "
                "(upgrade Provenance), or it is not a Provenance ledger (check --db)"
            )
        pending = self.pending_migrations()
        if pending and not pending_ok:
            raise StoreError(
                f"{self.path} is a ledger from an older version ({len(pending)} migration"
                f"{'s' if len(pending) != 1 else ''} pending: {', '.join(pending)}); this command "
                "only reads it: run `provenance migrate` first"
            )

    @classmethod
    def memory(cls) -> Store:
        return cls(None)

    def close(self) -> None:
        self.conn.close()

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

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT: one writer at a time, all or nothing."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

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
        batches: Sequence[int] | None,
        lots: Sequence[int] | None,
        leaf: bytes,
    ) -> tuple[Any, ...]:
        return (
            index,
            KIND_CODES[envelope.kind],
            signer,
            envelope.seq,
            envelope.time,
            None if batches is None else "[" + ",".join(map(str, batches)) + "]",
            None if lots is None else "[" + ",".join(map(str, lots)) + "]",
            envelope.data_json,
            envelope.signature,
            leaf,
            _key(envelope.id_bytes),
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
        idx, kind, did, seq, time, batches, lots, data, sig, leaf = row
        batch_ids = None if batches is None else parse_ids(batches)
        envelope = Envelope.from_stored(
            KIND_NAMES.get(kind, f"unknown-kind-{kind}"),
            did or "did:key:unknown",
            seq,
            time,
            None if batch_ids is None else tuple(self.subject(i) for i in batch_ids),
            data,
            sig,
        )
        filed = parse_ids(lots) if lots is not None else (batch_ids or [])
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
        for row in self.conn.execute(self._EVENT_COLUMNS + "WHERE e.key = ?", (_key(event_id),)):
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

    # --- identities

    _IDENTITY = (
        "SELECT id, did, type, name, role, owner, enrol_event, revoked_from FROM identities "
    )

    @staticmethod
    def _identity(row: tuple[Any, ...] | None) -> Identity | None:
        if row is None:
            return None
        from provenance.core.timefmt import parse_time

        identity = Identity(*row)
        if identity.revoked_from is not None:
            identity.revoked_from_us = parse_time(identity.revoked_from)
        return identity

    def identity_by_did(self, did: str) -> Identity | None:
        return self._identity(
            self.conn.execute(self._IDENTITY + "WHERE did = ?", (did,)).fetchone()
        )

    def identity_by_id(self, identity_id: int) -> Identity | None:
        return self._identity(
            self.conn.execute(self._IDENTITY + "WHERE id = ?", (identity_id,)).fetchone()
        )

    def identity_by_name(self, type_: str, name: str) -> Identity | None:
        return self._identity(
            self.conn.execute(
                self._IDENTITY + "WHERE type = ? AND name = ?", (type_, name)
            ).fetchone()
        )

    def identities(self) -> list[Identity]:
        rows = self.conn.execute(self._IDENTITY + "ORDER BY id").fetchall()
        return [identity for row in rows if (identity := self._identity(row))]

    def insert_identity(self, identity: Identity) -> None:
        self.conn.execute(
            "INSERT INTO identities (id, did, type, name, role, owner, enrol_event) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                identity.id,
                identity.did,
                identity.type,
                identity.name,
                identity.role,
                identity.owner,
                identity.enrol_event,
            ),
        )

    def revoke_identity(self, identity_id: int, revoked_from: str, event_index: int) -> None:
        self.conn.execute(
            "UPDATE identities SET revoked_from = ?, revoke_event = ? WHERE id = ?",
            (revoked_from, event_index, identity_id),
        )

    # --- lots

    _LOT = (
        "SELECT l.id, c.subject, l.gtin, l.lot, l.product, l.category, l.expiry, l.profile, "
        "l.custodian, l.commissioned_by, l.origin_event, l.recalled, l.held FROM lots l "
        "JOIN chains c ON c.id = l.id "
    )

    def lot_by_uri(self, uri: str) -> Lot | None:
        row = self.conn.execute(self._LOT + "WHERE c.subject = ?", (uri,)).fetchone()
        return self._lot(row) if row else None

    def lots(self) -> list[Lot]:
        return [self._lot(row) for row in self.conn.execute(self._LOT + "ORDER BY l.id")]

    def lot_by_id(self, lot_id: int) -> Lot | None:
        row = self.conn.execute(self._LOT + "WHERE l.id = ?", (lot_id,)).fetchone()
        return self._lot(row) if row else None

    @staticmethod
    def _lot(row: tuple[Any, ...]) -> Lot:
        return Lot(*row[:11], recalled=bool(row[11]), held=bool(row[12]))

    def insert_lot(self, lot: Lot) -> None:
        self.conn.execute(
            "INSERT INTO lots (id, gtin, lot, product, category, expiry, profile, custodian, "
            "commissioned_by, origin_event, recalled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                lot.id,
                lot.gtin,
                lot.lot,
                lot.product,
                lot.category,
                lot.expiry,
                lot.profile,
                lot.custodian,
                lot.commissioned_by,
                lot.origin_event,
                int(lot.recalled),
            ),
        )
        self._add_custodian(lot.id, lot.commissioned_by)
        self._add_custodian(lot.id, lot.custodian)

    def set_custodian(self, lot_id: int, party_id: int) -> None:
        self.conn.execute("UPDATE lots SET custodian = ? WHERE id = ?", (party_id, lot_id))
        self._add_custodian(lot_id, party_id)

    def _add_custodian(self, lot_id: int, party_id: int) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO custodians (lot, party) VALUES (?, ?)", (lot_id, party_id)
        )

    def held_by(self, lot_id: int, party_id: int) -> bool:
        """Whether the party holds or ever held the lot (made it, or received it)."""
        return (
            self.conn.execute(
                "SELECT 1 FROM custodians WHERE lot = ? AND party = ?", (lot_id, party_id)
            ).fetchone()
            is not None
        )

    def custodian_history(self, lot_id: int) -> list[int]:
        """Identity ids of every party that held the lot, in id order."""
        return [
            row[0]
            for row in self.conn.execute(
                "SELECT party FROM custodians WHERE lot = ? ORDER BY party", (lot_id,)
            )
        ]

    # --- GS1 company prefixes (who may commission under which GTINs)

    def record_prefixes(self, party_id: int, prefixes: Sequence[str], event_index: int) -> None:
        record_prefixes(self.conn, party_id, prefixes, event_index)

    def prefixes(self, party_id: int) -> list[str]:
        """The GS1 company prefixes the party may commission under, sorted."""
        return [
            row[0]
            for row in self.conn.execute(
                "SELECT prefix FROM prefixes WHERE party = ? ORDER BY prefix", (party_id,)
            )
        ]

    def set_recalled(self, lot_id: int, recalled: bool) -> None:
        self.conn.execute("UPDATE lots SET recalled = ? WHERE id = ?", (int(recalled), lot_id))

    # --- lineage and lot state (what a trace shows)

    def record_commission(self, lot_id: int, data: dict[str, Any]) -> None:
        record_commission(self.conn, lot_id, data)

    def record_transform(
        self, event_index: int, data: dict[str, Any], ids: dict[str, int]
    ) -> list[tuple[int, int]]:
        return record_transform(self.conn, event_index, data, ids)

    def record_dispense(self, lot_ids: Sequence[int], data: dict[str, Any]) -> None:
        record_dispense(self.conn, lot_ids, data)

    def record_location(self, lot_ids: Sequence[int], location: Any) -> None:
        record_location(self.conn, lot_ids, location)

    def descendants(self, lot_id: int) -> list[int]:
        return descendants(self.conn, lot_id)

    def ancestors(self, lot_id: int) -> list[int]:
        return [
            row[0]
            for row in self.conn.execute(
                _ANCESTORS + "SELECT id FROM up WHERE id <> ? ORDER BY id", (lot_id, lot_id)
            )
        ]

    def lineage_edges(self, lot_id: int, direction: str) -> list[LineageEdge]:
        """Every lineage edge upstream ("back") or downstream ("forward") of a
        lot, through one recursive query over the indexed edges."""
        if direction == "forward":
            sql = _DESCENDANTS + _EDGE + "WHERE parent IN (SELECT id FROM down)"
        elif direction == "back":
            sql = _ANCESTORS + _EDGE + "WHERE child IN (SELECT id FROM up)"
        else:
            raise ValueError(f"direction must be back or forward, not {direction!r}")
        return [LineageEdge(*row) for row in self.conn.execute(sql, (lot_id,))]

    def lot_states(self, lot_ids: Sequence[int]) -> list[LotState]:
        """What a trace shows of each lot (in no particular order)."""
        rows = self.conn.execute(
            "SELECT l.id, c.subject, l.gtin, l.lot, l.product, l.category, l.expiry, "
            "i.did, i.name, i.role, l.quantity, l.unit, l.used, l.used_other, l.location, "
            "l.recalled, l.origin_event FROM lots l JOIN chains c ON c.id = l.id "
            "LEFT JOIN identities i ON i.id = l.custodian "
            "WHERE l.id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(lot_ids)),),
        ).fetchall()
        return [
            LotState(
                *row[:13],
                bool(row[13]),
                None if row[14] is None else json.loads(row[14]),
                bool(row[15]),
                row[16],
            )
            for row in rows
        ]

    def open_shipments(self) -> dict[int, tuple[int, str | None, str | None, str | None]]:
        """lot id -> (ship event index, receiver did, name, role) of every lot in transit."""
        rows = self.conn.execute(
            "SELECT j.value, s.event, r.did, r.name, r.role FROM shipments s "
            "JOIN json_each(s.lots) j LEFT JOIN identities r ON r.id = s.receiver "
            "WHERE s.receive_event IS NULL"
        )
        return {row[0]: tuple(row[1:]) for row in rows}  # type: ignore[misc]

    def event_ids(self, indexes: Sequence[int]) -> dict[int, str]:
        """Event ids (hex) of the events at these log indexes."""
        rows = self.conn.execute(
            self._EVENT_COLUMNS + "WHERE e.idx IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(set(indexes))),),
        )
        return {row[0]: self.event_from_row(row).envelope.event_id for row in rows}

    # --- recalls (by source: a lot may be recalled directly and through ancestors)

    def record_recall(self, event_index: int, sources: Sequence[int]) -> list[int]:
        return record_recall(self.conn, event_index, sources)

    def record_lift(self, event_index: int, sources: Sequence[int]) -> list[int]:
        return record_lift(self.conn, event_index, sources)

    def active_recalls(self, lot_id: int) -> list[tuple[int, int]]:
        """(source lot id, recall event index) of the lot's active recalls, oldest first."""
        return self.conn.execute(
            "SELECT source, event FROM recalls WHERE lot = ? AND lift_event IS NULL "
            "ORDER BY event, source",
            (lot_id,),
        ).fetchall()

    def recall_rows(self, lot_id: int) -> list[tuple[int, int, int | None]]:
        """(source, recall event, lift event or None) of every recall that reached the lot."""
        return self.conn.execute(
            "SELECT source, event, lift_event FROM recalls WHERE lot = ? ORDER BY event, source",
            (lot_id,),
        ).fetchall()

    def lots_of_recall_event(self, event_index: int) -> list[int]:
        """The lots a recall (or, for a lift's index, a lift) changed, by id."""
        return [
            row[0]
            for row in self.conn.execute(
                "SELECT lot FROM recalls WHERE event = ? UNION "
                "SELECT lot FROM recalls WHERE lift_event = ? ORDER BY 1",
                (event_index, event_index),
            )
        ]

    def recall_effects(self, event_index: int) -> list[tuple[int, int]]:
        """(lot, source) of every recall row a recall (or lift) at this index made (or ended)."""
        return self.conn.execute(
            "SELECT lot, source FROM recalls WHERE event = ? OR lift_event = ? "
            "ORDER BY lot, source",
            (event_index, event_index),
        ).fetchall()

    def recall_events_since(self, begin: int) -> list[int]:
        """Log indexes of recalls and lifts from *begin* on."""
        codes = f"{KIND_CODES['recall']},{KIND_CODES['recall-lift']}"
        return [
            row[0]
            for row in self.conn.execute(
                f"SELECT idx FROM events WHERE idx >= ? AND kind IN ({codes}) ORDER BY idx",
                (begin,),
            )
        ]

    def recalled_count(self, lot_ids: Sequence[int]) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM lots WHERE recalled = 1 "
            "AND id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(lot_ids)),),
        ).fetchone()[0]

    # --- holds and flags (what the rules key decided; docs/rules.md)

    def record_hold(self, event_index: int, lot_ids: Sequence[int], rule: str) -> None:
        record_hold(self.conn, event_index, lot_ids, rule)

    def record_release(self, event_index: int, lot_ids: Sequence[int], hold: int | None) -> None:
        record_release(self.conn, event_index, lot_ids, hold)

    def record_flag(
        self, event_index: int, lot_ids: Sequence[int], rule: str, signal: str, key: str
    ) -> None:
        record_flag(self.conn, event_index, lot_ids, rule, signal, key)

    def active_holds(self, lot_id: int) -> list[tuple[int, str]]:
        """(hold event index, rule) of the lot's holds in force, oldest first."""
        return self.conn.execute(
            "SELECT event, rule FROM holds WHERE lot = ? AND release_event IS NULL ORDER BY event",
            (lot_id,),
        ).fetchall()

    def hold_rows(self, lot_id: int) -> list[tuple[int, str, int | None]]:
        """(hold event index, rule, release event index or None) of every hold of the lot."""
        return self.conn.execute(
            "SELECT event, rule, release_event FROM holds WHERE lot = ? ORDER BY event", (lot_id,)
        ).fetchall()

    def held_lots(self) -> list[tuple[int, int]]:
        """(lot id, hold event index) of every hold in force, oldest first."""
        return self.conn.execute(
            "SELECT lot, event FROM holds WHERE release_event IS NULL ORDER BY event, lot"
        ).fetchall()

    def has_flag(self, lot_id: int, rule: str, key: str) -> bool:
        return (
            self.conn.execute(
                "SELECT 1 FROM flags WHERE lot = ? AND rule = ? AND key = ?", (lot_id, rule, key)
            ).fetchone()
            is not None
        )

    def flag_rows(self, lot_id: int) -> list[tuple[int, str, str, str]]:
        """(flag event index, rule, signal, key) of every flag of the lot, oldest first."""
        return self.conn.execute(
            "SELECT event, rule, signal, key FROM flags WHERE lot = ? ORDER BY event", (lot_id,)
        ).fetchall()

    def recent_flags(self, limit: int = 100) -> list[tuple[int, int]]:
        """(lot id, flag event index) of the newest flags, newest first."""
        return self.conn.execute(
            "SELECT lot, event FROM flags ORDER BY event DESC, lot LIMIT ?", (limit,)
        ).fetchall()

    def hold_events_since(self, begin: int) -> list[tuple[int, str, list[int]]]:
        """(log index, kind, lot ids) of holds, releases and flags from *begin* on."""
        codes = ",".join(str(KIND_CODES[k]) for k in ("hold", "release", "flag"))
        return [
            (idx, KIND_NAMES[kind], parse_ids(lots or batches or "[]"))
            for idx, kind, batches, lots in self.conn.execute(
                f"SELECT idx, kind, batches, lots FROM events WHERE idx >= ? AND kind IN ({codes}) "
                "ORDER BY idx",
                (begin,),
            )
        ]

    def lot_events_since(
        self, begin: int, end: int, kinds: Sequence[str]
    ) -> list[tuple[int, str, int, str, list[int]]]:
        """(log index, kind, signer id, time, lot ids filed under) of events of *kinds*
        in [begin, end), in log order: what a follower of the ledger needs to know
        which lots an event touched, without rebuilding envelopes."""
        codes = ",".join(str(KIND_CODES[k]) for k in kinds)
        return [
            (idx, KIND_NAMES[kind], signer, time, parse_ids(lots or batches or "[]"))
            for idx, kind, signer, time, batches, lots in self.conn.execute(
                "SELECT idx, kind, signer, time, batches, lots FROM events "
                f"WHERE idx >= ? AND idx < ? AND kind IN ({codes}) ORDER BY idx",
                (begin, end),
            )
        ]

    def lot_readings(
        self, lot_id: int, from_pos: int = 0
    ) -> list[tuple[int, int, int, str, float | None, str | None]]:
        """(chain position, log index, device id, time, temperature °C or None, sensor
        or None) of the readings filed under the lot from chain position *from_pos*
        on, in chain order (a follower reads only what is new)."""
        return self.conn.execute(
            "SELECT l.pos, e.idx, e.signer, e.time, json_extract(e.data, '$.temperature_c'), "
            "json_extract(e.data, '$.sensor') "
            "FROM links l JOIN events e ON e.idx = l.event "
            "WHERE l.chain = ? AND l.pos >= ? AND e.kind = ? ORDER BY l.pos",
            (lot_id, from_pos, KIND_CODES["reading"]),
        ).fetchall()

    def lot_attachments(self, lot_id: int) -> list[tuple[int, int, int | None]]:
        """(device id, from µs, until µs or None) of every logger attached to the lot."""
        return self.conn.execute(
            "SELECT device, from_us, until_us FROM attachments WHERE lot = ? ORDER BY id",
            (lot_id,),
        ).fetchall()

    def open_attachments(self) -> list[tuple[int, int, int]]:
        """(lot id, device id, from µs) of every logger attached now."""
        return self.conn.execute(
            "SELECT lot, device, from_us FROM attachments WHERE until_us IS NULL ORDER BY id"
        ).fetchall()

    # --- attachments and shipments

    def attachments(self, device_id: int) -> list[list[Any]]:
        """[lot, from_us, until_us, attachment id] for a device, oldest first."""
        return [
            list(row)
            for row in self.conn.execute(
                "SELECT lot, from_us, until_us, id FROM attachments WHERE device = ? ORDER BY id",
                (device_id,),
            )
        ]

    def insert_attachment(self, device: int, lot: int, from_us: int, event_index: int) -> int:
        cursor = self.conn.execute(
            "INSERT INTO attachments (device, lot, from_us, attach_event) VALUES (?, ?, ?, ?)",
            (device, lot, from_us, event_index),
        )
        return cursor.lastrowid or 0

    def close_attachment(self, attachment_id: int, until_us: int, event_index: int) -> None:
        self.conn.execute(
            "UPDATE attachments SET until_us = ?, detach_event = ? WHERE id = ?",
            (until_us, event_index, attachment_id),
        )

    def insert_shipment(
        self, event_index: int, sender: int, receiver: int, lots: list[int]
    ) -> None:
        self.conn.execute(
            "INSERT INTO shipments (event, sender, receiver, lots) VALUES (?, ?, ?, ?)",
            (event_index, sender, receiver, json.dumps(sorted(lots))),
        )

    def shipment(self, event_index: int) -> tuple[int, int, list[int], int | None] | None:
        row = self.conn.execute(
            "SELECT sender, receiver, lots, receive_event FROM shipments WHERE event = ?",
            (event_index,),
        ).fetchone()
        return None if row is None else (row[0], row[1], json.loads(row[2]), row[3])

    def open_shipment_for(self, lot_id: int) -> int | None:
        row = self.conn.execute(
            "SELECT s.event FROM shipments s, json_each(s.lots) j "
            "WHERE s.receive_event IS NULL AND j.value = ? LIMIT 1",
            (lot_id,),
        ).fetchone()
        return row[0] if row else None

    def last_receive_of(self, lot_id: int) -> int | None:
        """Log index of the newest receive of a shipment that carried the lot
        (the lot's last handoff), or None if it was never received."""
        row = self.conn.execute(
            "SELECT max(s.receive_event) FROM shipments s, json_each(s.lots) j "
            "WHERE j.value = ? AND s.receive_event IS NOT NULL",
            (lot_id,),
        ).fetchone()
        return row[0] if row else None

    def close_shipment(self, event_index: int, receive_index: int) -> None:
        self.conn.execute(
            "UPDATE shipments SET receive_event = ? WHERE event = ?", (receive_index, event_index)
        )

    # --- rejects

    def insert_reject(
        self,
        at: str,
        reason: str,
        detail: str,
        source: str | None,
        event_id: str | None,
        raw: bytes | None,
        count: int = 1,
    ) -> int:
        """Record a refusal (or *count* of them: an aggregate row); its row id.
        Text is stored as valid UTF-8 (anything else escaped), raw bytes capped."""
        cursor = self.conn.execute(
            "INSERT INTO rejects (at, reason, detail, source, event_id, raw, count, last_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                at,
                _text(reason),
                _text(detail[:2000]),
                None if source is None else _text(source),
                event_id,
                None if raw is None else bytes(raw[:MAX_REJECT_RAW]),
                count,
                at,
            ),
        )
        return int(cursor.lastrowid or 0)

    def count_rejects(self, row: int, count: int, at: str) -> bool:
        """Add *count* refusals to aggregate row *row*; False if there is no such row."""
        cursor = self.conn.execute(
            "UPDATE rejects SET count = count + ?, last_at = ? WHERE id = ?", (count, at, row)
        )
        return cursor.rowcount == 1

    def rejects(self, limit: int = 100) -> list[tuple[Any, ...]]:
        """The newest reject rows: (at, reason, detail, source, event_id, count)."""
        return self.conn.execute(
            "SELECT at, reason, detail, source, event_id, count FROM rejects "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()

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


def _text(text: str) -> str:
    """*text* as valid UTF-8 (a lone surrogate, from input that was no text, escaped)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def leaf_for(envelope: Envelope) -> bytes:
    """The log's leaf hash for an event: RFC 9162 leaf hash of its 32-byte id."""
    return hash_leaf(envelope.id_bytes)
