"""The registry of event kinds: what each kind does to the ledger's state,
written once. `KINDS` maps a kind's name to its `Kind` (base.py): the `apply`
step `Ledger.append` runs for it (the audit's replay appends through the same
door), and, for kinds that change who may sign, the step the audit uses to
rebuild that from the log. One module per family of kinds; the pure validation
(each kind's `data` schema, who may sign it) stays in provenance/core/kinds.py.

Adding a kind: its schema and signer roles in provenance/core/kinds.py, its
module here (or a family module) defining a `Kind`, and one entry below
(docs/architecture.md, "Adding an event kind").
"""

from __future__ import annotations

from provenance.core.kinds import KIND_CODES
from provenance.ledger.kinds import (
    anchors,
    custody,
    holds,
    lots,
    observations,
    pallets,
    places,
    recall,
    recall_acks,
    registry,
    rotation,
    serials,
    stability,
)
from provenance.ledger.kinds.base import Kind

KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        registry.ENROL,
        registry.REVOKE,
        registry.GRANT,
        lots.COMMISSION,
        lots.TRANSFORM,
        observations.READING,
        observations.INSPECT,
        observations.EPCIS,
        custody.ATTACH,
        custody.DETACH,
        custody.SHIP,
        custody.RECEIVE,
        custody.DISPENSE,
        recall.RECALL,
        recall.RECALL_LIFT,
        holds.HOLD,
        holds.RELEASE,
        holds.FLAG,
        rotation.ROTATE,
        anchors.ANCHOR,
        stability.STABILITY,
        pallets.PACK,
        pallets.UNPACK,
        places.PLACE,
        observations.COOL,
        recall_acks.RECALL_ACK,
        serials.SERIALS,
    )
}

# A kind the envelope accepts but nothing applies (or the reverse) is a bug
# found at import, not when the first such event arrives.
if KINDS.keys() != KIND_CODES.keys():  # pragma: no cover - a programming error
    raise RuntimeError(
        "the kinds registry and provenance/core/kinds.py disagree: "
        f"no registry entry for {sorted(KIND_CODES.keys() - KINDS.keys())}, "
        f"no kind code for {sorted(KINDS.keys() - KIND_CODES.keys())}"
    )

# The kinds the audit replays to rebuild who may sign.
SIGNER_KINDS = tuple(name for name, kind in KINDS.items() if kind.audit is not None)
