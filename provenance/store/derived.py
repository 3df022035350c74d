"""Writers of the tables derived from the events: one function per effect of an
event on the lots (quantity, use, location, lineage, recalls, holds, flags, GS1
prefixes). Each takes the connection.

`EFFECTS` (at the end) is the one table from an event kind to what its events
write here: the ledger's kinds (provenance/ledger/kinds/) call it through
`Store.derive` once their checks pass, and the migrations' backfills
(provenance/store/backfills.py) replay the log through it, so an old ledger ends
up as a new one would. A kind not in it writes no derived lot state here.

The recursive lineage queries live here too: a recall cascades through them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Protocol


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
        "UPDATE lots SET recalled = CASE WHEN EXISTS (SELECT 1 FROM recalls r "
        "WHERE r.lot = lots.id AND r.lift_event IS NULL) THEN 1 ELSE 0 END WHERE id = ?",
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
        "UPDATE lots SET held = CASE WHEN EXISTS (SELECT 1 FROM holds h "
        "WHERE h.lot = lots.id AND h.release_event IS NULL) THEN 1 ELSE 0 END WHERE id = ?",
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


# --- the one table: what an event of each kind writes into the derived lot state

Data = dict[str, Any]


class Refs(Protocol):
    """How an effect finds what its event names by subject or by event id. The
    ledger's answer sees its append transaction (a hold earlier in the same
    batch is not in `events` yet: a release of it in the batch must still find
    it); a backfill's reads the log (provenance/store/backfills.py)."""

    def chain(self, subject: str) -> int:
        """The chain id of the lot *subject* (a URI the event names)."""
        ...

    def event(self, event_id: bytes, kind: str, before: int) -> int | None:
        """The log index of event *event_id*, if it is of *kind* and logged
        before index *before*; else None."""
        ...


# (connection, log index, the lots the event names — chain ids — its data,
# refs) -> the lots whose state it changed (a recall's or lift's: the named
# lots, then those downstream).
Effect = Callable[[sqlite3.Connection, int, Sequence[int], Data, Refs], list[int]]


def _commission(
    conn: sqlite3.Connection, _index: int, lots: Sequence[int], data: Data, _refs: Refs
) -> list[int]:
    record_commission(conn, lots[0], data)
    return list(lots)


def _transform(
    conn: sqlite3.Connection, index: int, lots: Sequence[int], data: Data, refs: Refs
) -> list[int]:
    ids = {item["batch"]: refs.chain(item["batch"]) for item in (*data["inputs"], *data["outputs"])}
    record_transform(conn, index, data, ids)
    return list(lots)


def _location(
    conn: sqlite3.Connection, _index: int, lots: Sequence[int], data: Data, _refs: Refs
) -> list[int]:
    record_location(conn, lots, data.get("location"))
    return list(lots)


def _dispense(
    conn: sqlite3.Connection, _index: int, lots: Sequence[int], data: Data, _refs: Refs
) -> list[int]:
    record_dispense(conn, lots, data)
    return list(lots)


def _recall(
    conn: sqlite3.Connection, index: int, lots: Sequence[int], _data: Data, _refs: Refs
) -> list[int]:
    return record_recall(conn, index, lots)


def _recall_lift(
    conn: sqlite3.Connection, index: int, lots: Sequence[int], _data: Data, _refs: Refs
) -> list[int]:
    return record_lift(conn, index, lots)


def _hold(
    conn: sqlite3.Connection, index: int, lots: Sequence[int], data: Data, _refs: Refs
) -> list[int]:
    record_hold(conn, index, lots, data["rule"])
    return list(lots)


def _release(
    conn: sqlite3.Connection, index: int, lots: Sequence[int], data: Data, refs: Refs
) -> list[int]:
    hold = None  # every hold in force on the lots
    if "hold" in data:  # the named hold; one not found ends none (-1 matches no row)
        found = refs.event(bytes.fromhex(data["hold"]), "hold", index)
        hold = -1 if found is None else found
    record_release(conn, index, lots, hold)
    return list(lots)


def _flag(
    conn: sqlite3.Connection, index: int, lots: Sequence[int], data: Data, _refs: Refs
) -> list[int]:
    record_flag(conn, index, lots, data["rule"], data["signal"], data["key"])
    return list(lots)


def _serials(
    conn: sqlite3.Connection, index: int, lots: Sequence[int], data: Data, _refs: Refs
) -> list[int]:
    """The serials a lot's maker issued, for the scan page and the counterfeit rules."""
    conn.executemany(
        "INSERT INTO serials (lot, serial, event) VALUES (?, ?, ?)",
        [(lot_id, serial, index) for lot_id in lots for serial in data["serials"]],
    )
    return list(lots)


EFFECTS: dict[str, Effect] = {
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
    "serials": _serials,
}


def derive(
    conn: sqlite3.Connection, kind: str, index: int, lots: Sequence[int], data: Data, refs: Refs
) -> list[int]:
    """Write what the event at log *index* of *kind*, naming *lots*, does to the
    derived lot state (`EFFECTS`); the lots whose state it changed."""
    return EFFECTS[kind](conn, index, lots, data, refs)
