"""Writers of the tables derived from the events: one function per effect of an
event on the lots (quantity, use, location, lineage, recalls, holds, flags, GS1
prefixes). Each takes the connection, so that the ledger (through `Store`) and
the migrations' backfills (provenance/store/backfills.py) write alike.

The recursive lineage queries live here too: a recall cascades through them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any


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


DESCENDANTS = (
    "WITH RECURSIVE down(id) AS (SELECT ? UNION "
    "SELECT l.child FROM lineage l JOIN down d ON l.parent = d.id) "
)
EDGE = "SELECT parent, child, event, in_value, in_unit, out_value, out_unit FROM lineage "
ANCESTORS = (
    "WITH RECURSIVE up(id) AS (SELECT ? UNION "
    "SELECT l.parent FROM lineage l JOIN up u ON l.child = u.id) "
)


def descendants(conn: sqlite3.Connection, lot_id: int, before: int | None = None) -> list[int]:
    """Every lot made, transitively, from *lot_id* (not itself), by id; with
    *before*, only through transforms logged before that index."""
    sql, params = DESCENDANTS, [lot_id, lot_id]
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


def recall_reach(
    conn: sqlite3.Connection, sources: Sequence[int], before: int | None = None
) -> list[tuple[int, int]]:
    """(lot, source) of every lot a recall of *sources* reaches: each source
    itself, then every lot made from it (through transforms logged before
    *before*, when given). The recall records exactly these rows, and the
    portal's preview shows them before anything is signed: one cascade."""
    rows: list[tuple[int, int]] = []
    for source in sources:
        rows.append((source, source))
        rows.extend((lot_id, source) for lot_id in descendants(conn, source, before))
    return rows


def record_recall(conn: sqlite3.Connection, event_index: int, sources: Sequence[int]) -> list[int]:
    """A recall of *sources*: each source and every lot downstream of it gets an
    active row naming that source; all become recalled. Returns the affected
    lots: the sources in order, then the rest by id."""
    rows = [
        (lot_id, source, event_index) for lot_id, source in recall_reach(conn, sources, event_index)
    ]
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


def record_prefixes(
    conn: sqlite3.Connection, party_id: int, prefixes: Sequence[str], event_index: int
) -> None:
    """The GS1 company prefixes an enrolment or grant at *event_index* gave the party."""
    conn.executemany(
        "INSERT OR IGNORE INTO prefixes (party, prefix, event) VALUES (?, ?, ?)",
        [(party_id, prefix, event_index) for prefix in prefixes],
    )
