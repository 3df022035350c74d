"""Read-only questions the portal asks the ledger: a party's lots and shipments,
lot search, recalled lots, who may see or sign about a lot.

The SQL is the store's (provenance/store/queries.py); here its rows become the
portal's views (`Shipment`, `ActiveRecall`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provenance.core.envelope import Envelope
from provenance.core.identity import OVERSIGHT_ROLES
from provenance.store import queries as ask
from provenance.store.db import Store
from provenance.store.rows import Identity, Lot, LotState


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
    return store.lot_by_id(lot_id)


def party_lots(store: Store, party_id: int, *, limit: int, offset: int) -> tuple[list[Lot], int]:
    """Lots the party holds or made, newest first, and how many there are."""
    return ask.party_lots(store, party_id, limit=limit, offset=offset)


def held_lots(store: Store, party_id: int, limit: int = 500) -> list[Lot]:
    return ask.lots_in_custody_of(store, party_id, limit)


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


def _shipments(store: Store, rows: list[ask.ShipmentRow]) -> list[Shipment]:
    found = []
    for event_index, sender, receiver, lot_ids in rows:
        stored = store.event_at(event_index)
        if stored is None:
            continue
        lots = tuple(lot for lot_id in lot_ids if (lot := lot_by_id(store, lot_id)) is not None)
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


def open_shipments(store: Store, party_id: int, *, incoming: bool) -> list[Shipment]:
    return _shipments(store, ask.open_shipments_of(store, party_id, incoming=incoming))


def shipment_by_event(store: Store, event_index: int) -> Shipment | None:
    row = ask.open_shipment_at(store, event_index)
    found = _shipments(store, [row] if row else [])
    return found[0] if found else None


def shipments_of_lot(store: Store, lot_id: int) -> list[Shipment]:
    """The lot's open shipments: several once it is split (docs/protocol.md §13)."""
    found = []
    for move in store.movements_of(lot_id):
        if move.receive_event is None:
            shipment = shipment_by_event(store, move.shipment)
            if shipment is not None:
                found.append(shipment)
    return found


def parties(store: Store) -> list[Identity]:
    """The parties as they are now: a key rotated away from is not one of them."""
    return [i for i in store.identities() if i.type == "party" and store.rotated_to(i.id) is None]


# Roles a lot is shipped to: handlers along the chain. Regulators and
# inspectors oversee, they do not take custody; a producer only takes back a
# lot it made; a clinic takes vaccines, not food.
SHIP_TO_ROLES = ("carrier", "distributor", "retailer", "processor", "clinic")
SHIP_TO_LIMIT = 200


def may_ship_to(lot: Lot, sender: Identity | None, party: Identity) -> bool:
    """Whether the portal offers *party* as the receiver of *lot* from *sender*."""
    if party.type != "party" or party.revoked_from is not None:
        return False
    if sender is not None and party.id == sender.id:
        return False
    if party.role == "producer":
        return party.id == lot.commissioned_by
    if party.role == "clinic":
        return lot.category != "food"
    return party.role in SHIP_TO_ROLES


def ship_destinations(
    store: Store, lot: Lot, sender: Identity | None, search: str | None = None
) -> list[Identity]:
    """The parties a shipment of *lot* can go to (`may_ship_to`), the lot's maker
    first, then by name; with *search*, those whose name, role or did:key
    contains it (case-insensitive). At most SHIP_TO_LIMIT."""
    needle = (search or "").strip().casefold()[:100]
    found = [
        party
        for party in parties(store)
        if may_ship_to(lot, sender, party)
        and (
            not needle
            or needle in party.name.casefold()
            or needle in (party.role or "")
            or needle in party.did.casefold()
        )
    ]
    found.sort(key=lambda p: (p.id != lot.commissioned_by, p.name.casefold()))
    return found[:SHIP_TO_LIMIT]


@dataclass(frozen=True)
class ActiveRecall:
    """A recall event still in force on some lot."""

    event_index: int
    envelope: Envelope
    sources: tuple[Lot, ...]  # the lots the regulator named
    lots: int  # lots it still holds recalled (named and downstream)


def active_recall_events(store: Store, limit: int = 500) -> list[ActiveRecall]:
    """Recall events with at least one lot still under them, newest first."""
    found = []
    for event_index, sources, count in ask.recalls_in_force(store, limit):
        stored = store.event_at(event_index)
        if stored is None:
            continue
        named = tuple(lot for source in sources if (lot := lot_by_id(store, source)))
        found.append(ActiveRecall(event_index, stored.envelope, named, count))
    return found


def lot_state(store: Store, lot_id: int) -> LotState | None:
    """Quantities, location and holder of one lot, as a trace shows them."""
    found = store.lot_states([lot_id])
    return found[0] if found else None
