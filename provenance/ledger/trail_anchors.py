"""Anchoring audit trails in the public log: reading and writing the anchors
(docs/protocol.md §11, docs/portal.md).

`anchor_trail` signs, with the operator's registrar key (or the rules key), an
`anchor` event `{trail, count, head}` stating the trail's current head, when the
trail grew since its last anchor by that key. An anchor is one event appended
in one transaction: it is in the log whole, or not at all.

`verify_anchored` holds the trail against every anchor the log has for it
(`provenance portal audit --verify`, the regulator's audit page): the operator
can no longer rebuild the trail unnoticed, only refuse to anchor its newest
entries (reported as not yet anchored). The thread that anchors at a cadence is
`provenance.services.anchorer.Anchorer`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.errors import ProvenanceError
from provenance.core.kinds import REGISTRAR, RULES, anchor_chain
from provenance.core.signing import did_of
from provenance.core.trail import Anchor, TrailEntry, TrailReport, check_trail
from provenance.ledger.append import Appended, Ledger
from provenance.ledger.signer import Signer, Unsigned
from provenance.store.db import Store

log = logging.getLogger(__name__)

Head = Callable[[], tuple[int, str]]  # (entries, head hash) of a trail


def last_anchor(store: Store, did: str, trail: str) -> int:
    """The count the signer *did* last anchored *trail* at (0: never)."""
    found = store.chain_by_subject(anchor_chain(did, trail))
    if found is None or found[3] == 0:
        return 0
    (stored,) = store.chain_events(found[0], from_pos=found[3] - 1)
    return int(stored.envelope.data["count"])


def anchor_trail(ledger: Ledger, key: Ed25519PrivateKey, trail: str, head: Head) -> Appended | None:
    """Anchor *trail* at its current *head* if it grew since its last anchor by
    this key; None when there was nothing new. Raises ProvenanceError when the
    ledger refuses the anchor (the message says why)."""
    count, digest = head()
    if count == 0 or count <= last_anchor(ledger.store, did_of(key), trail):
        return None
    event = Unsigned("anchor", {"trail": trail, "count": count, "head": digest})
    (result,) = Signer(ledger, key).sign_and_append([event], atomic=True, source="anchor")
    if result.status != "accepted":
        raise ProvenanceError(f"the log refused the anchor: {result.reason}: {result.message}")
    log.info("anchor: trail %s anchored at %d entries (log index %s)", trail, count, result.index)
    return result


def trail_anchors(store: Store, trail: str) -> list[Anchor]:
    """Every anchor of *trail* in the log, by the registrar and any rules key."""
    anchors = []
    with store.snapshot():
        for identity in store.identities():
            if identity.type not in (REGISTRAR, RULES):
                continue
            found = store.chain_by_subject(anchor_chain(identity.did, trail))
            if found is None:
                continue
            for stored in store.chain_events(found[0]):
                data = stored.envelope.data
                anchors.append(
                    Anchor(data["count"], data["head"], stored.index, stored.envelope.time)
                )
    return anchors


def verify_anchored(entries: list[TrailEntry], store: Store, trail: str) -> TrailReport:
    """The trail's chain recomputed and held against every anchor in the log."""
    return check_trail(entries, trail_anchors(store, trail))


__all__ = ["Head", "anchor_trail", "last_anchor", "trail_anchors", "verify_anchored"]
