"""The rules key's decisions (docs/rules.md): `hold` (lots cannot be shipped,
transformed or dispensed until released), `release` (ends one hold or every
hold on the lots) and `flag` (a signal about lots that changes nothing else).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provenance.core.envelope import Envelope
from provenance.core.errors import RejectedEvent
from provenance.ledger.kinds import checks
from provenance.ledger.kinds.base import Kind, Transaction
from provenance.ledger.kinds.timing import TransactionRefs
from provenance.ledger.reasons import CONFLICT
from provenance.store.rows import Identity

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


def _hold(
    ledger: Ledger, env: Envelope, _s: Identity | None, index: int, txn: Transaction
) -> list[int]:
    """Hold the named lots for `data.rule` until a release: they cannot be
    shipped, transformed or dispensed meanwhile. One hold in force per lot
    and rule; a hold does not cascade to lots made from the lot earlier."""
    lots = checks.lots_of(ledger, env)
    rule = env.data["rule"]
    for lot in lots:
        if any(held_rule == rule for _, held_rule in ledger.store.active_holds(lot.id)):
            raise RejectedEvent(
                CONFLICT, f"{lot.uri} is already on hold by rule {rule}: release it first"
            )
    ids = ledger.store.derive(
        "hold", index, [lot.id for lot in lots], env.data, TransactionRefs(ledger, txn)
    )
    ledger.set_held_cache(ids, True)
    txn.holds[index] = env
    return ids


def _release(
    ledger: Ledger, env: Envelope, _s: Identity | None, index: int, txn: Transaction
) -> list[int]:
    """End the hold `data.hold` names on the named lots, or every hold in force
    on them; a lot stays held while another hold remains."""
    store = ledger.store
    lots = checks.lots_of(ledger, env)
    # The hold may be earlier in this append's batch, not in `events` yet: the
    # check here and the effect in `derive` find it through the same refs.
    refs = TransactionRefs(ledger, txn)
    hold_index = None
    if "hold" in env.data:
        hold_index = refs.event(bytes.fromhex(env.data["hold"]), "hold", index)
        if hold_index is None:
            raise RejectedEvent(CONFLICT, f"no hold {env.data['hold']} in the ledger")
    for lot in lots:
        active = [event for event, _ in store.active_holds(lot.id)]
        if not active:
            raise RejectedEvent(CONFLICT, f"{lot.uri} is not on hold")
        if hold_index is not None and hold_index not in active:
            raise RejectedEvent(CONFLICT, f"hold {env.data['hold']} is not in force on {lot.uri}")
    ids = store.derive("release", index, [lot.id for lot in lots], env.data, refs)
    ledger.set_held_cache([i for i in ids if not store.active_holds(i)], False)
    return ids


def _flag(
    ledger: Ledger, env: Envelope, _s: Identity | None, index: int, txn: Transaction
) -> list[int]:
    """A signal about the named lots (a silent logger, a counterfeit serial…):
    recorded once per lot, rule and key; it changes nothing else."""
    lots = checks.lots_of(ledger, env)
    data = env.data
    for lot in lots:
        if ledger.store.has_flag(lot.id, data["rule"], data["key"]):
            raise RejectedEvent(
                CONFLICT,
                f"{lot.uri} is already flagged by rule {data['rule']} for {data['key']}",
            )
    return ledger.store.derive(
        "flag", index, [lot.id for lot in lots], data, TransactionRefs(ledger, txn)
    )


HOLD = Kind("hold", _hold)
RELEASE = Kind("release", _release)
FLAG = Kind("flag", _flag)
