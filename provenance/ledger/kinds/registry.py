"""The registry kinds: `enrol` (a party, device or the rules key gets an
identity and its chain), `revoke` (a key stops signing from a time) and `grant`
(more GS1 company prefixes for a party that commissions lots). Their audit
steps rebuild who could sign what from the log alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provenance.core.envelope import Envelope
from provenance.core.errors import ProvenanceError, RejectedEvent
from provenance.core.identity import COMMISSIONING_ROLES
from provenance.core.kinds import PREFIXES_FIELD, REGISTRAR, prefix_chain
from provenance.core.timefmt import parse_time
from provenance.ledger.kinds import checks
from provenance.ledger.kinds.base import Kind, SignerHistory, Transaction
from provenance.ledger.reasons import (
    CONFLICT,
    REVOKED,
    UNAUTHORISED,
    UNKNOWN_PARTY,
    UNKNOWN_SIGNER,
)
from provenance.store import places
from provenance.store.rows import Identity

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


def _enrol(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, _txn: Transaction
) -> list[int]:
    data = env.data
    subject, kind, name = data["subject"], data["type"], data["name"]
    if kind == REGISTRAR and signer is not None:
        raise RejectedEvent(UNAUTHORISED, "there is one registrar, enrolled at init")
    if ledger.identity(subject) is not None:
        raise RejectedEvent(CONFLICT, f"{subject} is already enrolled")
    if ledger.store.identity_by_name(kind, name) is not None:
        raise RejectedEvent(CONFLICT, f"a {kind} named {name!r} is already enrolled")
    if "pgln" in data and places.party_with_pgln(ledger.store, data["pgln"]) is not None:
        raise RejectedEvent(CONFLICT, f"PGLN {data['pgln']} is already another party's")
    owner = None
    if kind == "device":
        owner_identity = ledger.identity(data["owner"])
        if owner_identity is None or owner_identity.type != "party":
            raise RejectedEvent(UNKNOWN_PARTY, f"owner {data['owner']} is not an enrolled party")
        owner = owner_identity.id
    chain_id = ledger.new_chain(subject)
    identity = Identity(chain_id, subject, kind, name, data.get("role"), owner, index)
    ledger.store.insert_identity(identity)
    ledger.identities[subject] = identity
    ledger.identities_by_id[chain_id] = identity
    if PREFIXES_FIELD in data:
        ledger.store.record_prefixes(chain_id, data[PREFIXES_FIELD], index)
        ledger.prefixes_of(chain_id).update(data[PREFIXES_FIELD])
    places.record_party_details(ledger.store, chain_id, data)  # PGLN, address (§15)
    return [chain_id]


def _audit_enrol(
    history: SignerHistory, envelope: Envelope, index: int, registrar: str | None
) -> str | None:
    data = envelope.data
    role = data.get("role") if data.get("type") == "party" else data.get("type")
    if data.get("type") == REGISTRAR and (index != 0 or envelope.signer != registrar):
        return "a second registrar enrolment"
    history.enrolled.setdefault(data.get("subject"), (index, role))
    history.enrolments.setdefault(data.get("subject"), dict(data, index=index))
    return None


def _revoke(
    ledger: Ledger, env: Envelope, _s: Identity | None, index: int, _txn: Transaction
) -> list[int]:
    subject = ledger.identity(env.data["subject"])
    if subject is None:
        raise RejectedEvent(UNKNOWN_SIGNER, f"{env.data['subject']} is not enrolled")
    if subject.type == REGISTRAR:
        raise RejectedEvent(UNAUTHORISED, "the registrar cannot revoke itself")
    if subject.revoked_from is not None:
        raise RejectedEvent(
            CONFLICT, f"{subject.name} is already revoked from {subject.revoked_from}"
        )
    subject.revoked_from = env.data["from"]
    subject.revoked_from_us = parse_time(subject.revoked_from)
    ledger.store.revoke_identity(subject.id, subject.revoked_from, index)
    return [subject.id]


def _audit_revoke(
    history: SignerHistory, envelope: Envelope, index: int, _registrar: str | None
) -> str | None:
    data = envelope.data
    try:
        from_us = parse_time(data.get("from"))
    except ProvenanceError:
        return None  # the event checks report an unreadable time
    history.revoked.setdefault(data.get("subject"), (index, from_us, data.get("from")))
    return None


def _grant(
    ledger: Ledger, env: Envelope, _s: Identity | None, index: int, _txn: Transaction
) -> list[int]:
    """More GS1 company prefixes for a party that commissions lots. Filed
    under the party's prefix chain `{did}#gs1`, made on first use, so that
    its identity chain stays enrolments and revocations (docs/protocol.md §5)."""
    subject = checks.party(ledger, env.data["subject"])
    if subject.role not in COMMISSIONING_ROLES:
        raise RejectedEvent(
            CONFLICT,
            f"{subject.name} is a {subject.role}: only producers and processors commission "
            "lots, so only they hold GS1 company prefixes",
        )
    if subject.revoked_from is not None:
        raise RejectedEvent(REVOKED, f"{subject.name} is revoked from {subject.revoked_from}")
    held = ledger.prefixes_of(subject.id)
    new = [prefix for prefix in env.data[PREFIXES_FIELD] if prefix not in held]
    if not new:
        raise RejectedEvent(CONFLICT, f"{subject.name} already holds every prefix this grant names")
    ledger.store.record_prefixes(subject.id, new, index)
    held.update(new)
    chain_subject = prefix_chain(subject.did)
    found = ledger.store.chain_by_subject(chain_subject)
    return [found[0] if found else ledger.new_chain(chain_subject)]


ENROL = Kind("enrol", _enrol, audit=_audit_enrol)
REVOKE = Kind("revoke", _revoke, audit=_audit_revoke)
GRANT = Kind("grant", _grant)
