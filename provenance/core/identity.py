"""Identities: Ed25519 public keys as W3C `did:key` identifiers.

A did:key for Ed25519 is ``did:key:z`` + base58btc(0xed 0x01 ‖ 32-byte key).
Pure functions; key files live in `provenance.infra.keystore`.
"""

from __future__ import annotations

from functools import lru_cache

from provenance.core.ed25519 import Verifier
from provenance.core.errors import ValidationError

ED25519_MULTICODEC = b"\xed\x01"
DID_KEY_PREFIX = "did:key:z"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}

PARTY_ROLES = (
    "producer",
    "processor",
    "carrier",
    "distributor",
    "retailer",
    "clinic",
    "inspector",  # an accredited inspector or laboratory (docs/protocol.md §3)
    "regulator",
)
# Roles that may sign `inspect` and `epcis` about any lot, beside the lot's own
# custodians past and present (docs/protocol.md §3, "Who may sign about a lot").
OVERSIGHT_ROLES = ("inspector", "regulator")
# Roles that may commission lots (and so hold GS1 company prefixes).
COMMISSIONING_ROLES = ("producer", "processor")


def b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rem = divmod(number, 58)
        out.append(_B58[rem])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        try:
            number = number * 58 + _B58_INDEX[char]
        except KeyError:
            raise ValueError(f"{char!r} is not a base58btc character") from None
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def did_from_public_key(public_key: bytes) -> str:
    if len(public_key) != 32:
        raise ValidationError("public key", f"Ed25519 keys are 32 bytes, got {len(public_key)}")
    return DID_KEY_PREFIX + b58encode(ED25519_MULTICODEC + public_key)


DID_KEY_LENGTH = 56  # "did:key:z" + base58btc of 34 bytes, always


def public_key_from_did(did: object, field: str = "did") -> bytes:
    """The raw 32-byte Ed25519 key inside a did:key, or ValidationError."""
    if not isinstance(did, str) or not did.startswith(DID_KEY_PREFIX):
        raise ValidationError(field, "must be an Ed25519 did:key (did:key:z6Mk…)")
    if len(did) != DID_KEY_LENGTH:
        raise ValidationError(
            field,
            "must be an Ed25519 did:key (multicodec 0xed01, 32-byte key), "
            f"{DID_KEY_LENGTH} characters long; got {len(did)}",
        )
    return _decode_did(did, field)


@lru_cache(maxsize=65536)
def _decode_did(did: str, field: str) -> bytes:
    try:
        raw = b58decode(did[len(DID_KEY_PREFIX) :])
    except ValueError as exc:
        raise ValidationError(field, f"bad did:key encoding: {exc}") from None
    if raw[:2] != ED25519_MULTICODEC or len(raw) != 34:
        raise ValidationError(field, "must be an Ed25519 did:key (multicodec 0xed01, 32-byte key)")
    if b58encode(raw) != did[len(DID_KEY_PREFIX) :]:
        raise ValidationError(field, "did:key is not in canonical base58btc form")
    return raw[2:]


def verifier_for(did: str) -> Verifier:
    """The (cached) signature verifier for a did:key's public key."""
    if not isinstance(did, str):
        raise ValidationError("did", "must be an Ed25519 did:key string")
    return _verifier(did)


@lru_cache(maxsize=65536)
def _verifier(did: str) -> Verifier:
    return Verifier(public_key_from_did(did))


def is_did_key(value: object) -> bool:
    try:
        public_key_from_did(value)
    except ValidationError:
        return False
    return True
