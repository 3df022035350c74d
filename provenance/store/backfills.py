"""Backfills: when a migration adds a derived table, it is filled by replaying
the events the log already holds through the same writers the ledger uses
(provenance/store/derived.py), so an old ledger ends up as a new one would.
"""

from __future__ import annotations

import json
import sqlite3

from provenance.core.kinds import KIND_CODES, KIND_NAMES, PREFIXES_FIELD
from provenance.store.derived import (
    record_commission,
    record_dispense,
    record_flag,
    record_hold,
    record_lift,
    record_location,
    record_prefixes,
    record_recall,
    record_release,
    record_transform,
)
from provenance.store.rows import event_key, parse_ids


def backfill_holds(conn: sqlite3.Connection) -> None:
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
                    (event_key(bytes.fromhex(data["hold"])), KIND_CODES["hold"], idx),
                ).fetchone()
                hold = found[0] if found else -1
            record_release(conn, idx, lots, hold)
        else:
            record_flag(conn, idx, lots, data["rule"], data["signal"], data["key"])


def backfill_lots(conn: sqlite3.Connection) -> None:
    """Replay commission, transform, ship, receive and dispense into the lineage
    table and the lots' quantity and location columns, through the same
    functions the ledger writes with."""
    ids = dict(conn.execute("SELECT subject, id FROM chains"))
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


def backfill_recalls(conn: sqlite3.Connection) -> None:
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


def backfill_access(conn: sqlite3.Connection) -> None:
    """Every party that held each lot (its commissioner, its custodian, every
    receiver) and the GS1 prefixes each enrolment gave."""
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
