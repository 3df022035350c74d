"""Backfills: when a migration adds a derived table, it is filled by replaying
the events the log already holds through the same writers the ledger uses
(provenance/store/derived.py), so an old ledger ends up as a new one would.

`REPLAYS` says, per kind name, what an event of that kind writes into the
derived lot state (quantity, use, location, lineage, recalls, holds, flags);
each backfill replays the kinds its migration concerns through that one
table. The ledger's rules for a kind (provenance/ledger/kinds/) call the same
writers once their checks pass; the store cannot import them (the layer rule,
docs/architecture.md), so the mapping from an event to its writer for the
backfills is here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

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

Data = dict[str, Any]
# (connection, log index, the lots the event names — chain ids — and its data)
Replay = Callable[[sqlite3.Connection, int, list[int], Data], None]


def _commission(conn: sqlite3.Connection, _idx: int, lots: list[int], data: Data) -> None:
    record_commission(conn, lots[0], data)


def _transform(conn: sqlite3.Connection, idx: int, _lots: list[int], data: Data) -> None:
    uris = [item["batch"] for item in (*data["inputs"], *data["outputs"])]
    marks = ",".join("?" * len(uris))
    ids = dict(conn.execute(f"SELECT subject, id FROM chains WHERE subject IN ({marks})", uris))
    record_transform(conn, idx, data, ids)


def _location(conn: sqlite3.Connection, _idx: int, lots: list[int], data: Data) -> None:
    record_location(conn, lots, data.get("location"))


def _dispense(conn: sqlite3.Connection, _idx: int, lots: list[int], data: Data) -> None:
    record_dispense(conn, lots, data)


def _recall(conn: sqlite3.Connection, idx: int, lots: list[int], _data: Data) -> None:
    record_recall(conn, idx, lots)


def _recall_lift(conn: sqlite3.Connection, idx: int, lots: list[int], _data: Data) -> None:
    record_lift(conn, idx, lots)


def _hold(conn: sqlite3.Connection, idx: int, lots: list[int], data: Data) -> None:
    record_hold(conn, idx, lots, data["rule"])


def _release(conn: sqlite3.Connection, idx: int, lots: list[int], data: Data) -> None:
    hold = None
    if "hold" in data:  # the named hold, found by its id's key among holds
        found = conn.execute(
            "SELECT idx FROM events WHERE key = ? AND kind = ? AND idx < ?",
            (event_key(bytes.fromhex(data["hold"])), KIND_CODES["hold"], idx),
        ).fetchone()
        hold = found[0] if found else -1
    record_release(conn, idx, lots, hold)


def _flag(conn: sqlite3.Connection, idx: int, lots: list[int], data: Data) -> None:
    record_flag(conn, idx, lots, data["rule"], data["signal"], data["key"])


REPLAYS: dict[str, Replay] = {
    "commission": _commission,
    "transform": _transform,
    "ship": _location,
    "receive": _location,
    "dispense": _dispense,
    "recall": _recall,
    "recall-lift": _recall_lift,
    "hold": _hold,
    "release": _release,
    "flag": _flag,
}


def replay(conn: sqlite3.Connection, kinds: Sequence[str]) -> None:
    """Replay the logged events of *kinds*, in log order, through `REPLAYS`."""
    codes = ",".join(str(KIND_CODES[kind]) for kind in kinds)
    rows = conn.execute(
        f"SELECT idx, kind, batches, data FROM events WHERE kind IN ({codes}) ORDER BY idx"
    ).fetchall()
    for idx, kind, batches, data_text in rows:
        lots = parse_ids(batches) if batches else []
        REPLAYS[KIND_NAMES[kind]](conn, idx, lots, json.loads(data_text))


def backfill_lots(conn: sqlite3.Connection) -> None:
    """The lineage table and the lots' quantity and location columns."""
    replay(conn, ("commission", "transform", "ship", "receive", "dispense"))


def backfill_recalls(conn: sqlite3.Connection) -> None:
    """Which lots each recall reached, and its lifts."""
    replay(conn, ("recall", "recall-lift"))


def backfill_holds(conn: sqlite3.Connection) -> None:
    """Holds in force, their releases, and flags."""
    replay(conn, ("hold", "release", "flag"))


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
