"""The sorted heads tree (provenance.core.heads) and what it buys a bundle:
no second chain for a lot (docs/protocol.md §6–§7).

The attacker here is the operator: it holds the log key and can sign any
checkpoint. It wants to hand a shopper a recall-free chain for a recalled lot.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.world import GTIN, LOT, World, at

from provenance.core import chain as chains
from provenance.core.bundle import verify_bundle
from provenance.core.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from provenance.core.errors import VerificationError
from provenance.core.heads import (
    CREATION,
    SORTED,
    HeadsLine,
    SortedHeads,
    audit_heads,
    chain_key,
    check_rule_boundary,
    creation_order_root,
    parse_heads_line,
    sorted_entry,
)
from provenance.core.merkle import MemoryTree, ReadOnce, hash_leaf, inclusion_proof
from provenance.core.tlog_proof import format_tlog_proof, parse_tlog_proof
from provenance.ledger.audit import verify_ledger
from provenance.ledger.proofs import build_bundle
from provenance.store.db import Store
from provenance.store.migrations import SORTED_HEADS_FROM


def b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def recalled(tmp_path_factory) -> World:
    world = World.create(tmp_path_factory.mktemp("heads"))
    world.ok("regulator", "inspect", [LOT], {"result": "pass"}, time=at(2))
    world.ok("regulator", "recall", [LOT], {"reason": "Listeria found", "class": "I"}, time=at(3))
    for n in range(12):  # chains the lot's bundle does not carry
        lot = f"OTHER{n}"
        data = {"gtin": GTIN, "lot": lot, "product": "Kale"}
        world.ok("farm", "commission", [f"https://id.gs1.org/01/{GTIN}/10/{lot}"], data, time=at(1))
    return world


def rows_of(store: Store) -> list[tuple[str, int, bytes]]:
    return [(subject, length, head) for _, subject, head, length in store.chains()]


# --- the tree itself ----------------------------------------------------------------------------


@given(st.lists(st.tuples(st.text(min_size=1, max_size=8), st.integers(0, 9)), max_size=30))
def test_sorted_heads_kept_up_to_date_equals_built_from_scratch(puts):
    live = SortedHeads()
    latest: dict[str, tuple[int, bytes]] = {}
    for subject, length in puts:
        head = bytes([length]) * 32
        live.put(subject, length, head)
        latest[subject] = (length, head)
        whole = SortedHeads.of((s, n, h) for s, (n, h) in latest.items())
        assert (live.size, live.root()) == (whole.size, whole.root())
        naive = MemoryTree(hash_leaf(live.entry(i)) for i in range(live.size))
        assert naive.root() == live.root()
        position = live.position(subject)
        assert live.inclusion_proof(position) == naive.inclusion_proof(position)
    keys = [live.entry(i)[:32] for i in range(live.size)]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for subject in latest:
        assert live.entry(live.position(subject))[:32] == chain_key(subject)


def test_a_subject_twice_is_refused():
    with pytest.raises(VerificationError, match="two chains for lot-a"):
        SortedHeads.of([("lot-a", 1, bytes(32)), ("lot-b", 1, bytes(32)), ("lot-a", 2, bytes(32))])


def test_heads_lines_parse_strictly():
    root = b64(bytes(range(32)))
    assert parse_heads_line(["x", f"{SORTED} 3 {root}"]) == HeadsLine(SORTED, 3, bytes(range(32)))
    assert parse_heads_line([f"{CREATION} 3 {root}"]).rule == CREATION
    for bad in (
        [],
        [f"{SORTED} 03 {root}"],
        [f"{SORTED} 3 {root} x"],
        [f"{SORTED} ３ {root}"],
        [f"{SORTED} 3 AAAA"],
        [f"{SORTED} 3 {root}", f"{CREATION} 3 {root}"],
    ):
        with pytest.raises(VerificationError):
            parse_heads_line(bad)


def test_the_ledger_signs_the_sorted_rule(recalled: World):
    note = recalled.store.latest_checkpoint()
    line = parse_heads_line(Checkpoint.from_text(note.split("\n\n")[0] + "\n").extensions)
    assert line == SortedHeads.of(rows_of(recalled.store)).line()
    assert recalled.store.get_meta(SORTED_HEADS_FROM) == "0"


# --- the attack: a second, recall-free chain for the lot ---------------------------------------


def forged_bundle(world: World, *, adjacent: bool) -> tuple[dict[str, Any], Checkpoint]:
    """The operator's best try: a heads tree holding the real chain of LOT and a
    second one without the recall, a checkpoint over it signed with the log key
    (same log, same size and root), and a bundle of the recall-free chain, every
    proof genuine for that tree. With ``adjacent``, the tree stays sorted (the two
    leaves of LOT side by side); without, the forged leaf goes where its
    neighbours look right, and the tree is not sorted."""
    store = world.store
    bundle = build_bundle(store, LOT)
    real = Checkpoint.from_text(bundle["checkpoint"].split("\n\n")[0] + "\n")
    lot = bundle["chains"][0]
    assert lot["subject"] == LOT and lot["events"][-1]["envelope"]["kind"] == "recall"
    lot["events"].pop()
    ids = [bytes.fromhex(e["id"]) for e in (store_event(store, i["index"]) for i in lot["events"])]
    head, length = chains.head_of(LOT, ids)
    rows = rows_of(store)
    entries = sorted(sorted_entry(chain_key(s), n, h) for s, n, h in rows)
    forged = sorted_entry(chain_key(LOT), length, head)
    real_at = next(i for i, e in enumerate(entries) if e[:32] == chain_key(LOT))
    if adjacent:
        at_ = real_at + 1
        entries.insert(at_, forged)
    else:  # the forged leaf in the real one's place, the real one moved between two
        # leaves of chains the bundle does not carry, where no check of it looks
        at_, genuine = real_at, entries[real_at]
        entries[real_at] = forged
        carried = {chain_key(c["subject"]) for c in bundle["chains"]}
        slot = next(
            j
            for j in range(1, len(entries))
            if entries[j - 1][:32] not in carried and entries[j][:32] not in carried
        )
        entries.insert(slot, genuine)
        at_ += slot <= at_
    tree = MemoryTree(hash_leaf(e) for e in entries)
    line = HeadsLine(SORTED, tree.size, tree.root())
    checkpoint = Checkpoint(real.origin, real.size, real.root_hash, (line.to_text(),))
    note = sign_checkpoint(checkpoint, real.origin, world.log_key)
    bundle["checkpoint"] = note
    reader = ReadOnce(store)
    for entry in bundle["chains"]:
        for item in entry["events"]:
            item.pop("proof", None)
            if item is entry["events"][-1] or entry["subject"].startswith("did:"):
                proof = inclusion_proof(reader, item["index"], real.size)
                item["proof"] = format_tlog_proof(item["index"], proof, note)
        key = chain_key(entry["subject"])
        position = at_ if entry is lot else next(i for i, e in enumerate(entries) if e[:32] == key)
        heads: dict[str, Any] = {
            "position": position,
            "proof": [b64(h) for h in tree.inclusion_proof(position)],
        }
        for side, n in (("left", position - 1), ("right", position + 1)):
            if 0 <= n < len(entries):
                heads[side] = {
                    "entry": b64(entries[n]),
                    "proof": [b64(h) for h in tree.inclusion_proof(n)],
                }
        entry["heads"] = heads
    return json.loads(json.dumps(bundle)), checkpoint


def store_event(store: Store, index: int) -> dict[str, str]:
    (event,) = [e for e in store.events() if e.index == index]
    return {"id": event.envelope.event_id}


def test_a_second_chain_for_the_lot_is_refused_by_name(recalled: World):
    bundle, _ = forged_bundle(recalled, adjacent=True)
    with pytest.raises(VerificationError, match=rf"{LOT}: a second chain for this subject"):
        verify_bundle(bundle, recalled.log_public_key)


def test_a_second_chain_without_its_neighbour_is_refused(recalled: World):
    bundle, _ = forged_bundle(recalled, adjacent=True)
    heads = bundle["chains"][0]["heads"]
    side = "left" if heads["position"] > 0 and "left" in heads else "right"
    del heads[side]
    with pytest.raises(VerificationError, match=f"lacks the {side} neighbour"):
        verify_bundle(bundle, recalled.log_public_key)


def test_a_second_chain_out_of_order_is_what_the_audit_catches(recalled: World):
    """Put out of order, the forged chain's own neighbours look right and the
    bundle alone passes — the limit docs/protocol.md §7 states. Any auditor
    rebuilding the heads tree from the log finds the checkpoint's heads root wrong."""
    bundle, checkpoint = forged_bundle(recalled, adjacent=False)
    report = verify_bundle(bundle, recalled.log_public_key)
    assert report.events[-1].kind != "recall"
    problems = audit_heads([checkpoint], 0, rows_of(recalled.store))
    assert any("not sorted" in p for p in problems), problems
    genuine = open_checkpoint(
        recalled.store.latest_checkpoint(), checkpoint.origin, recalled.log_public_key
    )
    assert audit_heads([genuine], 0, rows_of(recalled.store)) == []
    # And next to the genuine checkpoint of the same size, it is a split view.
    with pytest.raises(VerificationError, match="split view"):
        verify_bundle(
            bundle, recalled.log_public_key, checkpoint=recalled.store.latest_checkpoint()
        )


# --- the rule boundary: old checkpoints by the old rule ----------------------------------------


def test_each_checkpoint_is_held_to_the_rule_of_its_size():
    old, new = HeadsLine(CREATION, 1, bytes(32)), HeadsLine(SORTED, 1, bytes(32))
    assert check_rule_boundary([(5, old), (6, new), (9, new)], 5) == []
    assert check_rule_boundary([(5, old), (6, old)], None) == []
    (problem,) = check_rule_boundary([(5, old), (6, new), (7, old)], 5)
    assert "checkpoint at size 7 uses provenance-heads," in problem
    (problem,) = check_rule_boundary([(4, new)], 5)
    assert "checkpoint at size 4 uses provenance-heads/v2" in problem


def copy_db(world: World, path: Path) -> Path:
    source = sqlite3.connect(world.store.path)
    target = sqlite3.connect(path)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return path


def downgrade(path: Path, world: World) -> int:
    """Re-sign the latest checkpoint with the creation-order heads line, as a ledger
    from before the switch would have (the log key signs anything)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        size, note = db.execute(
            "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        body = Checkpoint.from_text(note.split("\n\n")[0] + "\n")
        line = creation_order_root(rows_of(world.store))
        old = Checkpoint(body.origin, body.size, body.root_hash, (line.to_text(),))
        db.execute(
            "UPDATE checkpoints SET note = ? WHERE size = ?",
            (sign_checkpoint(old, body.origin, world.log_key), size),
        )
        return size
    finally:
        db.close()


def test_a_creation_order_checkpoint_after_the_switch_is_reported(recalled: World, tmp_path):
    path = copy_db(recalled, tmp_path / "downgraded.db")
    size = downgrade(path, recalled)
    report = verify_ledger(Store(path), recalled.log_public_key, workers=1)
    text = "\n".join(p.message for p in report.problems)
    assert f"checkpoint at size {size} uses provenance-heads, but" in text


def test_an_old_ledger_s_checkpoint_is_judged_by_the_old_rule(recalled: World, tmp_path):
    """A ledger whose latest checkpoint predates the switch (meta at its size): its
    audit passes, and its bundles verify, saying what they cannot rule out."""
    path = copy_db(recalled, tmp_path / "old.db")
    size = downgrade(path, recalled)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE meta SET value = ? WHERE key = ?", (str(size), SORTED_HEADS_FROM))
    db.execute("DELETE FROM checkpoints WHERE size < ?", (size,))  # all from before, too
    db.close()
    store = Store(path)
    report = verify_ledger(store, recalled.log_public_key, workers=1)
    assert not [p for p in report.problems if "heads" in p.message], report.problems
    bundle = json.loads(json.dumps(build_bundle(store, LOT)))
    assert "left" not in bundle["chains"][0]["heads"]
    verified = verify_bundle(bundle, recalled.log_public_key)
    assert verified.events[-1].kind == "recall"
    (warning,) = verified.warnings
    assert "cannot rule out a second chain" in warning
    newest = bundle["chains"][0]["events"][-1]
    assert parse_tlog_proof(newest["proof"]).index == newest["index"] < size


# --- the bundle carries the cosigned checkpoint (branch witnessing) -----------------------------


def test_the_bundle_is_as_of_the_checkpoint_the_witnesses_cosigned(tmp_path):
    """With a witness configured, the bundle carries the newest quorum-cosigned
    checkpoint with its cosignature line, and is as of that size: events and
    chains logged since are left out, and it verifies (a policy can be applied to
    the checkpoint it carries)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from provenance.core.cosignature import Cosigner
    from provenance.store.cosignatures import WitnessRow, configure_witnesses, record_cosignature

    world = World.create(tmp_path)
    store = world.store
    world.ok("regulator", "inspect", [LOT], {"result": "pass"}, time=at(2))
    cosigned = store.latest_checkpoint()
    size = Checkpoint.from_text(cosigned.split("\n\n")[0] + "\n").size
    witness = Cosigner("witness.example/regulator", Ed25519PrivateKey.generate())
    configure_witnesses(
        store, [WitnessRow(witness.name, "http://127.0.0.1:1", witness.verifier_key)], 1
    )
    line = witness.cosign(cosigned.split("\n\n")[0] + "\n", 1_800_000_000)
    record_cosignature(store, size, witness.name, line.rstrip("\n"), 1_800_000_000)
    # Since then: a recall of LOT, and a new lot.
    world.ok("regulator", "recall", [LOT], {"reason": "Listeria found", "class": "I"}, time=at(3))
    assert store.log_size() > size
    bundle = json.loads(json.dumps(build_bundle(store, LOT)))
    assert bundle["checkpoint"] == cosigned + line
    report = verify_bundle(bundle, world.log_public_key)
    assert report.checkpoint.size == size
    assert [e.kind for e in report.events][-1] == "inspect"  # the recall is after it
    for entry in bundle["chains"]:
        for item in entry["events"]:
            assert item["index"] < size
            if "proof" in item:
                assert parse_tlog_proof(item["proof"]).checkpoint == cosigned + line
    # Next to the newer (not yet cosigned) checkpoint, it is stale, as §7 says.
    from provenance.core.bundle import StaleBundleError

    with pytest.raises(StaleBundleError):
        verify_bundle(bundle, world.log_public_key, checkpoint=store.latest_checkpoint())
