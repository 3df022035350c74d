"""The regulator's recall kinds: `recall` (the named lots and, in the same
transaction, every lot made from them) and `recall-lift` (ends the recalls the
named lots are the source of, here and downstream). docs/lineage.md.
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


def _recall(
    ledger: Ledger, env: Envelope, _s: Identity | None, index: int, txn: Transaction
) -> list[int]:
    """Recall the named lots and, in the same transaction, every lot made
    from them (transitively); each affected lot records which named lot
    its recall comes from. Filed under every affected lot's chain, so each
    one's history and proof bundle carry the recall (docs/lineage.md)."""
    lots = checks.lots_of(ledger, env)
    named = [lot.id for lot in lots]
    affected = ledger.store.derive("recall", index, named, env.data, TransactionRefs(ledger, txn))
    ledger.set_recalled_cache(affected, True)
    txn.recalls[index] = env
    return affected if index >= ledger.rules_from else named


def _recall_lift(
    ledger: Ledger, env: Envelope, _s: Identity | None, index: int, txn: Transaction
) -> list[int]:
    """End the recalls the named lots are the source of, here and downstream.
    A lot recalled only through an ancestor is lifted by lifting that ancestor."""
    store = ledger.store
    lots = checks.lots_of(ledger, env)
    for lot in lots:
        active = store.active_recalls(lot.id)
        if not any(source == lot.id for source, _ in active):
            if not active:
                raise RejectedEvent(CONFLICT, f"{lot.uri} is not recalled")
            sources = ", ".join(dict.fromkeys(store.subject(s) for s, _ in active))
            raise RejectedEvent(
                CONFLICT,
                f"{lot.uri} is recalled only through {sources}: lift the recall of that lot",
            )
    named = [lot.id for lot in lots]
    affected = store.derive("recall-lift", index, named, env.data, TransactionRefs(ledger, txn))
    still = {
        lot_id
        for lot_id in affected
        if store.active_recalls(lot_id)  # recalled through another source too
    }
    ledger.set_recalled_cache([lot_id for lot_id in affected if lot_id not in still], False)
    return affected if index >= ledger.rules_from else named


RECALL = Kind("recall", _recall)
RECALL_LIFT = Kind("recall-lift", _recall_lift)
