"""C2SP tlog-proof (provenance.core.tlog_proof): written and read strictly.

Go's reading of the same texts is in tests/test_go_reference.py
(test_go_and_we_agree_on_the_bundles_tlog_proofs)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from provenance.core.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from provenance.core.errors import ValidationError
from provenance.core.merkle import MemoryTree, hash_leaf
from provenance.core.tlog_proof import (
    HEADER,
    TlogProof,
    TlogProofError,
    format_tlog_proof,
    parse_tlog_proof,
    verify_tlog_proof,
)

KEY = Ed25519PrivateKey.generate()
ORIGIN = "example.com/tlog-proof-test"
LEAVES = [hash_leaf(bytes([i])) for i in range(11)]
TREE = MemoryTree(LEAVES)
CHECKPOINT = Checkpoint(
    ORIGIN, TREE.size, TREE.root(), ("provenance-heads/v2 1 " + "A" * 43 + "=",)
)
NOTE = sign_checkpoint(CHECKPOINT, ORIGIN, KEY)
PUBLIC = KEY.public_key().public_bytes_raw()


def proof_text(index: int = 5, **kwargs) -> str:
    return format_tlog_proof(index, TREE.inclusion_proof(index), NOTE, **kwargs)


def test_the_text_is_the_spec_s_example_shape():
    text = proof_text(5, extra=b"lot 42")
    lines = text.split("\n")
    assert lines[0] == HEADER == "c2sp.org/tlog-proof@v1"
    assert lines[1] == "extra bG90IDQy"
    assert lines[2] == "index 5"
    hashes = len(TREE.inclusion_proof(5))
    assert lines[3 + hashes] == ""
    assert "\n".join(lines[4 + hashes :]) == NOTE


@given(st.integers(0, len(LEAVES) - 1), st.one_of(st.none(), st.binary(min_size=1, max_size=40)))
def test_round_trip_and_every_leaf_verifies(index: int, extra: bytes | None):
    text = proof_text(index, extra=extra)
    proof = parse_tlog_proof(text)
    assert (proof.index, proof.extra, proof.checkpoint) == (index, extra, NOTE)
    assert proof.to_text() == text
    verify_tlog_proof(proof, LEAVES[index], open_checkpoint(proof.checkpoint, ORIGIN, PUBLIC))


def test_a_wrong_leaf_index_or_hash_is_refused():
    checkpoint = open_checkpoint(NOTE, ORIGIN, PUBLIC)
    proof = parse_tlog_proof(proof_text(5))
    with pytest.raises(TlogProofError, match="leaf 5 is not in the log as signed"):
        verify_tlog_proof(proof, LEAVES[6], checkpoint)
    moved = TlogProof(6, proof.proof, NOTE)
    with pytest.raises(TlogProofError, match="not in the log as signed"):
        verify_tlog_proof(moved, LEAVES[5], checkpoint)
    beyond = TlogProof(11, proof.proof, NOTE)
    with pytest.raises(TlogProofError, match="beyond its checkpoint"):
        verify_tlog_proof(beyond, LEAVES[5], checkpoint)
    for i in range(len(proof.proof)):
        hashes = list(proof.proof)
        hashes[i] = bytes([hashes[i][0] ^ 1]) + hashes[i][1:]
        with pytest.raises(TlogProofError):
            verify_tlog_proof(TlogProof(5, tuple(hashes), NOTE), LEAVES[5], checkpoint)


GOOD = proof_text(5)
HASH = GOOD.split("\n")[2]
BAD = {
    "no header": GOOD.replace(HEADER + "\n", "", 1),
    "another version": GOOD.replace("@v1", "@v2", 1),
    "CR LF": GOOD.replace("\n", "\r\n"),
    "leading zero": GOOD.replace("index 5", "index 05"),
    "signed index": GOOD.replace("index 5", "index +5"),
    "no index": GOOD.replace("index 5\n", ""),
    "index too big": GOOD.replace("index 5", f"index {2**64}"),
    "empty extra": GOOD.replace("index 5", "extra \nindex 5"),
    "extra after index": GOOD.replace("index 5", "index 5\nextra AAAA"),
    "non-canonical base64": GOOD.replace(HASH, HASH[:-2] + "B="),
    "short hash": GOOD.replace(HASH, "AAAA"),
    "url-safe base64": GOOD.replace(HASH, HASH.replace("+", "-").replace("/", "_"))
    if ("+" in HASH or "/" in HASH)
    else GOOD.replace(HASH, HASH + "\n-"),
    "no empty line": GOOD.replace("\n\n", "\n", 1),
    "no checkpoint signatures": GOOD.split("\n\n")[0] + "\n\n" + NOTE.split("\n\n")[0] + "\n",
}


@pytest.mark.parametrize("text", BAD.values(), ids=BAD.keys())
def test_malformed_proofs_are_refused(text: str):
    with pytest.raises(TlogProofError):
        parse_tlog_proof(text)


def test_writing_refuses_what_could_not_be_read():
    with pytest.raises(ValidationError):
        format_tlog_proof(-1, [], NOTE)
    with pytest.raises(ValidationError):
        format_tlog_proof(1, [b"short"], NOTE)
    with pytest.raises(ValidationError):
        format_tlog_proof(1, [], NOTE.rstrip("\n"))
    with pytest.raises(ValidationError):
        format_tlog_proof(1, [], NOTE, extra=b"")
