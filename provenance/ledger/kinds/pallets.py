"""Cases and pallets (docs/protocol.md, "Pallets and cases"): `pack` puts lots
on a logistic unit named by its SSCC (a case may go on a pallet), `unpack`
takes them off; a shipment that lists pallets moves everything on them, and
its receiver becomes their holder.

A unit has no chain of its own (there is no GTIN and lot to name it): its pack
and unpack are filed under every lot on it (their `batches`), and the
`pallets` tables (provenance/store/pallets.py) say what is on which unit and
who has it now. `ship` and `receive` (custody.py) call `check_shipment`,
`ship_pallets` and `receive_pallets` here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from provenance.core.envelope import Envelope
from provenance.core.errors import RejectedEvent
from provenance.core.sscc import MAX_PALLET_LOTS, company_prefix_of
from provenance.ledger.kinds import checks, quantities, timing
from provenance.ledger.kinds.base import Kind, Transaction
from provenance.ledger.reasons import CONFLICT, NOT_CUSTODIAN, SCHEMA, UNAUTHORISED, UNKNOWN_LOT
from provenance.store import pallets as tables
from provenance.store.rows import Identity, Lot

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


def _name(ledger: Ledger, party_id: int) -> str:
    found = ledger.identities_by_id.get(party_id) or ledger.store.identity_by_id(party_id)
    return found.name if found else str(party_id)


def _open_unit(ledger: Ledger, sscc: str, signer: Identity, verb: str) -> tables.Unit:
    """The open unit *sscc*, held by *signer* and not in transit, or a refusal."""
    unit = tables.unit(ledger.store, sscc)
    if unit is None:
        raise RejectedEvent(UNKNOWN_LOT, f"no case or pallet SSCC {sscc} was packed")
    if not unit.open:
        raise RejectedEvent(CONFLICT, f"SSCC {sscc} was unpacked: it can no longer be {verb}")
    if unit.holder != signer.id:
        raise RejectedEvent(
            NOT_CUSTODIAN,
            f"{signer.name} does not hold SSCC {sscc} (holder: {_name(ledger, unit.holder)}); "
            f"only the unit's holder may have it {verb}",
        )
    if unit.shipment is not None:
        raise RejectedEvent(CONFLICT, f"SSCC {sscc} is in transit: receive it first")
    return unit


def _lot_uris(ledger: Ledger, rows: Sequence[tuple[str, tables.Packed]]) -> dict[int, str]:
    found = {}
    for _sscc, packed in rows:
        lot = ledger.store.lot_by_id(packed.lot)
        found[packed.lot] = lot.uri if lot else str(packed.lot)
    return found


def _same_lots(
    ledger: Ledger, env: Envelope, lots: Sequence[Lot], expected: Sequence[tuple[str, Any]]
) -> None:
    """`batches` name exactly the lots on the units, all levels; else say which."""
    on_units = _lot_uris(ledger, expected)
    named = {lot.id: lot.uri for lot in lots}
    missing = sorted(uri for lot_id, uri in on_units.items() if lot_id not in named)
    extra = sorted(uri for lot_id, uri in named.items() if lot_id not in on_units)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing (on the unit): {', '.join(missing)}")
        if extra:
            parts.append(f"extra (not on it): {', '.join(extra)}")
        raise RejectedEvent(
            SCHEMA,
            f"batches of a {env.kind} must list exactly the lots on the unit, all levels; "
            + "; ".join(parts),
        )


def _own_prefix(sscc: str, prefixes: Sequence[str], signer: Identity) -> str | None:
    """The packer's company prefix the new unit's SSCC lies under (None when the
    packer has none enrolled: then any SSCC is taken); refused if it has some and
    the SSCC is under none of them."""
    prefix = company_prefix_of(sscc, prefixes)
    if prefixes and prefix is None:
        raise RejectedEvent(
            UNAUTHORISED,
            f"SSCC {sscc} is not under {signer.name}'s GS1 company prefixes "
            f"({', '.join(prefixes)}): a unit's SSCC is allocated by the company that packs "
            "it (extension digit, then its company prefix)",
        )
    return prefix


def _pack(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, txn: Transaction
) -> list[int]:
    assert signer is not None
    store = ledger.store
    sscc, parent = env.data["sscc"], env.data.get("parent")
    lots = checks.lots_of(ledger, env)
    checks.custodian_of(ledger, env, signer, lots)
    if (used := tables.unit(store, sscc)) is not None:
        raise RejectedEvent(
            CONFLICT,
            f"SSCC {sscc} was already packed (log index {used.pack_event}): an SSCC names "
            "one logistic unit and is not reused; give the new unit a new SSCC",
        )
    packed = {item["batch"]: item["quantity"] for item in env.data["contents"]}
    for lot in lots:
        if quantities.applies(ledger, index):  # at most what the packer holds, not in transit
            quantities.may_use(ledger, signer, lot, packed[lot.uri], "packed", index)
        elif ledger.store.open_shipment_for(lot.id) is not None:
            raise RejectedEvent(CONFLICT, f"{lot.uri} is in transit: receive it first")
        if (on := tables.open_unit_of(store, lot.id)) is not None:
            raise RejectedEvent(
                CONFLICT,
                f"{lot.uri} is already packed on SSCC {on}: a lot is on one open unit at a "
                "time; unpack that first",
            )
    prefixes = ledger.store.prefixes(signer.id)
    prefix = _own_prefix(sscc, prefixes, signer)
    if parent is not None:
        existing = tables.unit(store, parent)
        if existing is None:  # a new pallet: its SSCC is the packer's too
            _own_prefix(parent, prefixes, signer)
        else:
            _open_unit(ledger, parent, signer, "packed")
            if existing.parent is not None:
                raise RejectedEvent(
                    CONFLICT,
                    f"SSCC {parent} is itself a case on pallet {existing.parent}: "
                    "a case goes on a pallet, and a pallet on nothing",
                )
            total = len(tables.all_contents(store, parent)) + len(lots)
            if total > MAX_PALLET_LOTS:
                raise RejectedEvent(
                    CONFLICT,
                    f"pallet {parent} would hold {total} lots: at most {MAX_PALLET_LOTS}, "
                    "all levels (the lots a shipment of it names)",
                )
    timing.within_custody(ledger, env, signer, lots, index, txn)
    if parent is not None and tables.unit(store, parent) is None:
        # The first case put on a pallet starts the pallet.
        parent_prefix = company_prefix_of(parent, prefixes)
        tables.insert_unit(
            store,
            parent,
            parent=None,
            holder=signer.id,
            event_index=index,
            prefix_length=len(parent_prefix) if parent_prefix else None,
            contents=(),
        )
    ids = {lot.uri: lot.id for lot in lots}
    contents = [
        tables.Packed(ids[item["batch"]], item["quantity"]["value"], item["quantity"]["unit"])
        for item in env.data["contents"]
    ]
    tables.insert_unit(
        store,
        sscc,
        parent=parent,
        holder=signer.id,
        event_index=index,
        prefix_length=len(prefix) if prefix else None,
        contents=contents,
    )
    return [lot.id for lot in lots]


def _unpack(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, txn: Transaction
) -> list[int]:
    assert signer is not None
    store = ledger.store
    sscc = env.data["sscc"]
    _open_unit(ledger, sscc, signer, "unpacked")
    lots = checks.lots_of(ledger, env)
    _same_lots(ledger, env, lots, tables.all_contents(store, sscc))
    timing.within_custody(ledger, env, signer, lots, index, txn)
    tables.unpack_unit(store, sscc, index)
    return [lot.id for lot in lots]


# --- what a shipment does with pallets (called from custody.py)


def check_shipment(ledger: Ledger, env: Envelope, signer: Identity, lots: Sequence[Lot]) -> None:
    """A ship's `batches` are its pallets' contents, all levels, plus loose lots;
    a lot packed on a unit the shipment does not list cannot leave loose."""
    store = ledger.store
    listed = env.data.get("pallets", ())
    expected: list[tuple[str, tables.Packed]] = []
    for sscc in listed:
        unit = _open_unit(ledger, sscc, signer, "shipped")
        if unit.parent is not None:
            raise RejectedEvent(
                CONFLICT,
                f"SSCC {sscc} is a case on pallet {unit.parent}: ship the pallet, "
                "or unpack the case from it first",
            )
        expected.extend(tables.all_contents(store, sscc))
    on_listed = {packed.lot for _sscc, packed in expected}
    named = {lot.id for lot in lots}
    uris = _lot_uris(ledger, expected)
    missing = sorted(uri for lot_id, uri in uris.items() if lot_id not in named)
    if missing:
        raise RejectedEvent(
            SCHEMA,
            "batches must list every lot on the shipped pallets, all levels; missing: "
            + ", ".join(missing),
        )
    for lot in lots:
        if lot.id in on_listed:
            continue
        if (on := tables.open_unit_of(store, lot.id)) is not None:
            pallet = tables.outermost(store, on)
            raise RejectedEvent(
                SCHEMA,
                f"{lot.uri} is packed on SSCC {on}, which this shipment does not list: "
                f'add "{pallet}" to data.pallets, or unpack it first',
            )


def ship_pallets(ledger: Ledger, env: Envelope, index: int) -> None:
    """The pallets the ship at *index* lists leave with it (after check_shipment)."""
    tables.ship_units(ledger.store, env.data.get("pallets", ()), index)


def shipped_data(ledger: Ledger, env: Envelope) -> dict[str, Any]:
    """A ship's data as the quantity rules read it: a lot on one of its
    `pallets` that its `quantities` do not name moves what was packed of it,
    not everything its sender holds (docs/protocol.md, "Pallets and cases")."""
    if not env.data.get("pallets"):
        return env.data
    named = {item["batch"] for item in env.data.get("quantities", ())}
    packed = [
        q
        for q in quantities_on(ledger, env.data["pallets"])
        if q["batch"] not in named and _measured(ledger, q["batch"])
    ]
    return {**env.data, "quantities": [*env.data.get("quantities", ()), *packed]}


def _measured(ledger: Ledger, uri: str) -> bool:
    """Whether the lot has a unit (a lot registered without one moves whole)."""
    lot = ledger.lot(uri)
    return lot is not None and ledger.store.lot_measure(lot.id).measured


def quantities_on(ledger: Ledger, ssccs: Sequence[str]) -> list[dict[str, Any]]:
    """What shipping *ssccs* moves, per lot, all levels, in the shape of
    `ship.data.quantities` (`[{"batch", "quantity": {"value", "unit"}}]`): the
    quantities packed. The quantities work's ship takes these for the lots on
    pallets (docs/protocol.md, "Pallets and cases")."""
    moved: dict[tuple[int, str], float] = {}
    for sscc in ssccs:
        for _unit, packed in tables.all_contents(ledger.store, sscc):
            key = (packed.lot, packed.unit)
            moved[key] = moved.get(key, 0) + packed.value
    found = []
    for (lot_id, unit), value in moved.items():
        lot = ledger.store.lot_by_id(lot_id)
        uri = lot.uri if lot else str(lot_id)
        found.append({"batch": uri, "quantity": {"value": value, "unit": unit}})
    return found


def receive_pallets(ledger: Ledger, env: Envelope, ship_index: int, receiver: Identity) -> None:
    """The receive of the shipment at *ship_index*: a `pallets` list, if given,
    names exactly the pallets it carried; they (and their cases) are the
    receiver's now."""
    store = ledger.store
    carried = tables.shipped_units(store, ship_index)
    if "pallets" in env.data and sorted(env.data["pallets"]) != carried:
        missing = sorted(set(carried) - set(env.data["pallets"]))
        extra = sorted(set(env.data["pallets"]) - set(carried))
        raise RejectedEvent(
            SCHEMA,
            "data.pallets must list exactly the pallets of the shipment"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; not on it: {', '.join(extra)}" if extra else ""),
        )
    tables.receive_units(store, ship_index, receiver.id)


PACK = Kind("pack", _pack)
UNPACK = Kind("unpack", _unpack)
