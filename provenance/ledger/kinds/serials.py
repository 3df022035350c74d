"""`serials`: a lot's maker issues serial numbers for its packs (GS1 AI 21, docs/protocol.md
§"Serials"). The signer must be the party that made the lot (commissioned or transformed
it); the lot must not be recalled; no serial may be issued twice in a lot, in one event or
across events (`conflict`). The derived table `serials` (migration 0014) answers "was this
serial issued for this lot, and by which event?" for the scan page and the counterfeit rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provenance.core.envelope import Envelope
from provenance.core.errors import RejectedEvent
from provenance.ledger.kinds import checks
from provenance.ledger.kinds.base import Kind, Transaction
from provenance.ledger.kinds.timing import TransactionRefs
from provenance.ledger.reasons import CONFLICT, UNAUTHORISED
from provenance.store.rows import Identity

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger

MAX_LISTED = 5  # serials named in a refusal
MAX_ROTATIONS = 64  # keys a maker may have moved through since it made the lot


def _made_by(ledger: Ledger, maker_id: int, signer_id: int) -> bool:
    """The signer is the lot's maker, or the key the maker rotated to (docs/protocol.md,
    "Key rotation": the new identity carries on the old one's lots)."""
    current: int | None = maker_id
    for _ in range(MAX_ROTATIONS):
        if current is None:
            return False
        if current == signer_id:
            return True
        current = ledger.store.rotated_to(current)
    return False


def _serials(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, txn: Transaction
) -> list[int]:
    assert signer is not None
    (lot,) = checks.lots_of(ledger, env)  # core/kinds.py: exactly one lot
    if not _made_by(ledger, lot.commissioned_by, signer.id):
        maker = ledger.identities_by_id.get(lot.commissioned_by) or ledger.store.identity_by_id(
            lot.commissioned_by
        )
        raise RejectedEvent(
            UNAUTHORISED,
            f"{signer.name} may not issue serials for {lot.uri}: only its maker "
            f"({maker.name if maker else lot.commissioned_by}) issues them",
        )
    checks.not_recalled(ledger, [lot], index, txn, "issue serials for")
    issued = ledger.store.issued_serials(lot.id, env.data["serials"])
    if issued:
        named = ", ".join(sorted(issued)[:MAX_LISTED]) + (", …" if len(issued) > MAX_LISTED else "")
        raise RejectedEvent(
            CONFLICT,
            f"{len(issued)} of these serials were already issued for {lot.uri} ({named}): "
            "each serial is issued once per lot",
        )
    return ledger.store.derive("serials", index, [lot.id], env.data, TransactionRefs(ledger, txn))


SERIALS = Kind("serials", _serials)
