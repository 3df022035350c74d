"""`place`: a party registers a location it operates, once, by its GLN (name,
address, coordinates, what kind of place); events may then cite the place as
``{"gln": …}`` alone (docs/protocol.md §15). Filed under the GLN's chain, its
GS1 Digital Link URI (`place_chain`), made on first use; the newest
registration on it is the one in force (the `places` table). A GLN is one
party's: another party's registration of it, or of another party's PGLN, is
refused (`conflict`); the same party may register it again to change it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provenance.core.envelope import Envelope
from provenance.core.errors import RejectedEvent
from provenance.core.places import place_chain
from provenance.ledger.kinds.base import Kind, Transaction
from provenance.ledger.reasons import CONFLICT
from provenance.store import places
from provenance.store.rows import Identity

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


def _place(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, _txn: Transaction
) -> list[int]:
    assert signer is not None
    gln = env.data["gln"]
    store = ledger.store
    registered = places.place(store, gln)
    if registered is not None and registered.party != signer.id:
        raise RejectedEvent(
            CONFLICT,
            f"GLN {gln} is registered by {registered.party_name!r} ({registered.party_did}): "
            "a place is registered by the party that operates it; check the GLN",
        )
    holder = places.party_with_pgln(store, gln)
    if holder is not None and holder != signer.id:
        who = store.identity_by_id(holder)
        raise RejectedEvent(
            CONFLICT,
            f"GLN {gln} is the PGLN of {who.name if who else 'another party'!r}: a party may "
            "register its own PGLN as a place, not another's",
        )
    subject = place_chain(gln)
    found = store.chain_by_subject(subject)
    chain_id = found[0] if found is not None else ledger.new_chain(subject)
    places.record_place(store, signer.id, env.data, index)
    return [chain_id]


PLACE = Kind("place", _place)
