"""The quantity rules (docs/protocol.md, "Quantities"): who holds how much of
a lot, and what a ship, receive, transform or dispense may move of it.

A party holding any of a lot is one of its custodians: it may ship, dispense,
use in a transform, attach and detach loggers — each within what it holds
that is not in transit. A ship without `quantities` (or of a lot registered
without a quantity) moves everything the sender holds that is not in transit,
so envelopes from before quantities keep meaning what they meant.

The rules apply from the log index the 0011 migration recorded (meta
`quantity_rules_from`); before it, the single-custodian rules of their time
(`checks.custodian_of`, one open shipment per lot) decide, and the holdings
are kept by the same writers, clamped at zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from provenance.core.envelope import Envelope
from provenance.core.errors import RejectedEvent
from provenance.ledger.kinds import checks
from provenance.ledger.reasons import CONFLICT, NOT_CUSTODIAN, QUANTITY
from provenance.store import holdings
from provenance.store.holdings import Measure, at_most
from provenance.store.rows import Identity, Lot

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


def applies(ledger: Ledger, index: int) -> bool:
    """Whether the quantity rules apply to the event at log *index*."""
    return index >= ledger.quantity_rules_from


def amount(value: float, measure: Measure) -> str:
    """A quantity in words: "400 KGM", or "the whole lot" when unmeasured."""
    if not measure.measured:
        return "the whole lot" if value > 0 else "none"
    return f"{value:g} {measure.unit}"


def _holders(ledger: Ledger, lot: Lot) -> str:
    store = ledger.store
    measure = store.lot_measure(lot.id)
    names = []
    for holding in store.holdings_of(lot.id):
        if holding.held > 0:
            who = ledger.identities_by_id.get(holding.party) or ledger.store.identity_by_id(
                holding.party
            )
            names.append(f"{who.name if who else holding.party} ({amount(holding.held, measure)})")
    return ", ".join(names) or "nobody"


def holder_of(
    ledger: Ledger, env: Envelope, signer: Identity | None, lots: Sequence[Lot], index: int
) -> None:
    """The signer holds some of each lot (before the quantity rules: is its
    one custodian)."""
    assert signer is not None
    if not applies(ledger, index):
        checks.custodian_of(ledger, env, signer, lots)
        return
    for lot in lots:
        if not ledger.store.holds_any(lot.id, signer.id):
            raise RejectedEvent(
                NOT_CUSTODIAN,
                f"{signer.name} does not hold any of {lot.uri} (held by: "
                f"{_holders(ledger, lot)}); only a party holding some of it may {env.kind}",
            )


def _unit_fits(lot: Lot, measure: Measure, quantity: dict[str, Any], field: str) -> None:
    if not measure.measured:
        raise RejectedEvent(
            QUANTITY,
            f"{field}: {lot.uri} was registered without a quantity, so it moves whole; "
            f"leave it out of {field}",
        )
    if quantity["unit"] != measure.unit:
        raise RejectedEvent(
            QUANTITY,
            f"{field}: {lot.uri} is counted in {measure.unit}, not {quantity['unit']}; "
            f"give the quantity in {measure.unit} (units are not converted)",
        )


def may_ship(
    ledger: Ledger,
    env: Envelope,
    signer: Identity,
    lots: Sequence[Lot],
    index: int,
    data: dict[str, Any] | None = None,
) -> None:
    """Each lot: what the ship moves (its `quantities`, else all that is free)
    is more than nothing and at most what the sender holds minus what it has
    in transit. Before the quantity rules: one open shipment per lot. *data*:
    the ship's data with what its pallets carry (`shipped_data`), if not its own."""
    if not applies(ledger, index):
        for lot in lots:
            if ledger.store.open_shipment_for(lot.id) is not None:
                raise RejectedEvent(CONFLICT, f"{lot.uri} is already in transit: receive it first")
        return
    store = ledger.store
    for lot in lots:
        measure = store.lot_measure(lot.id)
        held, moving = store.holding(lot.id, signer.id)
        free = max(held - moving, 0.0)
        asked = holdings.asked_of(env.data if data is None else data, "quantities", lot.uri)
        if asked is not None:
            _unit_fits(lot, measure, asked, "data.quantities")
        wanted = free if asked is None else float(asked["value"])
        state = (
            f"{signer.name} holds {amount(held, measure)}, "
            f"{amount(moving, measure) if measure.measured else 'all of it'} in transit"
            if moving > 0
            else f"{signer.name} holds {amount(held, measure)}, none in transit"
        )
        if at_most(held, moving):
            raise RejectedEvent(
                QUANTITY if measure.measured else CONFLICT,
                f"nothing of {lot.uri} is free to ship: {state}; wait until a shipment "
                "is received (or received short) first",
            )
        if wanted <= 0:
            raise RejectedEvent(
                QUANTITY, f"data.quantities: a shipment of {lot.uri} carries more than nothing"
            )
        if not at_most(wanted, free):
            raise RejectedEvent(
                QUANTITY,
                f"cannot ship {amount(wanted, measure)} of {lot.uri}: {state}, so at most "
                f"{amount(free, measure)} can be shipped; asked {amount(wanted, measure)}",
            )


def may_use(
    ledger: Ledger,
    signer: Identity,
    lot: Lot,
    quantity: dict[str, Any],
    verb: str,
    index: int,
) -> None:
    """A dispense or a transform's input: a lot counted in wholes takes
    nothing (its holder may go on); else the unit is the lot's and the value
    at most what the signer holds that is not in transit."""
    if not applies(ledger, index):
        return
    store = ledger.store
    measure = store.lot_measure(lot.id)
    if not measure.measured:
        return
    field = "data.quantity" if verb == "dispensed" else "data.inputs"
    _unit_fits(lot, measure, quantity, field)
    held, moving = store.holding(lot.id, signer.id)
    free = max(held - moving, 0.0)
    if not at_most(float(quantity["value"]), free):
        raise RejectedEvent(
            QUANTITY,
            f"cannot have {amount(float(quantity['value']), measure)} of {lot.uri} {verb}: "
            f"{signer.name} holds {amount(held, measure)}, {amount(moving, measure)} of it in "
            f"transit, so at most {amount(free, measure)} is free",
        )


def may_receive(ledger: Ledger, env: Envelope, lots: Sequence[Lot], ship_index: int) -> None:
    """`quantities` received and `damaged`: the lot's unit, and together at
    most what the shipment carried of it."""
    store = ledger.store
    for lot in lots:
        received = holdings.asked_of(env.data, "quantities", lot.uri)
        damaged = holdings.asked_of(env.data, "damaged", lot.uri)
        if received is None and damaged is None:
            continue
        measure = store.lot_measure(lot.id)
        for field, given in (("data.quantities", received), ("data.damaged", damaged)):
            if given is not None:
                _unit_fits(lot, measure, given, field)
        shipped = store.shipped_of(ship_index, lot.id)
        total = (float(received["value"]) if received else 0.0) + (
            float(damaged["value"]) if damaged else 0.0
        )
        if not at_most(total, shipped):
            raise RejectedEvent(
                QUANTITY,
                f"received and damaged {amount(total, measure)} of {lot.uri}, but the shipment "
                f"carried {amount(shipped, measure)}: a receipt counts at most what was shipped",
            )


def record(
    ledger: Ledger,
    env: Envelope,
    signer: Identity,
    index: int,
    data: dict[str, Any] | None = None,
) -> None:
    """The event's effect on the holdings, once its checks passed (*data*: as
    for `may_ship`)."""

    def chain(uri: str) -> int:
        lot = ledger.lot(uri)
        assert lot is not None, uri
        return lot.id

    moved = env.data if data is None else data
    ledger.store.record_holdings(env.kind, index, signer.id, moved, chain, env.lots or ())
