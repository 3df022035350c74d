"""Offline proof bundles (DESIGN §4): `build_bundle(store, lot)` then
`verify_bundle(bundle, log_public_key)` with nothing else.

Every mutation of a bundle must fail with a VerificationError that says what
broke: an edited or swapped event is "not in the log as signed", a dropped or
added one makes the chain "not match the chain head the checkpoint commits
to" (completeness: events were left out), and so on.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.world import GTIN, LOT, World, at

from provenance.cli.main import main
from provenance.core.bundle import FORMAT, OLD_FORMAT, StaleBundleError, verify_bundle
from provenance.core.checkpoint import Checkpoint, sign_checkpoint
from provenance.core.envelope import Envelope
from provenance.core.errors import VerificationError
from provenance.core.merkle import ReadOnce, inclusion_proof
from provenance.core.signing import did_of
from provenance.core.tlog_proof import TlogProof, format_tlog_proof, parse_tlog_proof
from provenance.ledger.proofs import build_bundle

LOT2 = f"https://id.gs1.org/01/{GTIN}/10/LOT43"
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Scene:
    world: World
    bundles: dict[str, str] = field(default_factory=dict)  # JSON text: each test gets a copy
    idx: dict[str, int] = field(default_factory=dict)
    late_id: str = ""  # the probe2 reading dated after its revocation time

    @property
    def key(self) -> bytes:
        return self.world.log_public_key

    def bundle(self, name: str) -> dict[str, Any]:
        return json.loads(self.bundles[name])


@pytest.fixture(scope="module")
def scene() -> Scene:
    world = World.create()
    scene = Scene(world)
    idx = scene.idx
    readings = world.ledger.append([world.reading(1 + i / 4, 3.0 + i / 10) for i in range(6)])
    assert all(r.status == "accepted" for r in readings)
    world.ship_and_receive("farm", "carrier", [LOT], 3)
    idx["inspect"] = world.ok(
        "regulator", "inspect", [LOT], {"result": "pass", "notes": "kept cold"}, time=at(5)
    ).index
    idx["lot2"] = world.ok(
        "packer",
        "commission",
        [LOT2],
        {"gtin": GTIN, "lot": "LOT43", "product": "Spinach"},
        time=at(2),
    ).index
    world.enrol_device("probe2", owner="packer")
    world.ok("packer", "attach", [LOT2], {"device": world.did("probe2")}, time=at(2.5))
    readings = world.ledger.append([world.reading(3 + i / 2, 4.0, who="probe2") for i in range(3)])
    assert all(r.status == "accepted" for r in readings)
    # Signed after the revocation time below, but logged before the revocation event.
    late = world.ledger.append([world.reading(7, 4.5, who="probe2")])[0]
    idx["late"] = late.index
    scene.late_id = late.event_id or ""
    idx["revoke"] = world.ok(
        "registrar", "revoke", None, {"subject": world.did("probe2"), "from": at(6)}
    ).index
    scene.bundles["before"] = json.dumps(build_bundle(world.store, LOT))
    scene.bundles["before2"] = json.dumps(build_bundle(world.store, LOT2))
    idx["recall"] = world.ok(
        "regulator", "recall", [LOT], {"reason": "Listeria found", "class": "I"}, time=at(9)
    ).index
    scene.bundles["after"] = json.dumps(build_bundle(world.store, LOT))
    scene.bundles["after2"] = json.dumps(build_bundle(world.store, LOT2))
    return scene


# --- helpers -----------------------------------------------------------------------------------


def chain(bundle: dict[str, Any], subject: str) -> dict[str, Any]:
    (found,) = [c for c in bundle["chains"] if c["subject"] == subject]
    return found


def lot_events(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return chain(bundle, bundle["subject"])["events"]


def flip_bit(text: str, bit: int = 0) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    return base64.b64encode(bytes(raw)).decode()


def where(item: dict[str, Any]) -> str:
    """How verify_bundle names an event: 'event <id> (log index N)', as a regex."""
    envelope = Envelope.from_json(item["envelope"])
    return rf"event {envelope.event_id} \(log index {item['index']}\)"


LEFT_OUT = "do not match the chain head the checkpoint commits to — events were left out"
CHANGED = f"{LOT}: the bundle's 12 events {LEFT_OUT}, added or changed"


def log_proof(s: Scene, bundle: dict[str, Any], index: int) -> str:
    """A genuine tlog-proof of log leaf *index* under the bundle's checkpoint (what
    an operator holding the ledger can always make)."""
    note = bundle["checkpoint"]
    size = int(note.split("\n")[1])
    return format_tlog_proof(index, inclusion_proof(ReadOnce(s.world.store), index, size), note)


def with_checkpoint(b: dict[str, Any], note: str) -> None:
    """Put *note* in the bundle and in every tlog-proof it carries."""
    b["checkpoint"] = note
    for entry in b["chains"]:
        for item in entry["events"]:
            if "proof" in item:
                proof = parse_tlog_proof(item["proof"])
                item["proof"] = format_tlog_proof(proof.index, proof.proof, note)


# --- the happy path -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["before", "before2", "after", "after2"])
def test_bundle_verifies_after_a_json_round_trip(scene: Scene, name: str):
    bundle = json.loads(json.dumps(scene.bundle(name)))
    report = verify_bundle(bundle, scene.key)
    assert report.subject == bundle["subject"]
    assert [e.to_json() for e in report.events] == [i["envelope"] for i in lot_events(bundle)]
    assert report.checkpoint.size == int(bundle["checkpoint"].split("\n")[1])
    assert "all signatures valid, chain complete" in report.summary()


def test_bundle_carries_the_recall_and_every_signer(scene: Scene):
    bundle = scene.bundle("after")
    events = lot_events(bundle)
    assert events[-1]["envelope"]["kind"] == "recall"
    assert events[-1]["index"] == scene.idx["recall"]
    signers = {item["envelope"]["signer"] for item in events}
    registrar = scene.world.did("registrar")
    assert {c["subject"] for c in bundle["chains"]} == {LOT, registrar, *signers}


def test_wrong_log_key_fails(scene: Scene):
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(VerificationError, match=r"no signature by test\.local/log with key id"):
        verify_bundle(scene.bundle("after"), other)


def test_an_older_bundle_still_verifies_on_its_own(scene: Scene):
    """Completeness holds *as of the bundle's checkpoint*: a bundle made before the recall
    verifies. Whoever relies on it must compare its checkpoint with a fresher one they
    trust (a witness's); the report exposes the size for that."""
    old = verify_bundle(scene.bundle("before"), scene.key)
    new = verify_bundle(scene.bundle("after"), scene.key)
    assert old.checkpoint.size <= scene.idx["recall"] < new.checkpoint.size
    assert "recall" not in [e.kind for e in old.events]
    assert new.events[-1].kind == "recall"


# --- revoked devices ---------------------------------------------------------------------------


def test_revoked_devices_readings_before_revocation_verify(scene: Scene):
    report = verify_bundle(scene.bundle("after2"), scene.key)
    probe2 = scene.world.did("probe2")
    readings = [e for e in report.events if e.signer == probe2]
    assert len(readings) == 4
    assert report.signers[probe2]["revoked_from"] == at(6)
    assert report.signers[probe2]["revoked_at"] == scene.idx["revoke"]


def test_reading_dated_after_revocation_but_logged_before_it_warns(scene: Scene):
    report = verify_bundle(scene.bundle("after2"), scene.key)
    (warning,) = report.warnings
    assert f"event {scene.late_id} (log index {scene.idx['late']})" in warning
    assert "revocation was logged later" in warning
    assert verify_bundle(scene.bundle("after"), scene.key).warnings == []


# --- mutations ---------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any], Scene], str]  # mutates, returns the expected message regex


def drop_one_event(b, s):
    del lot_events(b)[3]
    return f"{LOT}: the bundle's 11 events {LEFT_OUT}"


def drop_the_recall(b, s):
    """The recall left out, the event before it given a genuine tlog-proof."""
    assert lot_events(b)[-1]["envelope"]["kind"] == "recall"
    lot_events(b).pop()
    lot_events(b)[-1]["proof"] = log_proof(s, b, lot_events(b)[-1]["index"])
    return f"{LOT}: the bundle's 11 events {LEFT_OUT}"


def drop_the_recall_and_its_proof(b, s):
    lot_events(b).pop()
    return f"{LOT}: the chain's newest event carries no tlog-proof"


def reorder_two_events(b, s):
    events = lot_events(b)
    events[3], events[4] = events[4], events[3]
    return where(events[4]) + r": out of log order \(after index"


def duplicate_an_event(b, s):
    events = lot_events(b)
    events.insert(4, events[3])
    return where(events[4]) + ": out of log order"


def edit_data(b, s):
    item = lot_events(b)[3]
    item["envelope"]["data"]["temperature_c"] = 30
    return where(item) + ": signature does not verify.*the envelope was changed after signing"


def edit_time(b, s):
    item = lot_events(b)[3]
    item["envelope"]["time"] = at(0.75)
    return where(item) + ": signature does not verify.*the envelope was changed after signing"


def edit_signature(b, s):
    item = lot_events(b)[3]
    sig = item["envelope"]["sig"]
    item["envelope"]["sig"] = ("B" if sig[0] == "A" else "A") + sig[1:]
    return where(item) + ": signature does not verify.*the envelope was changed after signing"


def edit_index(b, s):
    item = lot_events(b)[-1]
    item["index"] += 1
    return f"{LOT}: the tlog-proof of event {item['index']} is for index {item['index'] - 1}"


def edit_index_and_its_proof(b, s):
    item = lot_events(b)[-1]
    proof = parse_tlog_proof(item["proof"])
    item["index"] = proof.index - 1
    item["proof"] = format_tlog_proof(proof.index - 1, proof.proof, proof.checkpoint)
    return where(item) + ": leaf .* is not in the log as signed"


def swap_in_envelope_from_other_lot(b, s):
    """Another lot's (validly signed, logged) envelope under this event's index and proof."""
    other = lot_events(s.bundle("after2"))[0]
    item = lot_events(b)[3]
    item["envelope"] = other["envelope"]
    return CHANGED


def swap_in_event_from_other_lot(b, s):
    """Replace the inspection with another lot's event, its own index and proof too."""
    events = lot_events(b)
    position = next(i for i, e in enumerate(events) if e["index"] == s.idx["inspect"])
    events[position] = lot_events(s.bundle("after2"))[0]  # LOT43's commission, logged next
    assert events[position]["index"] == s.idx["lot2"] > s.idx["inspect"]
    return f"{LOT}: the bundle's 12 events {LEFT_OUT}, added or changed"


def append_event_from_other_lot(b, s):
    extra = lot_events(s.bundle("before2"))[-1]  # same checkpoint, later in the log
    assert extra["index"] > lot_events(b)[-1]["index"]
    lot_events(b).append(extra)
    return f"{LOT}: the bundle's 12 events {LEFT_OUT}, added or changed"


def older_checkpoint(b, s):
    """The newer bundle's chains under the checkpoint from before the recall."""
    b["checkpoint"] = s.bundle("before")["checkpoint"]
    return where(lot_events(b)[-1]) + r": beyond the checkpoint \(size"


def another_checkpoint_in_a_tlog_proof(b, s):
    item = lot_events(b)[-1]
    proof = parse_tlog_proof(item["proof"])
    item["proof"] = format_tlog_proof(proof.index, proof.proof, s.bundle("before")["checkpoint"])
    return where(item) + ": its tlog-proof carries another checkpoint"


def older_checkpoint_everywhere(b, s):
    """… and in every tlog-proof: the recall is beyond that checkpoint."""
    with_checkpoint(b, s.bundle("before")["checkpoint"])
    return where(lot_events(b)[-1]) + r": beyond the checkpoint \(size"


def recall_under_older_checkpoint(b, s):
    """The older bundle plus the recall (with its proof) from the newer one."""
    recall = lot_events(s.bundle("after"))[-1]
    lot_events(b).append(recall)
    return where(recall) + r": beyond the checkpoint \(size"


def newer_checkpoint(b, s):
    """The older bundle's proofs under the checkpoint made after the recall."""
    with_checkpoint(b, s.bundle("after")["checkpoint"])
    return "not in the log as signed"


def remove_signer_enrolment(b, s):
    probe = s.world.did("probe")
    b["chains"].remove(chain(b, probe))
    first = next(i for i in lot_events(b) if i["envelope"]["signer"] == probe)
    return where(first) + ": the bundle lacks the enrolment of its signer"


def remove_registrar_chain(b, s):
    b["chains"].remove(chain(b, s.world.did("registrar")))
    return r"bundle lacks the registrar's enrolment \(log leaf 0\)"


def hide_revocation(b, s):
    probe2 = chain(b, s.world.did("probe2"))
    assert probe2["events"][-1]["envelope"]["kind"] == "revoke"
    probe2["events"].pop()
    return f"{s.world.did('probe2')}: the bundle's 1 events {LEFT_OUT}"


def flip_inclusion_proof_bit(b, s):
    item = lot_events(b)[-1]
    proof = parse_tlog_proof(item["proof"])
    hashes = list(proof.proof)
    hashes[1] = bytes([hashes[1][0] ^ 4]) + hashes[1][1:]
    item["proof"] = TlogProof(proof.index, tuple(hashes), proof.checkpoint).to_text()
    return where(item) + ": leaf .* is not in the log as signed: root mismatch"


def flip_heads_proof_bit(b, s):
    lot = chain(b, LOT)
    lot["heads"]["proof"][0] = flip_bit(lot["heads"]["proof"][0], 3)
    return f"{LOT}: the bundle's 12 events do not match the chain head"


def flip_neighbour_proof_bit(b, s):
    heads = chain(b, LOT)["heads"]
    side = "left" if "left" in heads else "right"
    heads[side]["proof"][0] = flip_bit(heads[side]["proof"][0], 3)
    return f"{LOT}: the {side} neighbour of its chain is not in the heads tree as signed"


def drop_a_neighbour(b, s):
    heads = chain(b, LOT)["heads"]
    side = "left" if "left" in heads else "right"
    del heads[side]
    return f"{LOT}: the bundle lacks the {side} neighbour of its chain in the heads tree"


def change_position(b, s):
    chain(b, LOT)["heads"]["position"] += 1
    return f"{LOT}: the bundle's 12 events do not match the chain head"


def change_subject(b, s):
    b["subject"] = LOT2
    return "bundle does not carry the chain of its subject lot"


def list_a_chain_twice(b, s):
    b["chains"].append(b["chains"][1])
    return "bundle lists a chain twice"


def wrong_format(b, s):
    b["format"] = "provenance-bundle/v0"
    return f"not a {FORMAT} proof bundle"


def old_format(b, s):
    b["format"] = OLD_FORMAT
    return f"this is a {OLD_FORMAT} bundle.*re-export it with `provenance export proof URI`"


MUTATIONS: list[tuple[str, str, Mutation]] = [
    ("after", "drop-one-event", drop_one_event),
    ("after", "drop-the-recall", drop_the_recall),
    ("after", "drop-the-recall-and-its-proof", drop_the_recall_and_its_proof),
    ("after", "reorder-two-events", reorder_two_events),
    ("after", "duplicate-an-event", duplicate_an_event),
    ("after", "edit-data-field", edit_data),
    ("after", "edit-time", edit_time),
    ("after", "edit-signature", edit_signature),
    ("after", "edit-index", edit_index),
    ("after", "edit-index-and-its-proof", edit_index_and_its_proof),
    ("after", "swap-in-envelope-from-other-lot", swap_in_envelope_from_other_lot),
    ("after", "swap-in-event-from-other-lot", swap_in_event_from_other_lot),
    ("before", "append-event-from-other-lot", append_event_from_other_lot),
    ("after", "older-checkpoint", older_checkpoint),
    ("after", "older-checkpoint-everywhere", older_checkpoint_everywhere),
    ("after", "another-checkpoint-in-a-tlog-proof", another_checkpoint_in_a_tlog_proof),
    ("before", "recall-under-older-checkpoint", recall_under_older_checkpoint),
    ("before", "newer-checkpoint", newer_checkpoint),
    ("after", "remove-signer-enrolment", remove_signer_enrolment),
    ("after", "remove-registrar-chain", remove_registrar_chain),
    ("after2", "hide-revocation", hide_revocation),
    ("after", "flip-inclusion-proof-bit", flip_inclusion_proof_bit),
    ("after", "flip-heads-proof-bit", flip_heads_proof_bit),
    ("after", "flip-neighbour-proof-bit", flip_neighbour_proof_bit),
    ("after", "drop-a-neighbour", drop_a_neighbour),
    ("after", "change-heads-position", change_position),
    ("after", "change-subject", change_subject),
    ("after", "list-a-chain-twice", list_a_chain_twice),
    ("after", "wrong-format", wrong_format),
    ("after", "old-format", old_format),
]


@pytest.mark.parametrize(
    ("base", "mutate"), [pytest.param(b, m, id=name) for b, name, m in MUTATIONS]
)
def test_mutation_fails_saying_what_broke(scene: Scene, base: str, mutate: Mutation):
    bundle = scene.bundle(base)
    verify_bundle(bundle, scene.key)  # intact before
    expected = mutate(bundle, scene)
    bundle = json.loads(json.dumps(bundle))  # what a verifier would receive
    with pytest.raises(VerificationError, match=expected):
        verify_bundle(bundle, scene.key)


# --- a few properties --------------------------------------------------------------------------


@FEW
@given(data=st.data())
def test_removing_any_events_fails_unless_none_removed(scene: Scene, data: st.DataObject):
    bundle = scene.bundle("after")
    events = lot_events(bundle)
    removed = data.draw(st.sets(st.integers(0, len(events) - 1)), label="removed")
    kept = [item for position, item in enumerate(events) if position not in removed]
    if kept and "proof" not in kept[-1]:  # a genuine tlog-proof for the new newest event
        kept[-1]["proof"] = log_proof(scene, bundle, kept[-1]["index"])
    events[:] = kept
    if not removed:
        assert len(verify_bundle(bundle, scene.key).events) == len(kept)
        return
    with pytest.raises(VerificationError, match=f"the bundle's {len(kept)} events {LEFT_OUT}"):
        verify_bundle(bundle, scene.key)


@FEW
@given(data=st.data())
def test_removing_any_identity_chain_fails(scene: Scene, data: st.DataObject):
    bundle = scene.bundle("after")
    identities = [c["subject"] for c in bundle["chains"] if c["subject"].startswith("did:")]
    removed = data.draw(st.sets(st.sampled_from(identities), min_size=1), label="removed")
    bundle["chains"] = [c for c in bundle["chains"] if c["subject"] not in removed]
    with pytest.raises(VerificationError, match="bundle lacks the"):
        verify_bundle(bundle, scene.key)


@FEW
@given(data=st.data())
def test_any_flipped_proof_bit_fails(scene: Scene, data: st.DataObject):
    """Any bit of any proof hash: the heads proof, a neighbour's, a tlog-proof's."""
    bundle = scene.bundle("after")
    entry = data.draw(st.sampled_from(bundle["chains"]), label="chain")
    heads = entry["heads"]
    slots: list[tuple[str, Any]] = [
        ("heads", heads[k]["proof"] if k else heads["proof"])
        for k in ("", "left", "right")
        if not k or k in heads
    ]
    slots += [("tlog", item) for item in entry["events"] if "proof" in item]
    kind, target = data.draw(st.sampled_from(slots), label="proof")
    bit = data.draw(st.integers(0, 255), label="bit")
    if kind == "heads":
        if not target:
            return
        position = data.draw(st.integers(0, len(target) - 1), label="hash")
        target[position] = flip_bit(target[position], bit)
    else:
        proof = parse_tlog_proof(target["proof"])
        if not proof.proof:
            return
        hashes = [bytearray(h) for h in proof.proof]
        position = data.draw(st.integers(0, len(hashes) - 1), label="hash")
        hashes[position][bit // 8] ^= 1 << (bit % 8)
        flipped = TlogProof(proof.index, tuple(bytes(h) for h in hashes), proof.checkpoint)
        target["proof"] = flipped.to_text()
    with pytest.raises(VerificationError, match=r"not in the log as signed|do not match|neighbour"):
        verify_bundle(bundle, scene.key)


# --- the command line, with no database at all --------------------------------------------------


def test_cli_verifies_a_bundle_without_a_database(scene: Scene, tmp_path: Path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(scene.bundles["after"])
    broken = scene.bundle("after")
    drop_the_recall(broken, scene)
    bad.write_text(json.dumps(broken))
    base = ["--db", str(tmp_path / "absent.db"), "--keys", str(tmp_path / "keys"), "verify"]
    key = ["--log-key", did_of(scene.world.log_key)]
    runner = CliRunner()
    ok = runner.invoke(main, [*base, "--bundle", str(good), *key])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith(f"OK {LOT}: 12 events")
    failed = runner.invoke(main, [*base, "--bundle", str(bad), *key])
    assert failed.exit_code == 1
    assert "FAILED: " in failed.output and "events were left out" in failed.output
    assert not (tmp_path / "absent.db").exists()


def test_cli_says_to_re_export_an_old_format_bundle(scene: Scene, tmp_path: Path):
    old = scene.bundle("after")
    old["format"] = OLD_FORMAT
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(old))
    base = ["--db", str(tmp_path / "absent.db"), "--keys", str(tmp_path / "keys"), "verify"]
    key = ["--log-key", did_of(scene.world.log_key)]
    result = CliRunner().invoke(main, [*base, "--bundle", str(path), *key])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: this is a {OLD_FORMAT} bundle")
    assert "re-export it with `provenance export proof URI`" in result.output
    assert "Traceback" not in result.output


def test_a_cosignature_added_to_the_bundle_s_checkpoint_keeps_it_valid(scene: Scene):
    """Witness cosignatures arrive after the fact: the bundle's checkpoint may carry
    lines its tlog-proofs lack. Only the note text must match."""
    bundle = scene.bundle("after")
    signature = base64.b64encode(bytes(12) + b"sig" * 21 + b"!").decode()
    bundle["checkpoint"] += f"— witness.example/w1 {signature}\n"
    assert verify_bundle(bundle, scene.key).events[-1].kind == "recall"


# --- judged against a checkpoint the verifier trusts (issue 9: stale bundles) --------------------


def note_of(scene: Scene, name: str) -> str:
    return scene.bundle(name)["checkpoint"]


def forged_note(scene: Scene, name: str, **changes: Any) -> str:
    """The checkpoint of bundle *name* with *changes*, signed with the real log key
    (what a misbehaving log could sign)."""
    body = Checkpoint.from_text(note_of(scene, name).split("\n\n")[0] + "\n")
    fields = {**body.__dict__, **changes}
    return sign_checkpoint(Checkpoint(**fields), body.origin, scene.world.log_key)


def test_a_bundle_from_before_a_recall_fails_next_to_a_checkpoint_from_after_it(scene: Scene):
    """The finding: the old bundle verifies on its own, but not as of a newer checkpoint."""
    old, newer = scene.bundle("before"), note_of(scene, "after")
    assert verify_bundle(old, scene.key).events[-1].kind != "recall"
    size, new_size = (int(note.split("\n")[1]) for note in (old["checkpoint"], newer))
    message = (
        rf"this bundle is as of log size {size}; the checkpoint you gave is size {new_size}: "
        r"a bundle cannot show what happened to the lot since \(a recall, a hold\)\. "
        rf"Get a bundle as of that checkpoint or later: `provenance export proof {LOT} --since"
    )
    with pytest.raises(StaleBundleError, match=message):
        verify_bundle(old, scene.key, checkpoint=newer)


def test_a_bundle_as_of_the_checkpoint_given_verifies(scene: Scene):
    for name in ("before", "after"):
        report = verify_bundle(scene.bundle(name), scene.key, checkpoint=note_of(scene, name))
        assert report.trusted == report.checkpoint
        assert report.summary().endswith("(the checkpoint you gave)")


def test_an_older_checkpoint_needs_a_consistency_proof(scene: Scene):
    with pytest.raises(VerificationError, match=r"older than the bundle's .* no consistency proof"):
        verify_bundle(scene.bundle("after"), scene.key, checkpoint=note_of(scene, "before"))


def test_a_bundle_exported_since_an_older_checkpoint_proves_it_extends_it(scene: Scene):
    older = note_of(scene, "before")
    bundle = json.loads(json.dumps(build_bundle(scene.world.store, LOT, since=older)))
    size = int(older.split("\n")[1])
    assert bundle["consistency"]["size"] == size
    report = verify_bundle(bundle, scene.key, checkpoint=older)
    assert report.events[-1].kind == "recall"
    assert report.summary().endswith(f"which extends the checkpoint you gave (size {size})")
    # The proof is only good for the checkpoint it was made from.
    with pytest.raises(VerificationError, match="consistency proof is from size"):
        verify_bundle(bundle, scene.key, checkpoint=forged_note(scene, "before", size=size - 1))


@pytest.mark.parametrize("hash_index", [0, -1])
def test_a_flipped_consistency_proof_bit_fails(scene: Scene, hash_index: int):
    older = note_of(scene, "before")
    bundle = build_bundle(scene.world.store, LOT, since=older)
    proof = bundle["consistency"]["proof"]
    proof[hash_index] = flip_bit(proof[hash_index], 77)
    with pytest.raises(VerificationError, match=r"does not extend the checkpoint you gave"):
        verify_bundle(bundle, scene.key, checkpoint=older)


def test_an_older_checkpoint_of_a_rewritten_log_fails(scene: Scene):
    """A checkpoint of the same size as the bundle's older one, but another root: the
    consistency proof (made from the real tree) cannot connect them."""
    older = note_of(scene, "before")
    bundle = build_bundle(scene.world.store, LOT, since=older)
    root = Checkpoint.from_text(older.split("\n\n")[0] + "\n").root_hash
    other = forged_note(scene, "before", root_hash=bytes([root[0] ^ 1]) + root[1:])
    with pytest.raises(VerificationError, match=r"does not extend the checkpoint you gave"):
        verify_bundle(bundle, scene.key, checkpoint=other)


def test_two_trees_of_one_size_are_a_split_view(scene: Scene):
    note = note_of(scene, "after")
    root = Checkpoint.from_text(note.split("\n\n")[0] + "\n").root_hash
    other = forged_note(scene, "after", root_hash=bytes([root[0] ^ 1]) + root[1:])
    with pytest.raises(VerificationError, match=r"two different trees of size \d+.*split view"):
        verify_bundle(scene.bundle("after"), scene.key, checkpoint=other)


def test_the_checkpoint_given_must_be_signed_by_the_log_key(scene: Scene):
    note = note_of(scene, "after")
    body = Checkpoint.from_text(note.split("\n\n")[0] + "\n")
    other = sign_checkpoint(body, body.origin, Ed25519PrivateKey.generate())
    with pytest.raises(VerificationError, match=r"the checkpoint you gave does not verify"):
        verify_bundle(scene.bundle("after"), scene.key, checkpoint=other)
    elsewhere = sign_checkpoint(
        Checkpoint("other.example/log", body.size, body.root_hash, body.extensions),
        "other.example/log",
        scene.world.log_key,
    )
    with pytest.raises(VerificationError, match=r"is for log 'other.example/log'"):
        verify_bundle(scene.bundle("after"), scene.key, checkpoint=elsewhere)


@pytest.mark.parametrize(
    "consistency",
    [
        [],
        {"size": "3", "proof": []},
        {"size": 3},
        {"size": 3, "proof": "x"},
        {"size": True, "proof": []},
    ],
)
def test_a_malformed_consistency_field_fails(scene: Scene, consistency: Any):
    bundle = scene.bundle("after")
    bundle["consistency"] = consistency
    with pytest.raises(VerificationError):
        verify_bundle(bundle, scene.key, checkpoint=note_of(scene, "before"))


def test_export_since_refuses_a_checkpoint_this_ledger_does_not_match(scene: Scene):
    after = Checkpoint.from_text(note_of(scene, "after").split("\n\n")[0] + "\n")
    newer = forged_note(scene, "after", size=after.size + 5)
    with pytest.raises(VerificationError, match=r"newer than the one this ledger shows"):
        build_bundle(scene.world.store, LOT, since=newer)
    rewritten = forged_note(scene, "before", root_hash=bytes(32))
    with pytest.raises(VerificationError, match=r"does not match this ledger's tree"):
        build_bundle(scene.world.store, LOT, since=rewritten)


def test_cli_refuses_a_stale_bundle_with_a_newer_checkpoint(scene: Scene, tmp_path: Path):
    old, checkpoint = tmp_path / "old.json", tmp_path / "after.checkpoint"
    old.write_text(scene.bundles["before"])
    checkpoint.write_text(note_of(scene, "after"))
    base = ["--db", str(tmp_path / "absent.db"), "--keys", str(tmp_path / "keys"), "verify"]
    key = ["--log-key", did_of(scene.world.log_key)]
    runner = CliRunner()
    alone = runner.invoke(main, [*base, "--bundle", str(old), *key])
    assert alone.exit_code == 0, alone.output
    stale = runner.invoke(
        main, [*base, "--bundle", str(old), *key, "--checkpoint", str(checkpoint)]
    )
    assert stale.exit_code == 1, stale.output
    assert stale.output.startswith("FAILED: this bundle is as of log size")
    assert "OK" not in stale.output
    fresh = tmp_path / "fresh.json"
    fresh.write_text(scene.bundles["after"])
    ok = runner.invoke(main, [*base, "--bundle", str(fresh), *key, "--checkpoint", str(checkpoint)])
    assert ok.exit_code == 0, ok.output
    assert not (tmp_path / "absent.db").exists()


# --- bugs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("chains", [5, 1.5, True])
def test_malformed_chains_field_is_a_verification_error(scene: Scene, chains: Any):
    bundle = scene.bundle("after")
    bundle["chains"] = chains
    with pytest.raises(VerificationError):
        verify_bundle(bundle, scene.key)
