"""provenance.core.identity: Ed25519 public keys as W3C did:key identifiers.

did:key for Ed25519 = "did:key:z" + base58btc(0xed 0x01 ‖ 32-byte key). The
known answers are checked against a base58btc encoder written here with another
algorithm (byte-wise carry, as in Bitcoin Core), not against the module's own.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.core.errors import ValidationError
from provenance.core.identity import (
    DID_KEY_PREFIX,
    ED25519_MULTICODEC,
    b58decode,
    b58encode,
    did_from_public_key,
    is_did_key,
    public_key_from_did,
    verifier_for,
)

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

# RFC 8032 section 7.1 TEST 1 public key, and its did:key (also the first example
# key of the W3C did:key test suite).
RFC8032_TEST1_PUBLIC = bytes.fromhex(
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
)
RFC8032_TEST1_DID = "did:key:z6MktwupdmLXVVqTzCw4i46r4uGyosGXRnR3XjN4Zq7oMMsw"


def reference_b58encode(data: bytes) -> str:
    """base58btc by repeated carry over little-endian base-58 digits."""
    digits: list[int] = []
    for byte in data:
        carry = byte
        for index, digit in enumerate(digits):
            carry += digit << 8
            digits[index], carry = carry % 58, carry // 58
        while carry:
            digits.append(carry % 58)
            carry //= 58
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(ALPHABET[d] for d in reversed(digits))


def reference_did(public_key: bytes) -> str:
    return "did:key:z" + reference_b58encode(b"\xed\x01" + public_key)


def _rejects(did: object, field: str = "did") -> ValidationError:
    with pytest.raises(ValidationError) as info:
        public_key_from_did(did, field)  # type: ignore[arg-type]
    assert not is_did_key(did)
    return info.value


# --- known answers -------------------------------------------------------------------------


def test_reference_encoder_known_answers() -> None:
    # Bitcoin wiki / draft-msporny-base58 examples.
    assert reference_b58encode(b"Hello World!") == "2NEpo7TZRRrLZSi2U"
    assert reference_b58encode(b"The quick brown fox jumps over the lazy dog.") == (
        "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z"
    )
    assert reference_b58encode(bytes.fromhex("0000287fb4cd")) == "11233QC4"
    assert reference_b58encode(b"") == ""


def test_rfc8032_test1_did_known_answer() -> None:
    assert reference_did(RFC8032_TEST1_PUBLIC) == RFC8032_TEST1_DID
    assert did_from_public_key(RFC8032_TEST1_PUBLIC) == RFC8032_TEST1_DID
    assert public_key_from_did(RFC8032_TEST1_DID) == RFC8032_TEST1_PUBLIC
    assert is_did_key(RFC8032_TEST1_DID)


@pytest.mark.parametrize(
    "public_key", [bytes(32), b"\xff" * 32, b"\x00" * 31 + b"\x01", bytes(range(32))]
)
def test_edge_keys_round_trip(public_key: bytes) -> None:
    did = did_from_public_key(public_key)
    assert did == reference_did(public_key)
    assert public_key_from_did(did) == public_key


# --- round trips ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_did_key_round_trip(public_key: bytes) -> None:
    did = did_from_public_key(public_key)
    assert did == reference_did(public_key)
    assert did.startswith("did:key:z6Mk")
    assert len(did) == 56
    assert public_key_from_did(did) == public_key
    assert is_did_key(did)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_b58_round_trip(data: bytes) -> None:
    text = b58encode(data)
    assert text == reference_b58encode(data)
    assert b58decode(text) == data


def test_verifier_for_returns_the_key_of_the_did() -> None:
    key = verifier_for(RFC8032_TEST1_DID)
    assert key.public_key == RFC8032_TEST1_PUBLIC
    assert verifier_for(RFC8032_TEST1_DID) is key  # cached


# --- rejections ----------------------------------------------------------------------------

BODY = RFC8032_TEST1_DID[len("did:key:z") :]


@pytest.mark.parametrize(
    "did",
    [
        "did:key:" + BODY,  # no multibase prefix
        "did:key:Z" + BODY,
        "did:key:u" + BODY,  # base64url multibase
        "did:web:example.com",
        "DID:key:z" + BODY,
        "did:KEY:z" + BODY,
        " did:key:z" + BODY,
        "key:z" + BODY,
        BODY,
        "",
        None,
        42,
        b"did:key:z" + BODY.encode(),
    ],
    ids=[
        "no-z",
        "capital-Z",
        "base64url",
        "did-web",
        "upper-DID",
        "upper-KEY",
        "leading-space",
        "no-did",
        "bare",
        "empty",
        "None",
        "int",
        "bytes",
    ],
)
def test_rejects_wrong_prefix(did: object) -> None:
    error = _rejects(did, "signer")
    assert error.field == "signer"
    assert str(error) == "signer: must be an Ed25519 did:key (did:key:z6Mk…)"


@pytest.mark.parametrize(
    "multicodec",
    [b"\xec\x01", b"\xe7\x01", b"\x12\x00", b"\x01\xed", b"\xed\x00", b"\xed", b""],
    ids=["x25519", "secp256k1", "0x1200", "swapped", "ed00", "one-byte", "none"],
)
def test_rejects_wrong_multicodec(multicodec: bytes) -> None:
    did = DID_KEY_PREFIX + b58encode(multicodec + RFC8032_TEST1_PUBLIC)
    error = _rejects(did)
    assert error.rule.startswith("must be an Ed25519 did:key (multicodec 0xed01, 32-byte key)")


@pytest.mark.parametrize("length", [0, 1, 16, 31, 33, 64])
def test_rejects_wrong_key_length(length: int) -> None:
    did = DID_KEY_PREFIX + b58encode(ED25519_MULTICODEC + bytes(range(length)))
    error = _rejects(did)
    assert "32-byte key" in error.rule


def test_did_from_public_key_rejects_wrong_length() -> None:
    for length in (0, 31, 33, 64):
        with pytest.raises(ValidationError, match=f"Ed25519 keys are 32 bytes, got {length}"):
            did_from_public_key(bytes(length))


@pytest.mark.parametrize("leading", ["1", "11", "1111"])
def test_rejects_leading_ones(leading: str) -> None:
    # A leading '1' is a leading zero byte: 0x00 0xed 0x01 … is not the Ed25519 multicodec,
    # and the canonical encoding of the same bytes is different text.
    did = DID_KEY_PREFIX + leading + BODY
    assert b58decode(leading + BODY) == b"\0" * len(leading) + ED25519_MULTICODEC + (
        RFC8032_TEST1_PUBLIC
    )
    _rejects(did)


@pytest.mark.parametrize(
    "char",
    ["0", "O", "I", "l", "+", "/", "=", "-", "_", " ", "\n", "é", "６", "\x00"],
)
def test_rejects_characters_outside_base58btc(char: str) -> None:
    for position in (0, 10, len(BODY) - 1):
        did = DID_KEY_PREFIX + BODY[:position] + char + BODY[position + 1 :]
        error = _rejects(did, "data.to")
        assert error.field == "data.to"
        assert error.rule == f"bad did:key encoding: {char!r} is not a base58btc character"


@pytest.mark.parametrize("suffix", ["\n", " ", "1", "z", "#key-1", "?x=1"])
def test_rejects_trailing_text(suffix: str) -> None:
    _rejects(RFC8032_TEST1_DID + suffix)


def test_rejects_a_truncated_did() -> None:
    for cut in range(1, len(BODY)):
        _rejects(RFC8032_TEST1_DID[:-cut])


@pytest.mark.parametrize("did", [["did:key:z"], {"did": 1}, {1, 2}])
def test_rejects_unhashable_values_with_validation_error(did: object) -> None:
    with pytest.raises(ValidationError, match="signer: must be an Ed25519 did:key"):
        public_key_from_did(did, "signer")  # type: ignore[arg-type]


def test_long_did_is_rejected_quickly() -> None:
    did = DID_KEY_PREFIX + "2" * 30_000  # ~0.2 s to decode; microseconds with a length check
    started = time.perf_counter()
    with pytest.raises(ValidationError):
        public_key_from_did(did, "signer")
    assert time.perf_counter() - started < 0.01
