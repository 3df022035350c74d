"""`anchor`: the operator's signed statement that one of its audit trails (the
portal's, docs/portal.md) held `count` entries whose hash chain ended at `head`
(docs/protocol.md §11). Filed under the signer's chain for that trail,
`{did}#anchors/{trail}`, made on first use; an anchor never goes back: its
count is above the last one's, so a trail cannot be anchored shorter again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provenance.core.envelope import Envelope
from provenance.core.errors import RejectedEvent
from provenance.core.kinds import anchor_chain
from provenance.ledger.kinds.base import Kind, Transaction
from provenance.ledger.reasons import CONFLICT
from provenance.store.rows import Identity

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


def _anchor(
    ledger: Ledger, env: Envelope, _s: Identity | None, index: int, txn: Transaction
) -> list[int]:
    data = env.data
    subject = anchor_chain(env.signer, data["trail"])
    found = ledger.store.chain_by_subject(subject)
    chain_id = found[0] if found else None
    last = txn.anchors.get(subject)
    if last is None and found is not None and found[3] > 0:
        (stored,) = ledger.store.chain_events(found[0], from_pos=found[3] - 1)
        last = stored.envelope.data["count"]
    if last is not None and data["count"] <= last:
        raise RejectedEvent(
            CONFLICT,
            f"trail {data['trail']} was anchored at {last} entries already: an anchor "
            "must cover more entries than the last one",
        )
    txn.anchors[subject] = data["count"]
    return [chain_id if chain_id is not None else ledger.new_chain(subject)]


ANCHOR = Kind("anchor", _anchor)
