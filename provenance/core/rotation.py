"""Key rotation (docs/protocol.md, "Key rotation"): what a `rotate` event's
regulator approval signs, and how it is checked, with nothing but the event.

A party or device moves from its key (`data.subject`) to a new one
(`data.key`). Normally the old key signs the `rotate` event itself. When the
old key is lost, the registrar signs it, and the event carries in
`data.approval` a regulator's detached Ed25519 signature over the
*statement*: the canonical JSON (JCS) of the rotation's subject, new key,
time and reason under a fixed context string. The regulator makes that
signature on its own machine (`provenance party rotate-approve`); the event
then proves both consents on its own, offline, from the log alone.
"""

from __future__ import annotations

from typing import Any

from provenance.core.envelope import b64url, b64url_decode
from provenance.core.errors import ValidationError
from provenance.core.identity import verifier_for
from provenance.core.jcs import canonicalize

# Domain separation: an approval cannot be mistaken for an envelope signature
# (those sign an envelope object, which has no `statement` field) or reused
# for anything but a rotation.
STATEMENT = "provenance-key-rotation-v1"
APPROVAL_FIELD = "approval"


def statement(subject: str, key: str, time: str, reason: str | None) -> bytes:
    """The bytes a regulator's approval signs: JCS of the rotation's terms."""
    terms: dict[str, Any] = {"statement": STATEMENT, "subject": subject, "key": key, "time": time}
    if reason is not None:
        terms["reason"] = reason
    return canonicalize(terms)


def statement_of(data: dict[str, Any], time: str) -> bytes:
    """The statement a `rotate` event with *data*, dated *time*, asks approval of."""
    return statement(data["subject"], data["key"], time, data.get("reason"))


def approval(regulator: str, signature: bytes) -> dict[str, str]:
    """`data.approval` as the event carries it."""
    return {"regulator": regulator, "signature": b64url(signature)}


def check_approval(data: dict[str, Any], time: str) -> str:
    """Check `data.approval` of a `rotate` event dated *time*: the signature of
    the did it names over the statement. Returns that did (whether it belongs to
    an enrolled regulator is the ledger's, or the bundle's, question). Raises
    ValidationError naming what is wrong."""
    found = data.get(APPROVAL_FIELD)
    if not isinstance(found, dict):
        raise ValidationError(
            f"data.{APPROVAL_FIELD}",
            "is required when the registrar signs a rotation: a regulator's signature "
            "over it (provenance party rotate-approve, on the regulator's machine)",
        )
    signature = b64url_decode(found.get("signature"), f"data.{APPROVAL_FIELD}.signature")
    regulator = found.get("regulator")
    if not verifier_for(regulator).is_valid(signature, statement_of(data, time)):
        raise ValidationError(
            f"data.{APPROVAL_FIELD}.signature",
            f"is not {regulator}'s signature over this rotation (subject, new key, time "
            "and reason as signed): ask the regulator to approve exactly this rotation",
        )
    return regulator


def check_rotation_offline(
    envelope: Any,
    index: int,
    registrar: str,
    identity_of: Any,
) -> dict[str, Any]:
    """Check, from a proof bundle alone, the `rotate` event at log *index* that
    starts a new key's identity chain: signed by the old key, unrevoked at its
    time, with no approval; or by *registrar* with a valid approval by a
    regulator enrolled before it, unrevoked at its time, other than the old
    key. *identity_of(did)* gives what the bundle says of an identity (or None
    when the bundle lacks its chain). Returns the old key's identity; raises
    VerificationError."""
    from provenance.core.errors import VerificationError

    data = envelope.data
    where = f"{data.get('key')}: rotation {envelope.event_id} (log index {index})"
    old = identity_of(data["subject"])
    if old is None:
        raise VerificationError(f"{where}: the bundle lacks the chain of the key it rotates from")
    if old["enrolled_at"] >= index or old["type"] == "registrar":
        raise VerificationError(f"{where}: rotates a key not enrolled before it")
    if envelope.signer == data["subject"]:
        if APPROVAL_FIELD in data:
            raise VerificationError(f"{where}: an approval on a rotation by the old key")
        closed = old.get("revoked_from_us")
        if closed is not None and old["revoked_at"] < index and envelope.time_us >= closed:
            raise VerificationError(f"{where}: signed by a key revoked from {old['revoked_from']}")
        return old
    if envelope.signer != registrar:
        raise VerificationError(f"{where}: signed by neither the old key nor the registrar")
    try:
        regulator_did = check_approval(data, envelope.time)
    except ValidationError as exc:
        raise VerificationError(f"{where}: {exc}") from None
    regulator = identity_of(regulator_did)
    if regulator is None or regulator["role"] != "regulator" or regulator_did == data["subject"]:
        raise VerificationError(
            f"{where}: the approval is not by another enrolled regulator in the bundle"
        )
    closed = regulator.get("revoked_from_us")
    if regulator["enrolled_at"] >= index or (
        closed is not None and regulator["revoked_at"] < index and envelope.time_us >= closed
    ):
        raise VerificationError(f"{where}: the approving regulator could not sign at its time")
    return old
