"""Signing envelopes. The verifier side (`provenance.core.envelope`) never imports
this module; devices and gateways use it to sign at the source."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from provenance.core import kinds
from provenance.core.disclosure import (
    Disclosed,
    conceal,
    grant_bytes,
    new_salt,
    open_disclosures,
)
from provenance.core.envelope import VERSION, VERSION_DISCLOSURE, Envelope, b64url, parse_unsigned
from provenance.core.identity import did_from_public_key
from provenance.core.notice import alert_signing_bytes


@lru_cache(maxsize=4096)
def did_of(private_key: Ed25519PrivateKey) -> str:
    """The did:key of a private key's public half (cached: signing asks often)."""
    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return did_from_public_key(raw)


def sign(
    private_key: Ed25519PrivateKey,
    *,
    kind: str,
    seq: int,
    time: str,
    data: dict[str, Any],
    lots: list[str] | tuple[str, ...] | None = None,
) -> Envelope:
    """Validate and sign one event as the holder of *private_key*.

    Raises ValidationError (naming the field) before signing anything invalid.
    """
    obj: dict[str, Any] = {
        "v": VERSION_DISCLOSURE if "_sd" in data else VERSION,
        "kind": kind,
        "signer": did_of(private_key),
        "seq": seq,
        "time": time,
        "data": data,
    }
    if lots is not None:
        obj["batches"] = list(lots)
    fields = parse_unsigned(obj)
    unsigned = Envelope(sig="", **fields)
    signature = private_key.sign(unsigned.signing_bytes())
    return Envelope(sig=b64url(signature), **fields)


def sign_private(
    private_key: Ed25519PrivateKey,
    *,
    kind: str,
    seq: int,
    time: str,
    data: dict[str, Any],
    lots: list[str] | tuple[str, ...] | None = None,
    private: Iterable[str] = (),
    salt: Callable[[], str] = new_salt,
) -> Disclosed:
    """Sign one event keeping the fields *private* of *data* private (wire
    protocol v2, docs/protocol.md §14): the envelope carries their digests,
    the disclosures come beside it. With no private field, a v1 envelope and
    no disclosures. Raises ValidationError (naming the field) before signing
    anything invalid, or a field the kind may not keep private; *salt* is for
    test vectors only (the default draws 128 random bits per field)."""
    private = list(private)
    if not private:
        return Disclosed(sign(private_key, kind=kind, seq=seq, time=time, data=data, lots=lots), ())
    kinds.validate_data(kind, data, None if lots is None else tuple(lots))
    public, disclosures = conceal(kind, data, private, salt)
    envelope = sign(private_key, kind=kind, seq=seq, time=time, data=public, lots=lots)
    open_disclosures(kind, envelope.data, envelope.lots, disclosures, complete=True)
    return Disclosed(envelope, tuple(disclosures))


def sign_disclosure_grant(private_key: Ed25519PrivateKey, grantee: str, time: str) -> str:
    """The holder of *private_key* lets *grantee* see its disclosures: the
    signature (base64url) over `provenance.core.disclosure.grant_bytes`."""
    return b64url(private_key.sign(grant_bytes(did_of(private_key), grantee, time)))


def sign_alert_notice(private_key: Ed25519PrivateKey, notice: dict[str, Any]) -> dict[str, Any]:
    """The alert notice with its `signature` by *private_key* (the rules key):
    Ed25519 over `provenance.core.notice.alert_signing_bytes` (docs/protocol.md §11)."""
    signature = private_key.sign(alert_signing_bytes(notice))
    return {**notice, "signature": {"signer": did_of(private_key), "sig": b64url(signature)}}
