"""The kinds that make lots: `commission` (a producer registers a lot under
one of its GS1 company prefixes) and `transform` (inputs made into outputs,
new lots or ones just commissioned, with lineage edges in the same
transaction so that a recall later in the batch cascades; docs/lineage.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provenance.core import gs1
from provenance.core.envelope import Envelope
from provenance.core.errors import RejectedEvent
from provenance.ledger.kinds import checks, quantities, timing
from provenance.ledger.kinds.base import Kind, Transaction
from provenance.ledger.kinds.timing import TransactionRefs
from provenance.ledger.reasons import LOT_EXISTS, SCHEMA, UNKNOWN_LOT
from provenance.store.rows import Identity, Lot

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


def _create_lot(
    ledger: Ledger, uri: str, product: str, data: dict[str, Any], signer: Identity, index: int
) -> Lot:
    gtin, lot_code = gs1.parse_lot_uri(uri)
    chain_id = ledger.new_chain(uri)
    lot = Lot(
        chain_id,
        uri,
        gtin,
        lot_code,
        product,
        data.get("category"),
        data.get("expiry"),
        data.get("profile"),
        signer.id,
        signer.id,
        index,
        False,
    )
    ledger.store.insert_lot(lot)
    ledger.lots_by_uri[uri] = lot
    ledger.lots_by_id[lot.id] = lot
    return lot


def _commission(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, txn: Transaction
) -> list[int]:
    assert signer is not None and env.lots is not None
    uri = env.lots[0]
    if ledger.lot(uri) is not None:
        raise RejectedEvent(LOT_EXISTS, f"{uri} is already commissioned")
    checks.may_commission(ledger, signer, gs1.parse_lot_uri(uri)[0], uri, index)
    lot = _create_lot(ledger, uri, env.data["product"], env.data, signer, index)
    changed = ledger.store.derive(
        "commission", index, [lot.id], env.data, TransactionRefs(ledger, txn)
    )
    quantities.record(ledger, env, signer, index)
    return changed


def _transform(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, txn: Transaction
) -> list[int]:
    assert signer is not None and env.lots is not None
    inputs = []
    for item in env.data["inputs"]:
        lot = ledger.lot(item["batch"])
        if lot is None:
            raise RejectedEvent(UNKNOWN_LOT, f"input {item['batch']} is not registered")
        inputs.append(lot)
    quantities.holder_of(ledger, env, signer, inputs, index)
    checks.not_recalled(ledger, inputs, index, txn, "transformed")
    checks.not_held(ledger, inputs, txn, "transformed")
    timing.within_custody(ledger, env, signer, inputs, index, txn)
    to_create = []
    for position, item in enumerate(env.data["outputs"]):
        lot = ledger.lot(item["batch"])
        if lot is None:
            if "product" not in item:
                raise RejectedEvent(
                    SCHEMA, f"data.outputs[{position}].product is required for a new lot"
                )
            checks.may_commission(
                ledger, signer, gs1.parse_lot_uri(item["batch"])[0], item["batch"], index
            )
            to_create.append(item)
        else:
            checks.not_recalled(ledger, [lot], index, txn, "made into a transform output")
            checks.not_held(ledger, [lot], txn, "made into a transform output")
            if (
                lot.commissioned_by != signer.id
                or lot.custodian != signer.id
                or ledger.chain_length(lot.id) != 1
                # its one event must be its commission, not the transform that made it
                or timing.kind_at(ledger, lot.origin_event, txn) != "commission"
            ):
                raise RejectedEvent(
                    LOT_EXISTS,
                    f"output {lot.uri} already exists; an output must be new or just "
                    "commissioned by the same party",
                )
            if index >= ledger.time_rules_from:
                timing.not_before_birth(ledger, env, [lot], txn)
    for lot, item in zip(inputs, env.data["inputs"], strict=True):
        quantities.may_use(ledger, signer, lot, item["quantity"], "used", index)
    for item in to_create:
        _create_lot(ledger, item["batch"], item["product"], item, signer, index)
    refs = TransactionRefs(ledger, txn)
    # Lineage edges in this transaction: a recall later in the batch cascades.
    # An output is new or has only its commission, so it has no descendants:
    # no edge can close a cycle.
    lot_ids = list(dict.fromkeys(refs.chain(uri) for uri in env.lots))
    changed = ledger.store.derive("transform", index, lot_ids, env.data, refs)
    quantities.record(ledger, env, signer, index)
    return changed


COMMISSION = Kind("commission", _commission)
TRANSFORM = Kind("transform", _transform)
