"""The custodian's kinds: `ship` (lots, or some of them, in transit to another
party), `receive` (the receiver holds what it received), `dispense` (some of a
lot leaves the chain to patients or customers), and `attach` / `detach` (a
logger device rides with lots; its readings are filed under them meanwhile).
How much each party holds is the quantity rules' (quantities.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provenance.core.envelope import Envelope
from provenance.core.errors import RejectedEvent
from provenance.core.kinds import RECALL_RETURN
from provenance.core.timefmt import format_time
from provenance.ledger.kinds import checks, pallets, quantities, timing
from provenance.ledger.kinds.base import Kind, Transaction
from provenance.ledger.kinds.timing import TransactionRefs
from provenance.ledger.reasons import (
    CONFLICT,
    NOT_ATTACHED,
    OUT_OF_ORDER,
    REVOKED,
    SCHEMA,
    UNAUTHORISED,
    UNKNOWN_LOT,
)
from provenance.store.rows import Identity

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


def _ship(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, txn: Transaction
) -> list[int]:
    assert signer is not None
    lots = checks.lots_of(ledger, env)
    quantities.holder_of(ledger, env, signer, lots, index)
    if env.data.get("purpose") == RECALL_RETURN:
        # Moving a recalled lot back (to its maker, or for destruction) is
        # what a recall asks for; the movement is recorded like any other.
        checks.only_recalled(lots)
    else:
        back = f' (or shipped back with "purpose": "{RECALL_RETURN}")'
        checks.not_recalled(ledger, lots, index, txn, "shipped", hint=back)
        checks.not_held(ledger, lots, txn, "shipped")
    receiver = checks.party(ledger, env.data["to"])
    if receiver.id == signer.id:
        raise RejectedEvent(CONFLICT, "a shipment goes to another party")
    if receiver.revoked_from is not None:
        raise RejectedEvent(REVOKED, f"receiver {receiver.name} is revoked")
    pallets.check_shipment(ledger, env, signer, lots)
    moved = pallets.shipped_data(ledger, env)  # lots on pallets move what was packed
    quantities.may_ship(ledger, env, signer, lots, index, moved)
    timing.within_custody(ledger, env, signer, lots, index, txn)
    lot_ids = [lot.id for lot in lots]
    ledger.store.insert_shipment(index, signer.id, receiver.id, lot_ids)
    quantities.record(ledger, env, signer, index, moved)
    pallets.ship_pallets(ledger, env, index)
    return ledger.store.derive("ship", index, lot_ids, env.data, TransactionRefs(ledger, txn))


def _receive(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, txn: Transaction
) -> list[int]:
    assert signer is not None
    store = ledger.store
    shipment_id = bytes.fromhex(env.data["shipment"])
    ship_index = txn.ids.get(shipment_id)
    if ship_index is None:
        stored = store.find_event(shipment_id)
        ship_index = None if stored is None else stored.index
    shipment = None if ship_index is None else store.shipment(ship_index)
    if shipment is None:
        raise RejectedEvent(UNKNOWN_LOT, f"no shipment {env.data['shipment']} in the ledger")
    assert ship_index is not None
    _sender, receiver, lot_ids, received = shipment
    if received is not None:
        raise RejectedEvent(CONFLICT, "that shipment was already received")
    if receiver != signer.id:
        raise RejectedEvent(UNAUTHORISED, "only the party the shipment was sent to may receive it")
    lots = checks.lots_of(ledger, env)
    if sorted(lot.id for lot in lots) != sorted(lot_ids):
        raise RejectedEvent(SCHEMA, "batches must list exactly the lots of the shipment")
    if index >= ledger.time_rules_from:
        timing.not_before_birth(ledger, env, lots, txn)
        shipped = timing.time_at(ledger, ship_index, txn)
        if env.time_us < shipped:
            raise RejectedEvent(
                OUT_OF_ORDER,
                f"receive at {env.time} is dated before its shipment was sent "
                f"({format_time(shipped)}): a lot is received after it is shipped; "
                "check the receiver's clock",
            )
    quantities.may_receive(ledger, env, lots, ship_index)
    pallets.receive_pallets(ledger, env, ship_index, signer)
    for lot in lots:
        lot.custodian = signer.id
        store.set_custodian(lot.id, signer.id)
    store.close_shipment(ship_index, index)
    quantities.record(ledger, env, signer, index)
    lot_ids = [lot.id for lot in lots]
    return store.derive("receive", index, lot_ids, env.data, TransactionRefs(ledger, txn))


def _dispense(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, txn: Transaction
) -> list[int]:
    assert signer is not None
    lots = checks.lots_of(ledger, env)
    quantities.holder_of(ledger, env, signer, lots, index)
    checks.not_recalled(ledger, lots, index, txn, "dispensed")
    checks.not_held(ledger, lots, txn, "dispensed")
    for lot in lots:
        quantities.may_use(ledger, signer, lot, env.data["quantity"], "dispensed", index)
    timing.within_custody(ledger, env, signer, lots, index, txn)
    lot_ids = [lot.id for lot in lots]
    quantities.record(ledger, env, signer, index)
    return ledger.store.derive("dispense", index, lot_ids, env.data, TransactionRefs(ledger, txn))


def _attach(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, txn: Transaction
) -> list[int]:
    lots = checks.lots_of(ledger, env)
    quantities.holder_of(ledger, env, signer, lots, index)
    device = checks.device(ledger, env.data["device"])
    if device.revoked_from is not None:
        raise RejectedEvent(REVOKED, f"device {device.name} is revoked")
    attachments = ledger.attachments_of(device.id)
    open_lots = {row[0] for row in attachments if row[2] is None}
    for lot in lots:
        if lot.id in open_lots:
            raise RejectedEvent(CONFLICT, f"device {device.name} is already attached to {lot.uri}")
    timing.within_custody(ledger, env, signer, lots, index, txn)
    for lot in lots:
        row_id = ledger.store.insert_attachment(device.id, lot.id, env.time_us, index)
        attachments.append([lot.id, env.time_us, None, row_id])
    return [lot.id for lot in lots]


def _detach(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, txn: Transaction
) -> list[int]:
    lots = checks.lots_of(ledger, env)
    quantities.holder_of(ledger, env, signer, lots, index)
    device = checks.device(ledger, env.data["device"])
    attachments = ledger.attachments_of(device.id)
    rows = []
    for lot in lots:
        row = next((r for r in attachments if r[0] == lot.id and r[2] is None), None)
        if row is None:
            raise RejectedEvent(NOT_ATTACHED, f"device {device.name} is not attached to {lot.uri}")
        if env.time_us < row[1]:
            raise RejectedEvent(
                CONFLICT,
                f"detach at {env.time} is before the attach ({format_time(row[1])}): "
                "check the signer's clock",
            )
        rows.append(row)
    timing.within_custody(ledger, env, signer, lots, index, txn)
    for row in rows:
        row[2] = env.time_us
        ledger.store.close_attachment(row[3], env.time_us, index)
    return [lot.id for lot in lots]


SHIP = Kind("ship", _ship)
RECEIVE = Kind("receive", _receive)
DISPENSE = Kind("dispense", _dispense)
ATTACH = Kind("attach", _attach)
DETACH = Kind("detach", _detach)
