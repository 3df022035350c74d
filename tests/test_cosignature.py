"""C2SP tlog-cosignature/v1 (type 0x04): key ids, vkeys, the signed message, lines.

Known answers come from the spec text (../shared/specs/c2sp/tlog-cosignature.md);
tests/test_go_reference.py checks the same against a Go implementation written
from the spec with crypto/ed25519.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.checkpoint import Checkpoint, format_verifier_key, sign_checkpoint
from provenance.core.cosignature import (
    Cosignature,
    CosignatureError,
    cosign,
    cosigned_message,
    cosigner_key_id,
    format_cosigner_key,
    parse_cosignature_line,
    parse_cosigner_key,
    verify_cosignature,
)
from provenance.core.errors import ValidationError, VerificationError

SEED = bytes(range(32))
KEY = Ed25519PrivateKey.from_private_bytes(SEED)
PUBLIC = KEY.public_key().public_bytes_raw()
NAME = "witness.example.com/w1"
# The spec's examples: the checkpoint, and the cosigned message for time 1679315147.
SPEC_CHECKPOINT = Checkpoint(
    "example.com/behind-the-sofa",
    20852163,
    base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="),
)
SPEC_MESSAGE = (
    "cosignature/v1\n"
    "time 1679315147\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
SPEC_LINE = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJs"
    "X3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)


def test_the_signed_message_is_the_specs_example():
    assert cosigned_message(SPEC_CHECKPOINT, 1679315147) == SPEC_MESSAGE.encode()


def test_the_specs_example_line_parses_to_its_timestamp():
    """The example cosignature in the spec is dated 1679315147, the time in the
    spec's example message: 4-byte key id, 8-byte big-endian time, 64-byte signature."""
    sig = parse_cosignature_line(SPEC_LINE)
    assert sig.name == NAME
    assert sig.timestamp == 1679315147
    assert sig.key_id == bytes.fromhex("8d66cf3f")
    assert len(sig.signature) == 64
    assert sig.to_line() == SPEC_LINE + "\n"


def test_key_id_is_sha256_of_name_newline_0x04_key():
    want = hashlib.sha256(NAME.encode() + b"\n\x04" + PUBLIC).digest()[:4]
    assert cosigner_key_id(NAME, PUBLIC) == want
    # Not the note key id of the same key (type 0x01): the two never collide.
    assert format_verifier_key(NAME, PUBLIC).split("+", 2)[1] != want.hex()


def test_vkey_round_trip_and_refusals():
    vkey = format_cosigner_key(NAME, PUBLIC)
    name, kid, key = vkey.split("+", 2)
    assert (name, kid) == (NAME, cosigner_key_id(NAME, PUBLIC).hex())
    assert base64.b64decode(key) == b"\x04" + PUBLIC
    assert parse_cosigner_key(vkey) == (NAME, PUBLIC)
    assert parse_cosigner_key(f"{NAME}+{kid.upper()}+{key}\n") == (NAME, PUBLIC)
    short = base64.b64encode(b"\x04" + PUBLIC[:31]).decode()
    bad = {
        "a note key (0x01)": format_verifier_key(NAME, PUBLIC),
        "wrong key id": f"{NAME}+00000000+{key}",
        "no plus": NAME,
        "short key": f"{NAME}+{kid}+{short}",
        "bad base64": f"{NAME}+{kid}+{key[:-1]}",
        "space in name": f"a b+{kid}+{key}",
    }
    for desc, text in bad.items():
        with pytest.raises(ValidationError):
            parse_cosigner_key(text)
        assert desc


def test_sign_and_verify():
    line = cosign(SPEC_CHECKPOINT, NAME, KEY, 1679315147)
    assert line.startswith(f"— {NAME} ") and line.endswith("\n")
    raw = base64.b64decode(line.split(" ")[2])
    assert raw[:4] == cosigner_key_id(NAME, PUBLIC)
    assert struct.unpack(">Q", raw[4:12]) == (1679315147,)
    KEY.public_key().verify(raw[12:], SPEC_MESSAGE.encode())  # plain Ed25519 over the message
    assert verify_cosignature(SPEC_CHECKPOINT, line, NAME, PUBLIC) == 1679315147
    assert verify_cosignature(SPEC_CHECKPOINT.to_text(), line, NAME, PUBLIC) == 1679315147


def test_extension_lines_are_signed():
    cp = Checkpoint(SPEC_CHECKPOINT.origin, 5, bytes(32), ("heads 3 abc",))
    line = cosign(cp, NAME, KEY, 7)
    verify_cosignature(cp, line, NAME, PUBLIC)
    with pytest.raises(CosignatureError):
        verify_cosignature(
            Checkpoint(cp.origin, 5, bytes(32), ("heads 4 abc",)), line, NAME, PUBLIC
        )


def test_every_bit_flip_fails():
    line = cosign(SPEC_CHECKPOINT, NAME, KEY, 1679315147)
    raw = base64.b64decode(line.split(" ")[2])
    for bit in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        forged = f"— {NAME} {base64.b64encode(bytes(flipped)).decode()}\n"
        with pytest.raises(VerificationError):
            verify_cosignature(SPEC_CHECKPOINT, forged, NAME, PUBLIC)


def test_another_checkpoint_time_key_or_name_fails():
    line = cosign(SPEC_CHECKPOINT, NAME, KEY, 1679315147)
    other = Checkpoint(SPEC_CHECKPOINT.origin, SPEC_CHECKPOINT.size + 1, SPEC_CHECKPOINT.root_hash)
    with pytest.raises(CosignatureError, match="does not verify"):
        verify_cosignature(other, line, NAME, PUBLIC)
    stranger = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(CosignatureError, match="not by"):
        verify_cosignature(SPEC_CHECKPOINT, line, NAME, stranger)
    with pytest.raises(CosignatureError, match="not by"):
        verify_cosignature(SPEC_CHECKPOINT, line, "witness.example.com/w2", PUBLIC)
    with pytest.raises(CosignatureError, match="after now"):
        verify_cosignature(SPEC_CHECKPOINT, line, NAME, PUBLIC, now=1679315146)
    assert verify_cosignature(SPEC_CHECKPOINT, line, NAME, PUBLIC, now=1679315147)


def test_a_log_signature_is_not_a_cosignature():
    """The log's own 0x01 signature by the same key is not accepted as a cosignature
    (different key id, different length, different message)."""
    note = sign_checkpoint(SPEC_CHECKPOINT, NAME, KEY)
    line = note.rstrip("\n").rpartition("\n")[2]
    with pytest.raises(CosignatureError):
        verify_cosignature(SPEC_CHECKPOINT, line, NAME, PUBLIC)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "- witness.example.com/w1 AAAA",
        "— witness.example.com/w1",
        "— witness.example.com/w1 ",
        "— witness.example.com/w1 !!!!",
        "— witness.example.com/w1 " + base64.b64encode(bytes(75)).decode(),
        "— witness.example.com/w1 " + base64.b64encode(bytes(77)).decode(),
        "— witness.example.com/w1 " + base64.b64encode(bytes(4) + b"\xff" * 8 + bytes(64)).decode(),
        "— a+b " + base64.b64encode(bytes(76)).decode(),
        "— w1 x\n— w2 y",
    ],
)
def test_malformed_lines_are_refused(line):
    with pytest.raises(CosignatureError):
        parse_cosignature_line(line)
    with pytest.raises(VerificationError):
        verify_cosignature(SPEC_CHECKPOINT, line, NAME, PUBLIC)


def test_timestamp_bounds():
    with pytest.raises(ValidationError):
        cosign(SPEC_CHECKPOINT, NAME, KEY, 0)
    with pytest.raises(ValidationError):
        cosign(SPEC_CHECKPOINT, NAME, KEY, 2**63)
    line = cosign(SPEC_CHECKPOINT, NAME, KEY, 2**63 - 1)
    assert parse_cosignature_line(line).timestamp == 2**63 - 1
    zero = Cosignature(NAME, cosigner_key_id(NAME, PUBLIC), 0, KEY.sign(b"x"))
    with pytest.raises(CosignatureError, match="timestamp 0"):
        verify_cosignature(SPEC_CHECKPOINT, zero, NAME, PUBLIC)
