"""Who holds how much of a lot now, read from the store: the `holdings` and
`shipment_lots` tables (provenance/store/holdings.py) made into a
`LotHoldings` by the pure `provenance.domain.holdings.summarise`.

`holdings(store, lot_uri)` is the one call the trace, the recall report, the
lot page and the recall acknowledgements use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from provenance.core.errors import NotFound
from provenance.domain.custody import Party, unknown_party
from provenance.domain.holdings import LotHoldings, summarise
from provenance.store.db import Store


def party_lookup(store: Store) -> Callable[[str], Party]:
    """A did → `Party` (name and role; "device" for loggers), each identity
    read once: what the lot page, the trace and holdings name parties with."""
    known: dict[str, Party] = {}

    def lookup(did: str) -> Party:
        party = known.get(did)
        if party is None:
            identity = store.identity_by_did(did)
            if identity is None:
                party = unknown_party(did)
            else:
                role = "device" if identity.type == "device" else identity.role
                party = Party(did, identity.name, role)
            known[did] = party
        return party

    return lookup


def holdings_by_id(store: Store, lot_ids: Sequence[int]) -> dict[int, LotHoldings]:
    """`LotHoldings` of each lot in *lot_ids* (those the store knows)."""
    lookup = party_lookup(store)
    dids: dict[int, str] = {}

    def did(identity_id: int) -> str:
        if identity_id not in dids:
            identity = store.identity_by_id(identity_id)
            dids[identity_id] = identity.did if identity else f"identity #{identity_id}"
        return dids[identity_id]

    found = {}
    for lot_id in lot_ids:
        lot = store.lot_by_id(lot_id)
        if lot is None:
            continue
        measure = store.lot_measure(lot_id)
        held = [(did(h.party), h.held, h.dispensed, h.used) for h in store.holdings_of(lot_id)]
        moves = [
            (*m[:1], did(m.sender), did(m.receiver), *m[3:]) for m in store.movements_of(lot_id)
        ]
        unit = measure.unit if measure.measured else None
        registered = measure.quantity if measure.measured else None
        found[lot_id] = summarise(lot.uri, unit, registered, held, moves, lookup)
    return found


def holdings(store: Store, lot_uri: str) -> LotHoldings:
    """Who holds how much of *lot_uri* now; NotFound for a lot the ledger does not know."""
    with store.snapshot():
        lot = store.lot_by_uri(lot_uri)
        if lot is None:
            raise NotFound(f"no lot {lot_uri} in this ledger")
        return holdings_by_id(store, [lot.id])[lot.id]
