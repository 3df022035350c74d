"""Read-only questions the portal asks the ledger that `Store` has no method
for yet: a party's lots and shipments, lot search, recalled lots.

They read the store's tables directly through its connection and decide
nothing. (They belong in `provenance.store.db` as methods; they are kept here
until the store's owner moves them.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provenance.core.envelope import Envelope
from provenance.core.identity import OVERSIGHT_ROLES
from provenance.store.db import Identity, Lot, LotState, Store

# The store's own lot query and row mapping, so the portal sees every lot column
# (recalled, held, …) the ledger keeps.
_LOT = Store._LOT
_lot = Store._lot


@dataclass(frozen=True)
class Shipment:
    event_index: int
    event_id: str
    sender: Identity | None
    receiver: Identity | None
    lots: tuple[Lot, ...]
    time: str
    location: dict[str, Any] | None


def lot_by_id(store: Store, lot_id: int) -> Lot | None:
    row = store.conn.execute(_LOT + "WHERE l.id = ?", (lot_id,)).fetchone()
    return _lot(row) if row else None


def party_lots(store: Store, party_id: int, *, limit: int, offset: int) -> tuple[list[Lot], int]:
    """Lots the party holds or made, newest first, and how many there are."""
    where = "WHERE l.custodian = ? OR l.commissioned_by = ? "
    total = store.conn.execute(
        "SELECT count(*) FROM lots l " + where, (party_id, party_id)
    ).fetchone()[0]
    rows = store.conn.execute(
        _LOT + where + "ORDER BY l.id DESC LIMIT ? OFFSET ?", (party_id, party_id, limit, offset)
    ).fetchall()
    return [_lot(row) for row in rows], total


def held_lots(store: Store, party_id: int, limit: int = 500) -> list[Lot]:
    rows = store.conn.execute(
        _LOT + "WHERE l.custodian = ? ORDER BY l.id DESC LIMIT ?", (party_id, limit)
    ).fetchall()
    return [_lot(row) for row in rows]


def involved(store: Store, lot: Lot, party_id: int) -> bool:
    """Whether the party holds the lot, held it (made or received it), or is
    the receiver of its open shipment: custody, never "signed an event naming
    it" (anyone enrolled may try to sign about any lot; docs/portal.md)."""
    if party_id in (lot.custodian, lot.commissioned_by) or store.held_by(lot.id, party_id):
        return True
    return any(s.receiver and s.receiver.id == party_id for s in shipments_of_lot(store, lot.id))


def may_sign_about(store: Store, lot: Lot, party: Identity) -> bool:
    """The ledger's rule for `inspect`/`epcis` about a lot (docs/protocol.md §3):
    its custodians past and present, inspectors and regulators."""
    if party.role in OVERSIGHT_ROLES:
        return True
    return lot.custodian == party.id or store.held_by(lot.id, party.id)


def _shipments(store: Store, rows: list[tuple[Any, ...]]) -> list[Shipment]:
    found = []
    for event_index, sender, receiver, lots_json in rows:
        stored = store.event_at(event_index)
        if stored is None:
            continue
        lots = tuple(
            lot for lot_id in _ids(lots_json) if (lot := lot_by_id(store, lot_id)) is not None
        )
        found.append(
            Shipment(
                event_index,
                stored.envelope.event_id,
                store.identity_by_id(sender),
                store.identity_by_id(receiver),
                lots,
                stored.envelope.time,
                stored.envelope.data.get("location"),
            )
        )
    return found


def _ids(text: str) -> list[int]:
    inner = text.strip()[1:-1]
    return [int(part) for part in inner.split(",") if part.strip()]


def open_shipments(store: Store, party_id: int, *, incoming: bool) -> list[Shipment]:
    column = "receiver" if incoming else "sender"
    rows = store.conn.execute(
        "SELECT event, sender, receiver, lots FROM shipments "
        f"WHERE {column} = ? AND receive_event IS NULL ORDER BY event DESC LIMIT 200",
        (party_id,),
    ).fetchall()
    return _shipments(store, rows)


def shipment_by_event(store: Store, event_index: int) -> Shipment | None:
    rows = store.conn.execute(
        "SELECT event, sender, receiver, lots FROM shipments WHERE event = ? "
        "AND receive_event IS NULL",
        (event_index,),
    ).fetchall()
    found = _shipments(store, rows)
    return found[0] if found else None


def shipments_of_lot(store: Store, lot_id: int) -> list[Shipment]:
    """The lot's open shipment, if any (as a list)."""
    index = store.open_shipment_for(lot_id)
    if index is None:
        return []
    found = shipment_by_event(store, index)
    return [found] if found else []


def parties(store: Store) -> list[Identity]:
    return [i for i in store.identities() if i.type == "party"]


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
    lot code contains *lot*, and whose product name contains *text*."""
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
        _LOT + clause + "ORDER BY l.id DESC LIMIT ? OFFSET ?", (*params, limit, offset)
    ).fetchall()
    return [_lot(row) for row in rows], total


@dataclass(frozen=True)
class ActiveRecall:
    """A recall event still in force on some lot."""

    event_index: int
    envelope: Envelope
    sources: tuple[Lot, ...]  # the lots the regulator named
    lots: int  # lots it still holds recalled (named and downstream)


def active_recall_events(store: Store, limit: int = 500) -> list[ActiveRecall]:
    """Recall events with at least one lot still under them, newest first."""
    rows = store.conn.execute(
        "SELECT event, group_concat(DISTINCT source), count(DISTINCT lot) FROM recalls "
        "WHERE lift_event IS NULL GROUP BY event ORDER BY event DESC LIMIT ?",
        (limit,),
    ).fetchall()
    found = []
    for event_index, sources, count in rows:
        stored = store.event_at(event_index)
        if stored is None:
            continue
        named = tuple(
            lot for source in str(sources).split(",") if (lot := lot_by_id(store, int(source)))
        )
        found.append(ActiveRecall(event_index, stored.envelope, named, count))
    return found


def lot_state(store: Store, lot_id: int) -> LotState | None:
    """Quantities, location and holder of one lot, as a trace shows them."""
    found = store.lot_states([lot_id])
    return found[0] if found else None
