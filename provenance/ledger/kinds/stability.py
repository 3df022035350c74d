"""`stability`: a product's stability data, signed by who makes it (docs/protocol.md
§3, docs/coldchain.md "Stability budget"). The signer must hold a GS1 company
prefix the GTIN lies under: the same party that may commission the product's lots
(`checks.may_commission`, from the enrolment's and grants' prefixes), and no one
else, so a distributor cannot lengthen a vaccine's life. Filed under the product's
chain, its GTIN's Digital Link URI (`stability_chain`), made on first use; the
newest profile on it is the one in force. No derived state: the scan reads the
chain's last event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provenance.core.envelope import Envelope
from provenance.core.kinds import stability_chain
from provenance.ledger.kinds import checks
from provenance.ledger.kinds.base import Kind, Transaction
from provenance.store.rows import Identity

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


def _stability(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, _txn: Transaction
) -> list[int]:
    assert signer is not None
    gtin = env.data["gtin"]
    subject = stability_chain(gtin)
    # Whatever the ledger's age: this kind is newer than the prefix rules.
    checks.may_commission(
        ledger, signer, gtin, subject, max(index, ledger.access_from), "state the stability of"
    )
    found = ledger.store.chain_by_subject(subject)
    return [found[0] if found is not None else ledger.new_chain(subject)]


STABILITY = Kind("stability", _stability)
