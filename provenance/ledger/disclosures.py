"""Who sees the private fields of v2 events, and what they see (docs/protocol.md
§14): the disclosures the ledger keeps beside the log, each checked again
against the digest its event signed before it is shown.

Who may see a signer's disclosures: a regulator (an enrolled party of role
`regulator`, its key not revoked), the signer itself, and a party the signer
granted with a grant statement signed by the signer's own key (`grant`).
A grant is kept beside the log, not in it: putting "A lets B see its prices"
in the public log would publish the very business relation the producer
keeps private; the statement's signature still lets anyone holding it check
the grantor said so. Everyone else sees "kept private by the producer".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provenance.core.disclosure import (
    Disclosure,
    DisclosureError,
    hidden,
    open_disclosures,
    verify_grant,
)
from provenance.core.envelope import Envelope
from provenance.core.errors import NotFound
from provenance.store.db import Store
from provenance.store.disclosures import disclosures_of, drop_grant, grant_of, put_grant

REGULATOR = "regulator"


class NotAllowed(DisclosureError):
    """The viewer may not see these disclosures."""


@dataclass(frozen=True)
class DisclosedEvent:
    """One v2 event of a lot as a permitted viewer sees it: the envelope, its
    disclosures (each checked against the signed digests) and the values."""

    index: int
    envelope: Envelope
    disclosures: tuple[Disclosure, ...]

    @property
    def fields(self) -> dict[str, Any]:
        return {d.name: d.value for d in self.disclosures}


def may_see(store: Store, viewer: str | None, signer: str, *, regulator: bool = False) -> bool:
    """May the party *viewer* (a did) see the disclosures of *signer*'s events?
    *regulator*: the viewer is known to be a regulator by other means (a
    portal account of the regulator role)."""
    if regulator:
        return True
    if viewer is None:
        return False
    if viewer == signer:
        return True
    identity = store.identity_by_did(viewer)
    if identity is not None and identity.role == REGULATOR and identity.revoked_from is None:
        return True
    held = grant_of(store, signer, viewer)
    if held is None:
        return False
    verify_grant(signer, viewer, *held)  # a row nobody signed grants nothing
    return True


def checked(store: Store, index: int, envelope: Envelope) -> tuple[Disclosure, ...]:
    """The disclosures kept for the event at *index*, checked again against the
    digests its envelope signed (and its signature): raises DisclosureError."""
    envelope.verify_signature()
    kept = disclosures_of(store, index)
    return tuple(open_disclosures(envelope.kind, envelope.data, envelope.lots, kept, complete=True))


def lot_disclosures(
    store: Store, lot_uri: str, viewer: str | None, *, regulator: bool = False
) -> list[DisclosedEvent]:
    """The v2 events of a lot whose disclosures *viewer* may see, with them;
    raises NotFound for an unknown lot. A v2 event the viewer may not see is
    left out (the public view says it is kept private)."""
    chain = store.chain_by_subject(lot_uri)
    if chain is None:
        raise NotFound(f"no lot {lot_uri} in this ledger")
    seen = []
    for event in store.chain_events(chain[0]):
        envelope = event.envelope
        if envelope.version != 2:
            continue
        if not may_see(store, viewer, envelope.signer, regulator=regulator):
            continue
        seen.append(DisclosedEvent(event.index, envelope, checked(store, event.index, envelope)))
    return seen


def private_count(envelope: Envelope) -> int:
    """How many fields of an event are kept private (0 for v1)."""
    return hidden(envelope.data) if envelope.version == 2 else 0


def grant(store: Store, grantor: str, grantee: str, time: str, sig: str) -> None:
    """Record *grantor*'s signed grant to *grantee* (DisclosureError if the
    signature is not the grantor's, NotFound if the grantee is no party)."""
    party = store.identity_by_did(grantee)
    if party is None or party.type != "party":
        raise NotFound(f"{grantee} is not an enrolled party")
    verify_grant(grantor, grantee, time, sig)
    put_grant(store, grantor, grantee, time, sig)


def withdraw(store: Store, grantor: str, grantee: str) -> bool:
    """Withdraw *grantor*'s grant to *grantee*; whether there was one."""
    return drop_grant(store, grantor, grantee)
