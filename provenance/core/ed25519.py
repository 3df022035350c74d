"""Ed25519 signature checks: one verifier for the whole ledger.

Every place that decides whether a signature is good — ingest, `Ledger.append`,
the audit replay, proof bundles, checkpoint notes — goes through `Verifier`, so
they can never disagree about an envelope.

It is libsodium's `crypto_sign_open` (through PyNaCl, which ships libsodium in
its wheels), not OpenSSL's, for two reasons (docs/protocol.md §1):

- it is stricter: besides what both refuse (S ≥ L, non-canonical R, wrong
  lengths), libsodium refuses public keys and R values of small order. OpenSSL
  accepts, for instance, the identity point as a public key with the signature
  (R = identity, S = 0) on *any* message — a key whose "signatures" prove
  nothing. Anything libsodium accepts, OpenSSL and the other common verifiers
  accept too, so an event we log verifies for every outside auditor;
- it is about twice as fast here (~110 µs against ~200 µs per check), and
  signature checks are most of the ingest's CPU.

Both release the GIL while checking, so callers may spread checks over threads.
Signing stays with `cryptography` (keys, PEM files); Ed25519 signing is
deterministic, so the library that signs does not matter to verifiers.
"""

from __future__ import annotations

from nacl.bindings import crypto_core_ed25519_is_valid_point, crypto_sign_open
from nacl.exceptions import BadSignatureError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def is_usable_public_key(public_key: bytes) -> bool:
    """Whether signatures by this key can ever verify here: a canonical point
    of the curve's prime-order subgroup (every key made from a private key is
    one), not a small-order or off-curve point."""
    return (
        isinstance(public_key, bytes)
        and len(public_key) == PUBLIC_KEY_SIZE
        and bool(crypto_core_ed25519_is_valid_point(public_key))
    )


class InvalidSignature(Exception):
    """The signature is not this key's signature on this message."""


class Verifier:
    """Checks signatures by one Ed25519 public key (32 raw bytes)."""

    __slots__ = ("public_key",)

    def __init__(self, public_key: bytes):
        if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
            raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")
        self.public_key = public_key

    def verify(self, signature: bytes, message: bytes) -> None:
        """Return if `signature` is this key's on `message`; else raise InvalidSignature."""
        if len(signature) != SIGNATURE_SIZE:
            raise InvalidSignature(f"an Ed25519 signature is {SIGNATURE_SIZE} bytes")
        try:
            crypto_sign_open(signature + message, self.public_key)
        except BadSignatureError:
            raise InvalidSignature("signature does not verify") from None

    def is_valid(self, signature: bytes, message: bytes) -> bool:
        try:
            self.verify(signature, message)
        except InvalidSignature:
            return False
        return True
