"""The `recall_acks` table (migration 0016_recall_acks): one row per accepted
`recall-ack` — which recall, which lot, which party, what it returned and
destroyed. Written by the `recall-ack` kind when it is appended (the audit's
replay appends through the same door), read by the recall report. Each
function takes the `Store` (SQLite or PostgreSQL), inside the caller's
transaction or snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AckRow:
    event: int  # log index of the acknowledgement
    recall: int  # log index of the recall it answers
    lot: int  # lots.id
    party: int  # identities.id of the party that signed it
    returned: tuple[float, str] | None
    destroyed: tuple[float, str] | None


def _pair(quantity: Any) -> tuple[Any, Any]:
    if not isinstance(quantity, dict):
        return None, None
    return quantity.get("value"), quantity.get("unit")


def record_recall_ack(
    store: Any, event_index: int, recall_index: int, lot_id: int, party_id: int, data: dict
) -> None:
    """The acknowledgement at *event_index* of the recall at *recall_index*."""
    returned, destroyed = _pair(data.get("returned")), _pair(data.get("destroyed"))
    store.conn.execute(
        "INSERT INTO recall_acks (event, recall, lot, party, returned_value, returned_unit, "
        "destroyed_value, destroyed_unit) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (event_index, recall_index, lot_id, party_id, *returned, *destroyed),
    )


_COLUMNS = (
    "SELECT event, recall, lot, party, returned_value, returned_unit, destroyed_value, "
    "destroyed_unit FROM recall_acks "
)


def _row(row: Sequence[Any]) -> AckRow:
    returned = None if row[4] is None else (row[4], row[5])
    destroyed = None if row[6] is None else (row[6], row[7])
    return AckRow(row[0], row[1], row[2], row[3], returned, destroyed)


def acks_of(store: Any, lot_id: int, party_id: int) -> list[AckRow]:
    """Every acknowledgement *party_id* signed about *lot_id*, whatever the recall."""
    rows = store.conn.execute(
        _COLUMNS + "WHERE lot = ? AND party = ? ORDER BY event", (lot_id, party_id)
    ).fetchall()
    return [_row(row) for row in rows]


def acks_for_lots(store: Any, lot_ids: Sequence[int]) -> list[AckRow]:
    """Every acknowledgement about these lots, in log order."""
    rows = store.conn.execute(
        _COLUMNS + "WHERE lot IN (SELECT value FROM json_each(?)) ORDER BY event",
        (json.dumps(list(lot_ids)),),
    ).fetchall()
    return [_row(row) for row in rows]


__all__ = ["AckRow", "acks_for_lots", "acks_of", "record_recall_ack"]
