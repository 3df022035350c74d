"""Per-subject hash chains and the heads tree (DESIGN §4)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provenance.core import chain
from provenance.core.errors import VerificationError
from provenance.core.heads import CREATION, HeadsLine, parse_heads_line
from provenance.core.merkle import MemoryTree, hash_leaf, verify_inclusion

LOT = "https://id.gs1.org/01/09506000134352/10/LOT42"
DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
ids = st.lists(st.binary(min_size=32, max_size=32), max_size=100)


def test_genesis_links_are_domain_separated():
    assert chain.genesis_link(LOT) == hashlib.sha256(b"provenance/v1/batch" + LOT.encode()).digest()
    assert (
        chain.genesis_link(DID) == hashlib.sha256(b"provenance/v1/identity" + DID.encode()).digest()
    )
    assert chain.genesis_link(LOT) != chain.genesis_link(LOT + "x")


def test_known_answer_for_one_link():
    event_id = bytes(range(32))
    expected = hashlib.sha256(chain.genesis_link(LOT) + event_id).digest()
    assert chain.head_of(LOT, [event_id]) == (expected, 1)


@given(ids)
def test_head_is_the_fold_of_next_link(event_ids):
    link = chain.genesis_link(LOT)
    for event_id in event_ids:
        link = chain.next_link(link, event_id)
    assert chain.head_of(LOT, event_ids) == (link, len(event_ids))


@given(ids.filter(lambda x: len(x) >= 1), st.data())
def test_any_bit_flip_removal_or_swap_changes_the_head(event_ids, data):
    head = chain.head_of(LOT, event_ids)
    position = data.draw(st.integers(0, len(event_ids) - 1))
    bit = data.draw(st.integers(0, 255))
    flipped = list(event_ids)
    flipped[position] = bytes(
        b ^ (1 << (bit % 8)) if i == bit // 8 else b for i, b in enumerate(flipped[position])
    )
    assert chain.head_of(LOT, flipped) != head
    removed = event_ids[:position] + event_ids[position + 1 :]
    assert chain.head_of(LOT, removed) != head
    if len(event_ids) > 1 and event_ids[0] != event_ids[-1]:
        swapped = [event_ids[-1], *event_ids[1:-1], event_ids[0]]
        assert chain.head_of(LOT, swapped) != head


@pytest.mark.parametrize("size", range(1, 40))
def test_every_head_is_provable_in_the_heads_tree(size):
    heads = [chain.head_of(f"{LOT}{i}", [bytes([i]) * 32]) for i in range(size)]
    tree = MemoryTree([chain.head_leaf(f"{LOT}{i}", n, h) for i, (h, n) in enumerate(heads)])
    for i, (head, length) in enumerate(heads):
        leaf = chain.head_leaf(f"{LOT}{i}", length, head)
        verify_inclusion(i, size, leaf, tree.inclusion_proof(i), tree.root())
        shorter = chain.head_leaf(f"{LOT}{i}", length - 1, head)  # a chain with one event less
        with pytest.raises(VerificationError):
            verify_inclusion(i, size, shorter, tree.inclusion_proof(i), tree.root())


def test_head_leaf_binds_subject_length_and_head():
    head = bytes(32)
    leaf = chain.head_leaf(LOT, 3, head)
    assert leaf == hash_leaf(f"{LOT}\n3\n{head.hex()}".encode())
    assert leaf not in {
        chain.head_leaf(LOT + "1", 3, head),
        chain.head_leaf(LOT, 4, head),
        chain.head_leaf(LOT, 3, b"\1" * 32),
    }


def test_heads_extension_round_trip_and_errors():
    """The first rule's line, as old checkpoints carry it (parse_heads_line reads both)."""
    root = bytes(range(32))
    line = HeadsLine(CREATION, 7, root).to_text()
    assert parse_heads_line(["other line", line]) == HeadsLine(CREATION, 7, root)
    with pytest.raises(VerificationError, match="no provenance-heads line"):
        parse_heads_line(["x y z"])
    with pytest.raises(VerificationError, match="malformed"):
        parse_heads_line(["provenance-heads seven AAAA"])
    with pytest.raises(VerificationError, match="not base64"):
        parse_heads_line(["provenance-heads 7 !!!!"])
    with pytest.raises(VerificationError, match="not 32 bytes"):
        parse_heads_line(["provenance-heads 7 AAAA"])
