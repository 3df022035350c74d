"""`rotate`: a party, device or the rules key moves to a new key
(docs/protocol.md, "Key rotation").

Signed by the old key; or, when it is lost (or the identity was revoked), by
the registrar with a regulator's approval inside the event
(provenance/core/rotation.py), so the log alone proves both consents. The new
key gets an identity of its own (same name, type, role and owner) whose chain
starts with the rotation; the old identity is closed from the rotation's time
and everything it held carries over (provenance/store/rotation.py). Events
the old key signed stay valid and keep naming it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provenance.core.envelope import Envelope
from provenance.core.errors import ProvenanceError, RejectedEvent, ValidationError
from provenance.core.kinds import CUSTODIAL_FIELD, REGISTRAR
from provenance.core.rotation import APPROVAL_FIELD, check_approval
from provenance.core.timefmt import parse_time
from provenance.ledger.kinds.base import Kind, SignerHistory, Transaction
from provenance.ledger.reasons import CONFLICT, REVOKED, SCHEMA, UNAUTHORISED, UNKNOWN_SIGNER
from provenance.store.rows import Identity

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger

REGULATOR = "regulator"


def _rotate(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, _txn: Transaction
) -> list[int]:
    assert signer is not None
    data = env.data
    old = ledger.identity(data["subject"])
    if old is None:
        raise RejectedEvent(UNKNOWN_SIGNER, f"{data['subject']} is not enrolled")
    if old.type == REGISTRAR:
        raise RejectedEvent(
            UNAUTHORISED,
            "the registrar's key is bound to the log at init and is not rotated by an event",
        )
    successor = ledger.store.rotated_to(old.id)
    if successor is not None:
        found = ledger.identities_by_id.get(successor) or ledger.store.identity_by_id(successor)
        raise RejectedEvent(
            CONFLICT,
            f"{old.name}'s key {old.did} was already rotated to "
            f"{found.did if found else successor}: rotate the current key",
        )
    if ledger.identity(data["key"]) is not None:
        raise RejectedEvent(CONFLICT, f"{data['key']} is already enrolled: make a new key")
    if signer.id == old.id:
        if APPROVAL_FIELD in data:
            raise RejectedEvent(
                SCHEMA,
                "data.approval is for the registrar's recovery of a lost key; a rotation "
                "signed by the old key needs none",
            )
    elif signer.type == REGISTRAR:
        _approved(ledger, env, old)
    else:
        raise RejectedEvent(
            UNAUTHORISED,
            f"only {old.name}'s own key, or the registrar with a regulator's approval, "
            f"may rotate {old.name}'s key",
        )
    if CUSTODIAL_FIELD in data and old.type != "party":
        raise RejectedEvent(SCHEMA, f"data.{CUSTODIAL_FIELD}: only parties' keys say it")
    if CUSTODIAL_FIELD not in data and old.type == "party":
        # Unlike an old enrolment's silence, a rotation's is never read as custodial.
        raise RejectedEvent(
            SCHEMA,
            f"data.{CUSTODIAL_FIELD} is required when a party rotates: whether the operator "
            "holds the new key (true) or the party does (false)",
        )
    if data.get(CUSTODIAL_FIELD) is True and old.role == REGULATOR:
        raise RejectedEvent(
            SCHEMA,
            f"data.{CUSTODIAL_FIELD}: a regulator's key is never held by the operator",
        )

    chain_id = ledger.new_chain(data["key"])
    new = Identity(chain_id, data["key"], old.type, old.name, old.role, old.owner, index)
    ledger.store.close_rotated(old.id, new.id, env.time, index)
    ledger.store.insert_identity(new)
    ledger.store.carry_over(old.id, new.id, env.time_us, index)
    ledger.identities[new.did] = new
    ledger.identities_by_id[chain_id] = new
    # The caches follow the store.
    if old.revoked_from is None:
        old.revoked_from, old.revoked_from_us = env.time, env.time_us
    for lot in ledger.lots_by_id.values():
        if lot.custodian == old.id:
            lot.custodian = new.id
    for identity in ledger.identities_by_id.values():
        if identity.owner == old.id and identity.id != new.id:
            identity.owner = new.id
    ledger.attachments_of(old.id)[:] = ledger.store.attachments(old.id)
    return [old.id, chain_id]


def _approved(ledger: Ledger, env: Envelope, old: Identity) -> None:
    """The registrar's recovery: the event must carry a valid approval by an
    enrolled regulator, unrevoked at the rotation's time, other than the
    identity recovered."""
    try:
        regulator_did = check_approval(env.data, env.time)
    except ValidationError as exc:
        raise RejectedEvent(UNAUTHORISED, f"{exc}") from None
    regulator = ledger.identity(regulator_did)
    if regulator is None or regulator.type != "party" or regulator.role != REGULATOR:
        raise RejectedEvent(
            UNAUTHORISED,
            f"the approval is signed by {regulator_did}, not an enrolled regulator: the "
            "registrar alone cannot move a key",
        )
    if regulator.revoked_from_us is not None and env.time_us >= regulator.revoked_from_us:
        raise RejectedEvent(
            REVOKED,
            f"the approving regulator {regulator.name}'s key is revoked (or rotated) from "
            f"{regulator.revoked_from}",
        )
    if regulator.id == old.id:
        raise RejectedEvent(
            UNAUTHORISED,
            "a regulator cannot approve the recovery of its own key: another regulator must",
        )


def _audit_rotate(
    history: SignerHistory, envelope: Envelope, index: int, _registrar: str | None
) -> str | None:
    """The new key may sign from here on, as what the old one was; the old key
    is closed from the rotation's time (an earlier revocation stays); devices
    the old key's party owned are now owned by the new one."""
    data = envelope.data
    subject, key = data.get("subject"), data.get("key")
    old = history.enrolled.get(subject)
    if old is None:
        return None  # the replay through the ledger's rules reports it
    try:
        from_us = parse_time(envelope.time)
    except ProvenanceError:
        return None
    history.enrolled.setdefault(key, (index, old[1]))
    enrolment = dict(history.enrolments.get(subject, {}), subject=key, index=index)
    enrolment.pop(CUSTODIAL_FIELD, None)
    if CUSTODIAL_FIELD in data:
        enrolment[CUSTODIAL_FIELD] = data[CUSTODIAL_FIELD]
    history.enrolments.setdefault(key, enrolment)
    history.revoked.setdefault(subject, (index, from_us, envelope.time))
    for other in history.enrolments.values():
        if other.get("owner") == subject:
            other["owner"] = key
    return None


ROTATE = Kind("rotate", _rotate, audit=_audit_rotate)
