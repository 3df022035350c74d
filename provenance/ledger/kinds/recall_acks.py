"""`recall-ack`: a holder's signed answer to a recall — it has the notice, and
(optionally) how much of the lot it returned and destroyed. Several per party
are allowed (progress as stock comes back); what one party returned and
destroyed of a lot, over all its acknowledgements, never adds up to more than
it received (docs/lineage.md, "Recall acknowledgements").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provenance.core.envelope import Envelope
from provenance.core.errors import RejectedEvent
from provenance.core.timefmt import format_time
from provenance.ledger.kinds import checks
from provenance.ledger.kinds.base import Kind, Transaction
from provenance.ledger.kinds.timing import TransactionRefs, time_at
from provenance.ledger.lineage import Quantity, quantity
from provenance.ledger.reasons import CONFLICT, NOT_CUSTODIAN, OUT_OF_ORDER
from provenance.store.recall_acks import acks_of, record_recall_ack
from provenance.store.rows import Identity, Lot

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


def registered_quantity(ledger: Ledger, lot: Lot, _party: Identity) -> Quantity | None:
    """The lot's registered quantity (commission or the transform that made it)."""
    states = ledger.store.lot_states([lot.id])
    if not states:
        return None
    return quantity(states[0].quantity, states[0].unit)


def received_quantity(ledger: Ledger, lot: Lot, party: Identity) -> Quantity | None:
    """What *party* received of the lot (docs/protocol.md §13): the whole
    registered quantity for the party that made it, else the sum of its
    receives (a split lot's holder can give back only its share); unknown for
    a lot registered without a quantity."""
    registered = registered_quantity(ledger, lot, party)
    if registered is None or party.id == lot.commissioned_by:
        return registered
    got = ledger.store.received_of(lot.id, party.id)
    return registered if got is None else Quantity(got, registered.unit)


def _recall_ack(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, txn: Transaction
) -> list[int]:
    assert signer is not None
    (lot,) = checks.lots_of(ledger, env)
    store = ledger.store
    recall_id = env.data["recall"]
    recall_index = TransactionRefs(ledger, txn).event(bytes.fromhex(recall_id), "recall", index)
    if recall_index is None:
        raise RejectedEvent(
            CONFLICT,
            f"unknown recall {recall_id}: no recall event with this id in the ledger "
            "(give the event id the recall notice or `provenance recall report` shows)",
        )
    reached = {event: lift for _, event, lift in store.recall_rows(lot.id)}
    if recall_index not in reached:
        raise RejectedEvent(
            CONFLICT,
            f"{lot.uri} is not a recalled lot of recall {recall_id}: that recall did not "
            "reach it; acknowledge the recall on the lot you hold",
        )
    if reached[recall_index] is not None:
        raise RejectedEvent(
            CONFLICT, f"recall {recall_id} of {lot.uri} was lifted: there is nothing to acknowledge"
        )
    recalled_at = time_at(ledger, recall_index, txn)
    if env.time_us < recalled_at:
        raise RejectedEvent(
            OUT_OF_ORDER,
            f"the acknowledgement is dated {env.time}, before the recall it answers "
            f"({format_time(recalled_at)}): date it when it was made, or fix the signer's clock",
        )
    if lot.custodian != signer.id and not store.held_by(lot.id, signer.id):
        raise RejectedEvent(
            NOT_CUSTODIAN,
            f"{signer.name} is not a holder of {lot.uri}: only a party that holds or held "
            "a recalled lot acknowledges its recall",
        )
    _within_received(ledger, env, signer, lot)
    record_recall_ack(store, index, recall_index, lot.id, signer.id, env.data)
    return [lot.id]


def _within_received(ledger: Ledger, env: Envelope, signer: Identity, lot: Lot) -> None:
    """Returned plus destroyed, over every acknowledgement of this party about
    this lot (whatever the recall), stays within what it received."""
    received = received_quantity(ledger, lot, signer)  # the most it can give back
    stated = [env.data[name] for name in ("returned", "destroyed") if name in env.data]
    if received is None or not stated:
        return
    for item in stated:
        if item["unit"] != received.unit:
            raise RejectedEvent(
                CONFLICT,
                f"{lot.uri} is counted in {received.unit}, not {item['unit']}: state the "
                f"returned and destroyed quantities in {received.unit}",
            )
    before = 0.0
    for row in acks_of(ledger.store, lot.id, signer.id):
        for pair in (row.returned, row.destroyed):
            if pair is not None and pair[1] == received.unit:
                before += pair[0]
    total = before + sum(item["value"] for item in stated)
    if total > received.value + 1e-9:
        raise RejectedEvent(
            CONFLICT,
            f"{signer.name} would have returned and destroyed {total:g} {received.unit} of "
            f"{lot.uri} ({before:g} in earlier acknowledgements), more than the "
            f"{received} it received",
        )


RECALL_ACK = Kind("recall-ack", _recall_ack)
