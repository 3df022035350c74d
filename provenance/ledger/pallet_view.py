"""What a scan of a pallet (or case) label shows, as data: the unit, what is on
it (each lot with its quantity and the case it is in), who packed it and when,
who has it now and whether it is in transit or unpacked. The resolver's pallet
page and its JSON twin (provenance/web/pallet_page.py) and `provenance pallet
show` render this; the trace and the recall report ask `pallets_of_lot`.
"""

from __future__ import annotations

from typing import Any

from provenance.core.errors import NotFound
from provenance.core.sscc import sscc_uri, validate_sscc
from provenance.store import pallets as tables
from provenance.store.db import Store


def _amount(value: float, unit: str) -> dict[str, Any]:
    """A quantity as it was signed: whole numbers come back from the store as floats."""
    return {"value": int(value) if float(value).is_integer() else value, "unit": unit}


def _party(store: Store, party_id: int | None) -> dict[str, Any] | None:
    if party_id is None:
        return None
    identity = store.identity_by_id(party_id)
    if identity is None:
        return {"name": str(party_id), "did": None, "role": None}
    return {"name": identity.name, "did": identity.did, "role": identity.role}


def _event(store: Store, index: int | None) -> dict[str, Any] | None:
    stored = None if index is None else store.event_at(index)
    if stored is None:
        return None
    return {"time": stored.envelope.time, "event_id": stored.envelope.event_id}


def _where(store: Store, unit: tables.Unit) -> dict[str, Any]:
    """Where the unit is now, in words a page can show."""
    if not unit.open:
        return {"state": "unpacked", "holder": _party(store, unit.holder)}
    if unit.shipment is not None:
        shipment = store.shipment(unit.shipment)
        receiver = None if shipment is None else shipment[1]
        return {
            "state": "in-transit",
            "holder": _party(store, unit.holder),
            "to": _party(store, receiver),
            "shipped": _event(store, unit.shipment),
        }
    return {"state": "held", "holder": _party(store, unit.holder)}


def pallet_view(store: Store, sscc: str) -> dict[str, Any]:
    """The unit *sscc* as its page shows it. ValidationError for a code that is
    not an SSCC; NotFound when the ledger never saw it packed."""
    validate_sscc(sscc, "sscc")
    unit = tables.unit(store, sscc)
    if unit is None:
        raise NotFound(f"no case or pallet with SSCC {sscc} was packed in this ledger")
    contents = []
    for on, packed in tables.all_contents(store, sscc):
        lot = store.lot_by_id(packed.lot)
        contents.append(
            {
                "batch": lot.uri if lot else str(packed.lot),
                "product": lot.product if lot else None,
                "lot": lot.lot if lot else None,
                "quantity": _amount(packed.value, packed.unit),
                "case": on if on != sscc else None,
                "recalled": bool(lot and lot.recalled),
            }
        )
    return {
        "sscc": sscc,
        "uri": sscc_uri(sscc),
        "kind": "case" if unit.parent else ("pallet" if unit.cases else "unit"),
        "on_pallet": unit.parent,
        "cases": unit.cases,
        "open": unit.open,
        "packed_by": _party(store, unit.packed_by),
        "packed": _event(store, unit.pack_event),
        "unpacked": _event(store, unit.unpack_event),
        "where": _where(store, unit),
        "contents": contents,
    }


def pallets_of_lot(store: Store, lot_id: int) -> list[dict[str, Any]]:
    """Every unit the lot was packed on, open ones first: SSCC, the pallet a case
    is on, whether it is still packed, who has it, and the quantity of the lot."""
    found = []
    for (
        sscc,
        parent,
        holder,
        pack_event,
        unpack_event,
        shipment,
        value,
        unit,
    ) in tables.units_of_lot(store, lot_id):
        holder_party = _party(store, holder)
        found.append(
            {
                "sscc": sscc,
                "on_pallet": parent,
                "open": unpack_event is None,
                "in_transit": shipment is not None,
                "holder": holder_party["name"] if holder_party else None,
                "quantity": _amount(value, unit),
                "packed": _event(store, pack_event),
            }
        )
    return found


def open_pallets(store: Store, lot_uris: list[str]) -> dict[str, list[dict[str, Any]]]:
    """For each lot (by URI) on an open case or pallet now: those units, as
    `pallets_of_lot` gives them (with the pallet a case is on). Lots on none are
    left out. What a trace forward and a recall name beside each lot."""
    found: dict[str, list[dict[str, Any]]] = {}
    for uri in lot_uris:
        lot = store.lot_by_uri(uri)
        if lot is None:
            continue
        units = [unit for unit in pallets_of_lot(store, lot.id) if unit["open"]]
        if units:
            found[uri] = units
    return found


def describe_units(units: list[dict[str, Any]]) -> str:
    """Words for a lot's open units: "on pallet 1061…", "in case 1061… on pallet 1061…"."""
    words = []
    for unit in units:
        if unit["on_pallet"]:
            text = f"in case {unit['sscc']} on pallet {unit['on_pallet']}"
        else:
            text = f"on pallet {unit['sscc']}"
        if unit["in_transit"]:
            text += " (in transit)"
        words.append(text)
    return ", ".join(words)
