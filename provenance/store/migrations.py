"""The ledger's schema as named migrations, in order. Each runs once, in its own
transaction, and is recorded by name in `_migrations`: existing databases record
these names, so a migration is never renamed, reordered or edited — a change is
a new migration after the last (`Store.migrate` runs them).

The meta keys set here mark the log index from which a rule added later applies
(what the log already held was accepted without it and stays valid).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils

from provenance.store.backfills import (
    backfill_access,
    backfill_holds,
    backfill_lots,
    backfill_recalls,
)
from provenance.store.holdings import backfill_holdings

RECALL_RULES_FROM = "recall_rules_from"  # meta: log index from which recall rules apply
ACCESS_RULES_FROM = "access_rules_from"  # meta: log index from which access rules apply
TIME_RULES_FROM = "time_rules_from"  # meta: log index from which the time rules apply
SORTED_HEADS_FROM = "sorted_heads_from"  # meta: checkpoints of a larger size sort the heads tree
QUANTITY_RULES_FROM = "quantity_rules_from"  # meta: log index from which quantity rules apply
GLN_RULES_FROM = "gln_rules_from"  # meta: log index from which GLN check digits are checked

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(name: str) -> Callable[[Migration], Migration]:
    """Register a named schema migration; each runs once, in its own transaction."""

    def register(function: Migration) -> Migration:
        MIGRATIONS.append((name, function))
        return function

    return register


def _rules_from_here(conn: sqlite3.Connection, key: str) -> None:
    """Record in meta *key* the log index from which new rules apply: the log's
    size now. Never moved once set (a boundary already recorded stays where it
    was), so the events already logged stay valid on replay."""
    size = conn.execute("SELECT coalesce(max(idx) + 1, 0) FROM events").fetchone()[0]
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
        (key, str(size)),
    )


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
    backfill_lots(conn)


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
    _rules_from_here(conn, RECALL_RULES_FROM)
    backfill_recalls(conn)


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
    backfill_holds(conn)


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
    _rules_from_here(conn, ACCESS_RULES_FROM)
    backfill_access(conn)


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
    _rules_from_here(db.conn, TIME_RULES_FROM)


@migration("0008_cosignatures")
def _cosignatures(db: sqlite_utils.Database) -> None:
    """Witnessing (docs/protocol.md, "Witnessing"): the witnesses the log asks
    to cosign its checkpoints, the size each last cosigned (what the next
    add-checkpoint proves consistency from), and every cosignature line
    collected, per checkpoint size and witness. The quorum is meta
    `witness_quorum`."""
    conn = db.conn
    conn.execute(
        """CREATE TABLE witnesses (
            name TEXT PRIMARY KEY,   -- what the policy and the scan page call it
            url TEXT NOT NULL,       -- submission prefix: POST <url>/add-checkpoint
            vkey TEXT NOT NULL,      -- C2SP verifier key of its cosignature/v1 key
            cosigned_size INTEGER    -- the size it last cosigned for us; NULL: not known yet
        )"""
    )
    conn.execute(
        """CREATE TABLE cosignatures (
            size INTEGER NOT NULL,   -- the checkpoint (checkpoints.size) it cosigns
            witness TEXT NOT NULL,   -- witnesses.name
            line TEXT NOT NULL,      -- the signed-note line, verified before it was stored
            timestamp INTEGER NOT NULL,  -- the cosignature's own time, POSIX seconds
            PRIMARY KEY (size, witness)) WITHOUT ROWID"""
    )


@migration("0009_sorted_heads")
def _sorted_heads(db: sqlite_utils.Database) -> None:
    """Checkpoints of a log size above the one recorded here carry the sorted
    heads tree (`provenance-heads/v2`, docs/protocol.md §6); those up to it, the
    creation-order one they were signed with. `verify` holds each checkpoint to
    the rule of its size, so a creation-order checkpoint signed after the switch
    (which would let bundles hide a second chain) is caught. Never moved once set."""
    _rules_from_here(db.conn, SORTED_HEADS_FROM)


@migration("0010_rotation")
def _rotation(db: sqlite_utils.Database) -> None:
    """Key rotation (docs/protocol.md, "Key rotation"): a party or device that
    moves to a new key gets a new identity row (the events its old key signed
    keep naming the old one) with the same name, so a name is unique among the
    identities not rotated away from; `rotated_to` links a rotated identity to
    its successor and `rotate_event` is the log index of the rotation. The
    table is rebuilt because SQLite cannot drop a UNIQUE constraint."""
    conn = db.conn
    conn.execute(
        """CREATE TABLE identities_rotation (
            id INTEGER PRIMARY KEY, did TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
            name TEXT NOT NULL, role TEXT, owner INTEGER, enrol_event INTEGER NOT NULL,
            revoked_from TEXT, revoke_event INTEGER, rotated_to INTEGER, rotate_event INTEGER)"""
    )
    conn.execute(
        "INSERT INTO identities_rotation (id, did, type, name, role, owner, enrol_event, "
        "revoked_from, revoke_event) SELECT id, did, type, name, role, owner, enrol_event, "
        "revoked_from, revoke_event FROM identities"
    )
    conn.execute("DROP TABLE identities")
    conn.execute("ALTER TABLE identities_rotation RENAME TO identities")
    conn.execute(
        "CREATE UNIQUE INDEX identities_current_name ON identities (type, name) "
        "WHERE rotated_to IS NULL"
    )


@migration("0011_holdings")
def _holdings(db: sqlite_utils.Database) -> None:
    """Quantities (docs/protocol.md, "Quantities"): how much of each lot each
    party holds, has dispensed and has used in transforms, in the lot's unit
    (wholes for a lot registered without a quantity), and what each shipment
    carried of each lot: shipped, received, damaged. Backfilled by replaying
    the log (provenance/store/holdings.py); the quantity rules (no more
    shipped, dispensed or used than is free, units that match) apply from the
    log's size now on (meta `quantity_rules_from`)."""
    conn = db.conn
    conn.execute(
        """CREATE TABLE holdings (
            lot INTEGER NOT NULL,     -- lots.id
            party INTEGER NOT NULL,   -- identities.id
            held REAL NOT NULL,       -- what it holds now, including what it shipped
                                      -- that is not received yet
            dispensed REAL NOT NULL DEFAULT 0,  -- dispensed by it, in all
            used REAL NOT NULL DEFAULT 0,       -- used by its transforms, in all
            PRIMARY KEY (lot, party)) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX holdings_party ON holdings (party, lot)")
    conn.execute(
        """CREATE TABLE shipment_lots (
            shipment INTEGER NOT NULL,  -- log index of the ship (shipments.event)
            lot INTEGER NOT NULL,       -- lots.id
            shipped REAL NOT NULL,      -- how much of the lot it carried
            received REAL,              -- how much the receiver took in; NULL: in transit
            damaged REAL,               -- how much arrived damaged (not held by anyone)
            PRIMARY KEY (shipment, lot)) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX shipment_lots_lot ON shipment_lots (lot, shipment)")
    _rules_from_here(conn, QUANTITY_RULES_FROM)
    backfill_holdings(conn)


@migration("0012_pallets")
def _pallets(db: sqlite_utils.Database) -> None:
    """Logistic units (cases and pallets, by SSCC) packed and unpacked
    (docs/protocol.md, "Pallets and cases"): each unit once, who packed it and
    who has it now, the pallet a case sits on, the open shipment carrying it,
    and the lots on it with the quantity packed. A new kind, so nothing to
    backfill: the log held no pack before this."""
    db.execute(
        """CREATE TABLE pallets (
            sscc TEXT PRIMARY KEY,
            parent TEXT,               -- SSCC of the pallet a case is on, while it is
            holder INTEGER NOT NULL,   -- identities.id of the party that has it now
            packed_by INTEGER NOT NULL,
            pack_event INTEGER NOT NULL,
            unpack_event INTEGER,
            shipment INTEGER,          -- log index of the open shipment carrying it
            prefix_length INTEGER      -- of the packer's GS1 company prefix, when known
        )"""
    )
    db.execute("CREATE INDEX pallets_parent ON pallets (parent)")
    db.execute("CREATE INDEX pallets_shipment ON pallets (shipment)")
    db.execute(
        """CREATE TABLE pallet_contents (
            sscc TEXT NOT NULL, lot INTEGER NOT NULL, value REAL NOT NULL, unit TEXT NOT NULL,
            PRIMARY KEY (sscc, lot))"""
    )
    db.execute("CREATE INDEX pallet_contents_lot ON pallet_contents (lot)")


@migration("0013_places")
def _places(db: sqlite_utils.Database) -> None:
    """Places and the parties' GS1 identifiers (docs/protocol.md §15): the places
    registry (one row per GLN, from the newest `place` event on it) and a party's
    PGLN and address from its enrolment. Nothing to backfill: no event logged
    before could give them. GLNs are checked for their GS1 check digit from the
    log index recorded here on; the audit replays the events before it with the
    rule off (they were accepted with 13 digits alone). Never moved once set."""
    conn = db.conn
    conn.execute(
        """CREATE TABLE places (
            gln TEXT PRIMARY KEY,    -- the place's GLN (13 digits)
            party INTEGER NOT NULL,  -- identities.id of the party that registered it
            name TEXT NOT NULL,
            address TEXT,            -- JSON {street, city, postal_code, region, country}
            lat REAL, lon REAL,
            type TEXT,               -- farm, packhouse, warehouse, store, clinic…
            event INTEGER NOT NULL   -- log index of the registration in force
        )"""
    )
    conn.execute("CREATE INDEX places_party ON places (party, gln)")
    conn.execute("ALTER TABLE identities ADD COLUMN pgln TEXT")
    conn.execute("ALTER TABLE identities ADD COLUMN address TEXT")  # JSON, as places.address
    conn.execute("CREATE INDEX identities_pgln ON identities (pgln) WHERE pgln IS NOT NULL")
    _rules_from_here(conn, GLN_RULES_FROM)


@migration("0014_serials")
def _serials(db: sqlite_utils.Database) -> None:
    """The serial numbers (GS1 AI 21) issued per lot by `serials` events: the scan of
    `/01/…/10/{lot}/21/{serial}` looks one up by its key (docs/protocol.md, "Serials").
    Empty on an existing ledger: the kind is new."""
    db.conn.execute(
        """CREATE TABLE serials (
            lot INTEGER NOT NULL,    -- lots.id
            serial TEXT NOT NULL,    -- GS1 AI (21), 1-20 characters of set 82
            event INTEGER NOT NULL,  -- log index of the `serials` event that issued it
            PRIMARY KEY (lot, serial)) WITHOUT ROWID"""
    )


@migration("0015_disclosure")
def _disclosure(db: sqlite_utils.Database) -> None:
    """Selective disclosure (docs/protocol.md §14): the encoded disclosures of
    v2 events' private fields, one row per field, by the event's log index
    and the digest its envelope signed; and the grants by which a signer lets
    another party see its disclosures, each a statement the signer signed.
    Kept beside the log, never in bundles, pages or tiles
    (provenance/store/disclosures.py)."""
    db.conn.execute(
        """CREATE TABLE disclosures (
            idx INTEGER NOT NULL,        -- events.idx of the v2 event
            digest TEXT NOT NULL,        -- the digest in its data._sd (base64url SHA-256)
            disclosure TEXT NOT NULL,    -- base64url of [salt, name, value], as signed
            PRIMARY KEY (idx, digest)) WITHOUT ROWID"""
    )
    db.conn.execute(
        """CREATE TABLE disclosure_grants (
            grantor TEXT NOT NULL,       -- the did whose private fields may be seen
            grantee TEXT NOT NULL,       -- the party's did that may see them
            time TEXT NOT NULL,          -- when the grantor signed it (RFC 3339 UTC)
            sig TEXT NOT NULL,           -- the grantor's Ed25519 signature over the statement
            PRIMARY KEY (grantor, grantee)) WITHOUT ROWID"""
    )


@migration("0016_recall_acks")
def _recall_acks(db: sqlite_utils.Database) -> None:
    """Recall acknowledgements (`recall-ack`, docs/lineage.md): a holder's signed
    answer to a recall, with what it returned and destroyed. One row per
    acknowledgement; a party may send several (progress). Nothing to backfill:
    the kind is new with this migration."""
    db.conn.execute(
        """CREATE TABLE recall_acks (
            event INTEGER NOT NULL,     -- log index of the acknowledgement
            recall INTEGER NOT NULL,    -- log index of the recall it answers
            lot INTEGER NOT NULL,       -- lots.id
            party INTEGER NOT NULL,     -- identities.id of the signer
            returned_value REAL, returned_unit TEXT,
            destroyed_value REAL, destroyed_unit TEXT,
            PRIMARY KEY (event, lot)) WITHOUT ROWID"""
    )
    db.conn.execute("CREATE INDEX recall_acks_lot ON recall_acks (lot, party)")


@migration("0017_capture")
def _record_times(db: sqlite_utils.Database) -> None:
    """Record times (EPCIS `recordTime`, docs/epcis.md "Record time"): each
    append writes one row, the log index of its first event and the server's
    clock then; an event's record time is that of the row with the greatest
    `first_idx` at or below its index. Events appended before this migration
    have none (a recordTime filter never matches them)."""
    db.conn.execute(
        "CREATE TABLE record_times (first_idx INTEGER PRIMARY KEY, at_us INTEGER NOT NULL)"
    )
