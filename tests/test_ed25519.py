"""Ed25519 as Provenance uses it: raw public key -> did:key -> `verifier_for(did)`
(libsodium, provenance/core/ed25519.py), checked against OpenSSL (`cryptography`) as an
independent reference.

Vectors: Project Wycheproof `ed25519_test.json` (every case must give exactly its
expected result; "invalid" covers malleable S, non-canonical R/S encodings,
truncated and padded signatures) and RFC 8032 section 7.1 (derived public key,
deterministic signature, verification). Both in
../shared/conformance/wycheproof-ed25519, vendored in tests/vectors/wycheproof-ed25519.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature as OpenSSLInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from support.paths import SHARED, VENDORED, conformance

from provenance.core.ed25519 import InvalidSignature, Verifier
from provenance.core.envelope import b64url, b64url_decode
from provenance.core.identity import did_from_public_key, public_key_from_did, verifier_for
from provenance.core.signing import did_of

VECTORS = "wycheproof-ed25519"


def _load(name: str) -> dict[str, Any] | None:
    try:
        return json.loads(conformance(f"{VECTORS}/{name}").read_text(encoding="utf-8"))
    except pytest.skip.Exception:
        return None


def _wycheproof_params() -> list[Any]:
    data = _load("ed25519_test.json")
    if data is None:
        return []
    params = []
    for group in data["testGroups"]:
        public_key = group["publicKey"]["pk"]
        for case in group["tests"]:
            flags = "+".join(case["flags"])
            params.append(
                pytest.param(public_key, case, id=f"tc{case['tcId']}-{case['result']}-{flags}")
            )
    return params


def _rfc8032_params() -> list[Any]:
    data = _load("rfc8032_ed25519.json")
    if data is None:
        return []
    return [pytest.param(v, id=v["name"].rsplit(" ", 2)[-1]) for v in data["vectors"]]


def _verifies(did: str, signature: bytes, message: bytes) -> bool:
    return verifier_for(did).is_valid(signature, message)


def _openssl_verifies(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (OpenSSLInvalidSignature, ValueError):
        return False
    return True


# --- Wycheproof ----------------------------------------------------------------------------


def test_wycheproof_file_is_complete() -> None:
    data = _load("ed25519_test.json")
    if data is None:
        pytest.skip("no Wycheproof vectors")
    cases = [case for group in data["testGroups"] for case in group["tests"]]
    assert len(cases) == data["numberOfTests"] == len(_wycheproof_params())
    assert {case["result"] for case in cases} <= {"valid", "invalid"}  # no "acceptable" here


@pytest.mark.parametrize(("public_key", "case"), _wycheproof_params())
def test_wycheproof_case(public_key: str, case: dict[str, Any]) -> None:
    raw = bytes.fromhex(public_key)
    did = did_from_public_key(raw)
    assert public_key_from_did(did) == raw
    signature, message = bytes.fromhex(case["sig"]), bytes.fromhex(case["msg"])
    assert _verifies(did, signature, message) is (case["result"] == "valid"), case["comment"]
    # The reference gets every case right too, so the two agree on all of them.
    assert _openssl_verifies(raw, signature, message) is (case["result"] == "valid")


# --- RFC 8032 section 7.1 ------------------------------------------------------------------


@pytest.mark.parametrize("vector", _rfc8032_params())
def test_rfc8032_vector(vector: dict[str, str]) -> None:
    private_key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["secret_key"]))
    public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    message, signature = bytes.fromhex(vector["message"]), bytes.fromhex(vector["signature"])

    assert public_key.hex() == vector["public_key"]
    did = did_of(private_key)
    assert did == did_from_public_key(bytes.fromhex(vector["public_key"]))
    assert private_key.sign(message) == signature  # deterministic: byte-equal
    assert _verifies(did, signature, message)
    # The signature survives its wire form (base64url, no padding, 86 characters).
    assert len(b64url(signature)) == 86
    assert b64url_decode(b64url(signature)) == signature


@pytest.mark.parametrize("vector", _rfc8032_params())
def test_rfc8032_tampering_fails(vector: dict[str, str]) -> None:
    did = did_from_public_key(bytes.fromhex(vector["public_key"]))
    message, signature = bytes.fromhex(vector["message"]), bytes.fromhex(vector["signature"])
    for bit in range(len(signature) * 8):
        flipped = bytearray(signature)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not _verifies(did, bytes(flipped), message), f"signature bit {bit}"
    assert not _verifies(did, signature, message + b"\0")
    if message:
        assert not _verifies(did, signature, message[:-1])
        assert not _verifies(did, signature, bytes([message[0] ^ 1]) + message[1:])
    assert not _verifies(did, signature[:63], message)
    assert not _verifies(did, signature + b"\0", message)
    other = did_from_public_key(
        bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
    )
    if other != did:
        assert not _verifies(other, signature, message)


# --- stricter than OpenSSL, never looser --------------------------------------------------

# Encodings of the points of order 1, 2, 4 and 8 (including the non-canonical
# sign-bit variants), as listed in libsodium's blocklist and in "Taming the many
# EdDSAs" (Chalkias et al., 2020).
SMALL_ORDER_POINTS = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
]
IDENTITY = bytes.fromhex(SMALL_ORDER_POINTS[0])


@pytest.mark.parametrize("point", SMALL_ORDER_POINTS)
def test_small_order_keys_prove_nothing_and_are_refused(point: str) -> None:
    # With a small-order key A, the "signature" (R = identity, S = 0) satisfies
    # the cofactorless equation SB = R + hA whenever h is a multiple of A's
    # order — for one message in eight at worst, without any private key.
    public_key = bytes.fromhex(point)
    forged = IDENTITY + bytes(32)
    messages = [f"any message {i}".encode() for i in range(200)]
    accepted_by_openssl = [m for m in messages if _openssl_verifies(public_key, forged, m)]
    assert accepted_by_openssl, "OpenSSL refused every forgery: the premise changed"
    for message in accepted_by_openssl:
        assert not Verifier(public_key).is_valid(forged, message)


@pytest.mark.parametrize(("public_key", "case"), _wycheproof_params())
def test_we_accept_nothing_openssl_refuses(public_key: str, case: dict[str, Any]) -> None:
    # An event we log must verify for an outside auditor using another library.
    raw = bytes.fromhex(public_key)
    for signature, message in _variants(bytes.fromhex(case["sig"]), bytes.fromhex(case["msg"])):
        if Verifier(raw).is_valid(signature, message):
            assert _openssl_verifies(raw, signature, message)


def _variants(signature: bytes, message: bytes) -> list[tuple[bytes, bytes]]:
    """The case itself, and R or S swapped for edge values (small order, S = 0, S ≥ L)."""
    order = (2**252 + 27742317777372353535851937790883648493).to_bytes(32, "little")
    out = [(signature, message)]
    for point in SMALL_ORDER_POINTS:
        out.append((bytes.fromhex(point) + signature[32:], message))
    for s in (bytes(32), order, (int.from_bytes(order, "little") + 1).to_bytes(32, "little")):
        out.append((signature[:32] + s, message))
    return out


def test_verifier_refuses_wrong_lengths() -> None:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    signature = key.sign(b"m")
    verifier = Verifier(raw)
    verifier.verify(signature, b"m")
    # A short signature must not borrow bytes from the message.
    with pytest.raises(InvalidSignature, match="64 bytes"):
        verifier.verify(signature[:63], signature[63:] + b"m")
    with pytest.raises(InvalidSignature):
        verifier.verify(signature + b"m", b"")
    for bad in (raw[:31], raw + b"\0", "not bytes"):
        with pytest.raises(ValueError, match="32 bytes"):
            Verifier(bad)  # type: ignore[arg-type]


# --- vendored copies ----------------------------------------------------------------------


def test_vendored_vectors_are_unedited() -> None:
    folder = VENDORED / VECTORS
    listed = re.findall(r"^([0-9a-f]{64})  (\S+)$", (folder / "ATTRIBUTION.md").read_text(), re.M)
    files = {p.name for p in folder.iterdir() if p.is_file()} - {"ATTRIBUTION.md"}
    assert {name for _, name in listed} == files
    for digest, name in listed:
        data = (folder / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
        if SHARED.exists():
            assert (SHARED / VECTORS / name).read_bytes() == data, name


def test_vendored_folder_has_attribution() -> None:
    text = (VENDORED / VECTORS / "ATTRIBUTION.md").read_text()
    assert "https://github.com/C2SP/wycheproof" in text
    assert "Apache-2.0" in text
    assert "dac1dd4729fd1f8dd9e1e9f3dce51d783da6c166" in text


def test_small_order_keys_cannot_be_enrolled() -> None:
    from provenance.core.ed25519 import is_usable_public_key
    from provenance.core.errors import ValidationError
    from provenance.core.signing import sign

    registrar = Ed25519PrivateKey.generate()

    def enrol(public_key: bytes) -> None:
        subject = did_from_public_key(public_key)
        data = {"subject": subject, "type": "device", "name": "p", "owner": did_of(registrar)}
        sign(registrar, kind="enrol", seq=1, time="2026-11-23T00:00:00Z", data=data)

    real = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert is_usable_public_key(real)
    enrol(real)
    for point in SMALL_ORDER_POINTS:
        assert not is_usable_public_key(bytes.fromhex(point))
        with pytest.raises(ValidationError, match="not a usable Ed25519 public key"):
            enrol(bytes.fromhex(point))
