"""Backfills: when a migration adds a derived table, it is filled by replaying
the events the log already holds through `EFFECTS` (provenance/store/derived.py),
the same table from an event kind to its derived-state writer that the ledger's
kinds call when they append, so an old ledger ends up as a new one would. Each
backfill replays the kinds its migration concerns. What an event names by id or
subject is found in the log (`LogRefs`); the ledger's refs see its append
transaction too.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from provenance.core.kinds import KIND_CODES, KIND_NAMES, PREFIXES_FIELD
from provenance.store.derived import derive, record_prefixes
from provenance.store.rows import event_key, parse_ids


class LogRefs:
    """`Refs` as the log says: chains by subject, events by id among those logged."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def chain(self, subject: str) -> int:
        return self.conn.execute("SELECT id FROM chains WHERE subject = ?", (subject,)).fetchone()[
            0
        ]

    def event(self, event_id: bytes, kind: str, before: int) -> int | None:
        found = self.conn.execute(
            "SELECT idx FROM events WHERE key = ? AND kind = ? AND idx < ?",
            (event_key(event_id), KIND_CODES[kind], before),
        ).fetchone()
        return found[0] if found else None


def replay(conn: sqlite3.Connection, kinds: Sequence[str]) -> None:
    """Replay the logged events of *kinds*, in log order, through `EFFECTS`."""
    codes = ",".join(str(KIND_CODES[kind]) for kind in kinds)
    rows = conn.execute(
        f"SELECT idx, kind, batches, data FROM events WHERE kind IN ({codes}) ORDER BY idx"
    ).fetchall()
    refs = LogRefs(conn)
    for idx, kind, named, data_text in rows:
        lots = parse_ids(named) if named else []
        derive(conn, KIND_NAMES[kind], idx, lots, json.loads(data_text), refs)


def backfill_lots(conn: sqlite3.Connection) -> None:
    """The lineage table and the lots' quantity and location columns."""
    replay(conn, ("commission", "transform", "ship", "receive", "dispense"))


def backfill_recalls(conn: sqlite3.Connection) -> None:
    """Which lots each recall reached, and its lifts."""
    replay(conn, ("recall", "recall-lift"))


def backfill_holds(conn: sqlite3.Connection) -> None:
    """Holds in force, their releases, and flags."""
    replay(conn, ("hold", "release", "flag"))


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
