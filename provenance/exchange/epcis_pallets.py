"""Cases and pallets in EPCIS 2.0 (docs/epcis.md, "Pallets and cases"): a
`pack` is an AggregationEvent ADD and an `unpack` one DELETE, with the unit as
`parentID` and its lots, with the quantities packed, as `childQuantityList`; a
shipment of pallets lists their SSCCs in the ObjectEvent's `epcList`.

A unit is named by its EPC URI `urn:epc:id:sscc:…` when the ledger knows where
its company prefix ends (`UnitLookup`: the packer's enrolled prefix), else by
its GS1 Digital Link URI. Pure: envelopes and lookups in, plain dicts out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from provenance.core.envelope import Envelope
from provenance.core.sscc import sscc_epc
from provenance.exchange.epcis_vocabulary import ns

if TYPE_CHECKING:
    from provenance.store.db import Store

# SSCC -> the length of its GS1 company prefix, when known.
UnitLookup = Callable[[str], int | None]


def no_units(_sscc: str) -> int | None:
    return None


def unit_epc(sscc: str, units: UnitLookup) -> str:
    return sscc_epc(sscc, units(sscc))


def aggregation(
    base: dict[str, Any], envelope: Envelope, lots: Iterable[str], units: UnitLookup
) -> dict[str, Any]:
    """The AggregationEvent of a pack (ADD) or unpack (DELETE), given the event's
    common fields (*base*: type, time, offset) and the lots it was filed under."""
    data = envelope.data
    packing = envelope.kind == "pack"
    event = dict(base)
    event["parentID"] = unit_epc(data["sscc"], units)
    if packing:
        event["childQuantityList"] = [
            {
                "epcClass": item["batch"],
                "quantity": item["quantity"]["value"],
                "uom": item["quantity"]["unit"],
            }
            for item in data["contents"]
        ]
    else:
        event["childQuantityList"] = [{"epcClass": uri} for uri in lots]
    event |= {
        "action": "ADD" if packing else "DELETE",
        "bizStep": "packing" if packing else "unpacking",
        "disposition": "in_progress",
    }
    if "parent" in data:  # this case went onto a pallet: our extension names it
        event[ns("onPallet")] = unit_epc(data["parent"], units)
    return event


def shipped_units(event: dict[str, Any], ssccs: Iterable[str], units: UnitLookup) -> None:
    """A shipment's or receipt's pallets, in its ObjectEvent's epcList."""
    epcs = [unit_epc(sscc, units) for sscc in ssccs]
    if epcs:
        event["epcList"] = epcs


def store_units(store: Store) -> UnitLookup:
    """A unit lookup over a Store: the company prefix length recorded at pack."""
    from provenance.store import pallets

    cache: dict[str, int | None] = {}

    def lookup(sscc: str) -> int | None:
        if sscc not in cache:
            unit = pallets.unit(store, sscc)
            cache[sscc] = None if unit is None else unit.prefix_length
        return cache[sscc]

    return lookup
