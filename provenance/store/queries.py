"""Questions the portal asks of the ledger's tables: a party's lots, lot search,
a party's open shipments, the recalls in force. Read-only; each takes a `Store`
and returns rows or row models (the portal makes its views of them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provenance.core.kinds import KIND_CODES, KIND_NAMES
from provenance.store.rows import Lot
from provenance.store.state import LOT_SELECT, lot_from_row

if TYPE_CHECKING:
    from provenance.store.db import Store

ShipmentRow = tuple[int, int, int, list[int]]  # (ship event index, sender, receiver, lot ids)


def party_lots(store: Store, party_id: int, *, limit: int, offset: int) -> tuple[list[Lot], int]:
    """Lots the party holds or made, newest first (a page of them), and how many there are."""
    where = "WHERE l.custodian = ? OR l.commissioned_by = ? "
    total = store.conn.execute(
        "SELECT count(*) FROM lots l " + where, (party_id, party_id)
    ).fetchone()[0]
    rows = store.conn.execute(
        LOT_SELECT + where + "ORDER BY l.id DESC LIMIT ? OFFSET ?",
        (party_id, party_id, limit, offset),
    ).fetchall()
    return [lot_from_row(row) for row in rows], total


def lots_in_custody_of(store: Store, party_id: int, limit: int = 500) -> list[Lot]:
    """Lots the party holds now, newest first: those it is the custodian of,
    and those it holds part of (docs/protocol.md §13)."""
    rows = store.conn.execute(
        LOT_SELECT + "WHERE l.custodian = ? OR l.id IN (SELECT h.lot FROM holdings h "
        "WHERE h.party = ? AND h.held > 0) ORDER BY l.id DESC LIMIT ?",
        (party_id, party_id, limit),
    ).fetchall()
    return [lot_from_row(row) for row in rows]


def open_shipments_of(store: Store, party_id: int, *, incoming: bool) -> list[ShipmentRow]:
    """The party's shipments not yet received, to it (*incoming*) or from it, newest
    first (200 at most)."""
    column = "receiver" if incoming else "sender"
    rows = store.conn.execute(
        "SELECT event, sender, receiver, lots FROM shipments "
        f"WHERE {column} = ? AND receive_event IS NULL ORDER BY event DESC LIMIT 200",
        (party_id,),
    ).fetchall()
    return [(event, sender, receiver, _ids(lots)) for event, sender, receiver, lots in rows]


def open_shipment_at(store: Store, event_index: int) -> ShipmentRow | None:
    """The shipment made at *event_index*, if it is not yet received."""
    row = store.conn.execute(
        "SELECT event, sender, receiver, lots FROM shipments WHERE event = ? "
        "AND receive_event IS NULL",
        (event_index,),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2], _ids(row[3]))


def _ids(text: str) -> list[int]:
    """Lot ids of a shipment row ("[3, 7]")."""
    inner = text.strip()[1:-1]
    return [int(part) for part in inner.split(",") if part.strip()]


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_lots(
    store: Store,
    *,
    text: str = "",
    gtin: str = "",
    lot: str = "",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Lot], int]:
    """Lots whose GTIN starts with *gtin* (or equals its 14-digit form), whose
    lot code contains *lot*, and whose product name contains *text*, newest
    first (a page of them), and how many there are."""
    where, params = [], []
    if gtin:
        digits = gtin.strip()
        where.append("(l.gtin = ? OR l.gtin LIKE ? ESCAPE '\\')")
        params += [digits.zfill(14), digits.replace("%", "").replace("_", "") + "%"]
    if lot:
        where.append("l.lot LIKE ? ESCAPE '\\'")
        params.append(_like(lot.strip()))
    if text:
        where.append("l.product LIKE ? ESCAPE '\\'")
        params.append(_like(text.strip()))
    clause = ("WHERE " + " AND ".join(where) + " ") if where else ""
    total = store.conn.execute("SELECT count(*) FROM lots l " + clause, params).fetchone()[0]
    rows = store.conn.execute(
        LOT_SELECT + clause + "ORDER BY l.id DESC LIMIT ? OFFSET ?", (*params, limit, offset)
    ).fetchall()
    return [lot_from_row(row) for row in rows], total


def recalls_in_force(store: Store, limit: int = 500) -> list[tuple[int, list[int], int]]:
    """(recall event index, the lots it named, how many lots it still holds recalled)
    of every recall with a lot still under it, newest first."""
    rows = store.conn.execute(
        "SELECT event, group_concat(DISTINCT source), count(DISTINCT lot) FROM recalls "
        "WHERE lift_event IS NULL GROUP BY event ORDER BY event DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        (event_index, [int(source) for source in str(sources).split(",")], count)
        for event_index, sources, count in rows
    ]


# Kinds whose events say where a lot is (a commission's origin, the others' location).
PLACE_KINDS = ("commission", "ship", "receive", "transform", "dispense")
PLACE_SCAN = 200  # custody events of one lot read, newest first, to find its place

PlaceRow = tuple[int, str, int, str, str | None]  # (index, kind, signer id, time, place JSON)


def lot_custody_events(store: Store, lot_id: int, limit: int = PLACE_SCAN) -> list[PlaceRow]:
    """(event index, kind, signer id, time, place JSON or None) of the lot's
    custody events (commission, ship, receive, transform, dispense), newest first."""
    codes = ",".join(str(KIND_CODES[kind]) for kind in PLACE_KINDS)
    rows = store.conn.execute(
        "SELECT e.idx, e.kind, e.signer, e.time, "
        "coalesce(json_extract(e.data, '$.location'), json_extract(e.data, '$.origin')) "
        f"FROM links k JOIN events e ON e.idx = k.event WHERE k.chain = ? AND e.kind IN ({codes}) "
        "ORDER BY e.idx DESC LIMIT ?",
        (lot_id, limit),
    ).fetchall()
    return [(idx, KIND_NAMES[kind], signer, time, place) for idx, kind, signer, time, place in rows]


def last_place_of_party(store: Store, party_id: int) -> tuple[str, str] | None:
    """(time, place JSON) of the newest custody event the party signed that names
    a place, on any lot; None when it never named one."""
    codes = ",".join(str(KIND_CODES[kind]) for kind in PLACE_KINDS)
    return store.conn.execute(
        "SELECT time, place FROM (SELECT e.idx, e.time, "
        "coalesce(json_extract(e.data, '$.location'), json_extract(e.data, '$.origin')) AS place "
        f"FROM events e WHERE e.signer = ? AND e.kind IN ({codes})) AS custody "
        "WHERE place IS NOT NULL ORDER BY idx DESC LIMIT 1",
        (party_id,),
    ).fetchone()


DecisionRow = tuple[str, int, int]  # ("hold" or "flag", lot id, event index)


def open_decisions(store: Store, *, limit: int, offset: int) -> tuple[list[DecisionRow], int]:
    """(kind "hold" or "flag", lot id, event index) of every hold in force and
    every flag, newest first (a page of them), and how many there are."""
    union = (
        "SELECT 'hold' AS kind, lot, event FROM holds WHERE release_event IS NULL "
        "UNION ALL SELECT 'flag', lot, event FROM flags"
    )
    total = store.conn.execute(f"SELECT count(*) FROM ({union}) AS decisions").fetchone()[0]
    rows = store.conn.execute(
        f"SELECT kind, lot, event FROM ({union}) AS decisions "
        "ORDER BY event DESC, lot LIMIT ? OFFSET ?",
        (limit, offset),
    ).fetchall()
    return [(kind, lot, event) for kind, lot, event in rows], total


def lots_ever_held_by(store: Store, party_id: int) -> set[str]:
    """The URIs of every lot the party made or held at any time (the custodians
    table), which decides what of the ledger it may query (docs/epcis.md)."""
    rows = store.conn.execute(
        "SELECT c.subject FROM custodians k JOIN chains c ON c.id = k.lot WHERE k.party = ?",
        (party_id,),
    ).fetchall()
    return {row[0] for row in rows}
