"""Tamper matrix over every class DESIGN §4 says `verify` must catch.

A realistic ledger is built once per test (file_world plus readings, a shipment,
an inspection, a second lot, a revoked device). Each case copies the database
with SQLite's backup API and tampers with the COPY through raw SQL, as someone
with write access to the file (but not the log key) would. Some cases come in
two strengths:

- *naive*: the attacker edits the rows they care about and nothing else;
- *covered*: the attacker also recomputes everything that needs no key — leaf
  hashes, lookup keys, chain links and heads, stored log nodes — so that the
  only things left to betray them are Ed25519 signatures and the log key's
  signed checkpoints.

Then `verify_ledger(Store(copy), log key)` must report problems with a fitting
reason that names the affected event (log index or event id), or the chain,
node or checkpoint that was touched.

A rollback to an older copy of the whole database is consistent in itself: it
is caught *only* by a checkpoint kept outside the database
(`external_checkpoint=`), which is why checkpoints must be kept outside (by
witnesses, auditors, partners) — see `test_rollback_*` and
`test_truncation_covered_*`.

Tests marked xfail(strict=True, reason="BUG: …") document what verify does not
do yet; each reason names the function at fault.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.world import GTIN, LOT, World, at

from provenance.cli.main import main
from provenance.core import chain as chains
from provenance.core.checkpoint import sign_note
from provenance.core.errors import ProvenanceError, VerificationError
from provenance.core.merkle import Frontier, hash_leaf, root_from_leaf_hashes
from provenance.core.signing import did_of, sign
from provenance.ledger import audit
from provenance.ledger.append import Ledger
from provenance.ledger.audit import Report, verify_ledger, verify_lot
from provenance.store.db import NODE_MIN_LEVEL, Store

LOT2 = f"https://id.gs1.org/01/{GTIN}/10/LOT43"
ATTACKER = Ed25519PrivateKey.generate()  # a key nobody enrolled


# --- the scene ---------------------------------------------------------------------------------


@dataclass
class Scene:
    """The ledger under test and where its interesting events sit in the log."""

    world: World
    idx: dict[str, int] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        assert self.world.store.path is not None
        return self.world.store.path

    @property
    def key(self) -> bytes:
        return self.world.log_public_key

    def identity_id(self, name: str) -> int:
        row = self.world.store.identity_by_did(self.world.did(name))
        assert row is not None
        return row.id


def build_scene(world: World) -> Scene:
    scene = Scene(world)
    idx = scene.idx
    store = world.store
    readings = world.ledger.append([world.reading(1 + i / 4, 3.0 + i / 10) for i in range(6)])
    assert all(r.status == "accepted" for r in readings)
    idx["reading"] = readings[2].index  # a LOT42 reading in the middle of the log
    idx["next_reading"] = readings[3].index
    world.ship_and_receive("farm", "carrier", [LOT], 3)
    idx["ship"], idx["receive"] = store.log_size() - 2, store.log_size() - 1
    idx["inspect"] = world.ok(
        "regulator", "inspect", [LOT], {"result": "pass", "notes": "cold chain kept"}, time=at(5)
    ).index
    idx["carrier_enrol"] = store.identity_by_did(world.did("carrier")).enrol_event  # type: ignore[union-attr]
    idx["lot2"] = world.ok(
        "packer",
        "commission",
        [LOT2],
        {"gtin": GTIN, "lot": "LOT43", "product": "Spinach", "profile": "chilled"},
        time=at(2),
    ).index
    world.enrol_device("probe2", owner="packer")
    world.ok("packer", "attach", [LOT2], {"device": world.did("probe2")}, time=at(2.5))
    readings2 = world.ledger.append([world.reading(3 + i / 2, 4.0, who="probe2") for i in range(4)])
    assert all(r.status == "accepted" for r in readings2)
    idx["lot2_readings"], idx["lot2_reading"] = readings2[0].index, readings2[1].index
    # Signed after the revocation time below, but logged before the revocation.
    idx["late"] = world.ledger.append([world.reading(7, 4.5, who="probe2")])[0].index
    idx["revoke"] = world.ok(
        "registrar",
        "revoke",
        None,
        {"subject": world.did("probe2"), "from": at(6), "reason": "probe2 lost in transit"},
    ).index
    idx["size"] = store.log_size()
    return scene


@pytest.fixture
def scene(file_world: World) -> Scene:
    return build_scene(file_world)


# --- the attacker's tools ----------------------------------------------------------------------


def copy_db(source: Path, target: Path) -> Path:
    """A consistent copy through SQLite's online backup API."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target


def tamper_copy(scene: Scene, directory: Path, tamper: Callable[[sqlite3.Connection, Scene], None]):
    path = copy_db(scene.path, directory / "tampered.db")
    db = sqlite3.connect(path, isolation_level=None)
    try:
        tamper(db, scene)
    finally:
        db.close()
    return path


def _key(event_id: bytes) -> int:
    return int.from_bytes(event_id[:8], "big", signed=True)


def cover_tracks(db: sqlite3.Connection) -> None:
    """Recompute everything that needs no key: leaves, chain links and heads, log nodes.

    The event ids come from the project's own code (an attacker has it too)."""
    path = db.execute("PRAGMA database_list").fetchone()[2]
    reader = Store(path, readonly=True)
    try:
        ids = {stored.index: stored.envelope.id_bytes for stored in reader.events()}
    finally:
        reader.close()
    for index, event_id in ids.items():
        db.execute(
            "UPDATE events SET leaf = ?, key = ? WHERE idx = ?",
            (hash_leaf(event_id), _key(event_id), index),
        )
    chain_rows = db.execute("SELECT id, subject FROM chains").fetchall()
    for chain_id, subject in chain_rows:
        link, length = chains.genesis_link(subject), 0
        rows = db.execute(
            "SELECT pos, event FROM links WHERE chain = ? ORDER BY pos", (chain_id,)
        ).fetchall()
        for pos, event in rows:
            link, length = chains.next_link(link, ids[event]), length + 1
            db.execute(
                "UPDATE links SET link = ? WHERE chain = ? AND pos = ?", (link, chain_id, pos)
            )
        db.execute("UPDATE chains SET head = ?, length = ? WHERE id = ?", (link, length, chain_id))
    frontier, nodes = Frontier(), []
    for (leaf,) in db.execute("SELECT leaf FROM events ORDER BY idx").fetchall():
        nodes.extend(frontier.append(leaf))
    db.execute("DELETE FROM log_nodes")
    db.executemany(
        "INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)",
        [node for node in nodes if node[0] >= NODE_MIN_LEVEL],
    )


def shift_events(db: sqlite3.Connection, start: int, by: int) -> None:
    """Renumber events idx >= start by `by`, keeping the links pointing at them."""
    db.execute("UPDATE events SET idx = -(idx + ?) - 1 WHERE idx >= ?", (by, start))
    db.execute("UPDATE events SET idx = -idx - 1 WHERE idx < 0")
    db.execute("UPDATE links SET event = event + ? WHERE event >= ?", (by, start))


def shift_links(db: sqlite3.Connection, chain_id: int, start: int, by: int) -> None:
    db.execute(
        "UPDATE links SET pos = -(pos + ?) - 1 WHERE chain = ? AND pos >= ?", (by, chain_id, start)
    )
    db.execute("UPDATE links SET pos = -pos - 1 WHERE chain = ? AND pos < 0", (chain_id,))


def chain_id_of(db: sqlite3.Connection, subject: str) -> int:
    return db.execute("SELECT id FROM chains WHERE subject = ?", (subject,)).fetchone()[0]


def link_pos(db: sqlite3.Connection, chain_id: int, event: int) -> int:
    return db.execute(
        "SELECT pos FROM links WHERE chain = ? AND event = ?", (chain_id, event)
    ).fetchone()[0]


def insert_envelope(db: sqlite3.Connection, index: int, envelope, signer_id: int, lots: list[int]):
    row = Store.event_row(index, envelope, signer_id, None, lots, hash_leaf(envelope.id_bytes))
    db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)


# --- tampers (raw SQL on the copy) -------------------------------------------------------------


def edit_content(db, scene):
    db.execute(
        "UPDATE events SET data = ? WHERE idx = ?", ('{"temperature_c":30}', scene.idx["reading"])
    )


def edit_content_covered(db, scene):
    edit_content(db, scene)
    cover_tracks(db)


def edit_signature(db, scene):
    (sig,) = db.execute("SELECT sig FROM events WHERE idx = ?", (scene.idx["reading"],)).fetchone()
    flipped = bytes([sig[0] ^ 0x01]) + sig[1:]
    db.execute("UPDATE events SET sig = ? WHERE idx = ?", (flipped, scene.idx["reading"]))


def edit_time(db, scene):
    db.execute("UPDATE events SET time = ? WHERE idx = ?", (at(0.75), scene.idx["reading"]))


def edit_signer(db, scene):
    """The ship event (signed by farm) now claims to be the carrier's."""
    db.execute(
        "UPDATE events SET signer = ? WHERE idx = ?",
        (scene.identity_id("carrier"), scene.idx["ship"]),
    )


def edit_signer_dangling(db, scene):
    """The signer column points at no identity at all."""
    db.execute("UPDATE events SET signer = 999 WHERE idx = ?", (scene.idx["ship"],))


def edit_kind(db, scene):
    """The inspection becomes a recall (same signer, a regulator, who may sign both)."""
    db.execute("UPDATE events SET kind = 11 WHERE idx = ?", (scene.idx["inspect"],))


def delete_event(db, scene):
    index = scene.idx["reading"]
    db.execute("DELETE FROM events WHERE idx = ?", (index,))
    db.execute("DELETE FROM links WHERE event = ?", (index,))


def delete_event_covered(db, scene):
    """Delete, close the gap in the log and in the chain, recompute all hashes."""
    index = scene.idx["reading"]
    lot = chain_id_of(db, LOT)
    pos = link_pos(db, lot, index)
    delete_event(db, scene)
    shift_events(db, index + 1, -1)
    shift_links(db, lot, pos + 1, -1)
    cover_tracks(db)


def _forged_reading(scene: Scene, hours: float):
    """A validly signed reading by the enrolled probe that never went through the ledger."""
    return scene.world.reading(hours, 2.5)


def insert_event_at_end(db, scene):
    envelope = _forged_reading(scene, 2)
    lot = chain_id_of(db, LOT)
    index = scene.idx["size"]
    insert_envelope(db, index, envelope, scene.identity_id("probe"), [lot])
    (length,) = db.execute("SELECT length FROM chains WHERE id = ?", (lot,)).fetchone()
    db.execute("INSERT INTO links VALUES (?, ?, ?, x'00')", (lot, length, index))
    cover_tracks(db)


def insert_event_in_middle(db, scene):
    envelope = _forged_reading(scene, 2)
    lot = chain_id_of(db, LOT)
    index = scene.idx["ship"]  # spliced in just before the shipment
    pos = link_pos(db, lot, index)
    shift_events(db, index, 1)
    shift_links(db, lot, pos, 1)
    insert_envelope(db, index, envelope, scene.identity_id("probe"), [lot])
    db.execute("INSERT INTO links VALUES (?, ?, ?, x'00')", (lot, pos, index))
    cover_tracks(db)


_CONTENT = "kind, signer, seq, time, batches, lots, data, sig, leaf, key"


def reorder_events(db, scene):
    """Swap everything but the log position of two neighbouring readings."""
    first, second = scene.idx["reading"], scene.idx["next_reading"]
    a = db.execute(f"SELECT {_CONTENT} FROM events WHERE idx = ?", (first,)).fetchone()
    b = db.execute(f"SELECT {_CONTENT} FROM events WHERE idx = ?", (second,)).fetchone()
    assignments = ", ".join(f"{column.strip()} = ?" for column in _CONTENT.split(","))
    db.execute("UPDATE events SET seq = -1 WHERE idx = ?", (first,))  # (signer, seq) is unique
    db.execute(f"UPDATE events SET {assignments} WHERE idx = ?", (*a, second))
    db.execute(f"UPDATE events SET {assignments} WHERE idx = ?", (*b, first))


def reorder_events_covered(db, scene):
    reorder_events(db, scene)
    cover_tracks(db)


def duplicate_event(db, scene):
    db.execute("DROP INDEX events_signer_seq")  # (signer, seq) would refuse the copy
    db.execute(
        f"INSERT INTO events (idx, {_CONTENT}) SELECT ?, {_CONTENT} FROM events WHERE idx = ?",
        (scene.idx["size"], scene.idx["reading"]),
    )


def swap_key(db, scene):
    """The carrier's identity row now names the attacker's key."""
    db.execute(
        "UPDATE identities SET did = ? WHERE id = ?",
        (did_of(ATTACKER), scene.identity_id("carrier")),
    )


def _resign_carrier_events(db, scene):
    rows = db.execute(
        "SELECT idx, seq, time, data FROM events WHERE signer = ?", (scene.identity_id("carrier"),)
    ).fetchall()
    assert rows
    for index, seq, time, data in rows:
        envelope = sign(
            ATTACKER, kind="receive", seq=seq, time=time, data=json.loads(data), lots=[LOT]
        )
        db.execute("UPDATE events SET sig = ? WHERE idx = ?", (envelope.signature, index))


def swap_key_resigned(db, scene):
    """Swap the key and re-sign the carrier's events with it, then cover tracks."""
    swap_key(db, scene)
    _resign_carrier_events(db, scene)
    cover_tracks(db)


def swap_enrolment_subject(db, scene):
    """Rewrite the carrier's enrolment event itself to enrol the attacker's key."""
    carrier, attacker = scene.world.did("carrier"), did_of(ATTACKER)
    db.execute(
        "UPDATE events SET data = replace(data, ?, ?) WHERE idx = ?",
        (carrier, attacker, scene.idx["carrier_enrol"]),
    )
    db.execute("UPDATE chains SET subject = ? WHERE subject = ?", (attacker, carrier))
    swap_key(db, scene)
    _resign_carrier_events(db, scene)
    cover_tracks(db)


def truncate_tail(db, scene):
    """Delete the last commits: events, their links and their checkpoints."""
    keep = scene.idx["lot2_readings"]  # cut at a commit: the probe2 readings and all after
    db.execute("DELETE FROM events WHERE idx >= ?", (keep,))
    db.execute("DELETE FROM links WHERE event >= ?", (keep,))
    db.execute("DELETE FROM checkpoints WHERE size > ?", (keep,))


def roll_back_derived_state(db: sqlite3.Connection, keep: int) -> None:
    """Undo what events at log index >= keep did to the tables derived from them."""
    db.execute("DELETE FROM identities WHERE enrol_event >= ?", (keep,))
    db.execute(
        "UPDATE identities SET revoked_from = NULL, revoke_event = NULL WHERE revoke_event >= ?",
        (keep,),
    )
    db.execute("DELETE FROM lots WHERE origin_event >= ?", (keep,))
    db.execute("DELETE FROM attachments WHERE attach_event >= ?", (keep,))
    db.execute(
        "UPDATE attachments SET until_us = NULL, detach_event = NULL WHERE detach_event >= ?",
        (keep,),
    )
    db.execute("DELETE FROM shipments WHERE event >= ?", (keep,))
    db.execute("UPDATE shipments SET receive_event = NULL WHERE receive_event >= ?", (keep,))
    db.execute("DELETE FROM chains WHERE id NOT IN (SELECT DISTINCT chain FROM links)")


def truncate_tail_covered(db, scene):
    """Truncate and make the rest look like an older ledger: the same as a rollback."""
    truncate_tail(db, scene)
    roll_back_derived_state(db, scene.idx["lot2_readings"])
    cover_tracks(db)


def edit_chain_head(db, scene):
    db.execute("UPDATE chains SET head = zeroblob(32) WHERE subject = ?", (LOT,))


def edit_log_node(db, scene):
    changed = db.execute(
        "UPDATE log_nodes SET hash = zeroblob(32) WHERE level = 4 AND idx = 0"
    ).rowcount
    assert changed == 1


def _latest_note(db) -> tuple[int, str]:
    return db.execute("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()


def edit_checkpoint(db, scene):
    size, note = _latest_note(db)
    lines = note.split("\n")
    lines[2] = "A" * 43 + "="  # another root hash, same shape
    db.execute("UPDATE checkpoints SET note = ? WHERE size = ?", ("\n".join(lines), size))


def resign_checkpoint(db, scene):
    """Edit an event, cover tracks, then sign a matching checkpoint with another key."""
    edit_content_covered(db, scene)
    size, note = _latest_note(db)
    path = db.execute("PRAGMA database_list").fetchone()[2]
    reader = Store(path, readonly=True)
    try:
        root = root_from_leaf_hashes(reader.leaf_hashes(0, size))
    finally:
        reader.close()
    lines = note[: note.rfind("\n\n") + 1].split("\n")
    lines[2] = base64.b64encode(root).decode()
    forged = sign_note("\n".join(lines), "test.local/log", ATTACKER)
    db.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (forged, size))


def resign_event_with_party_key(db, scene):
    """The attacker holds the probe's key: a new reading at the same seq, validly signed."""
    index = scene.idx["reading"]
    seq, time = db.execute("SELECT seq, time FROM events WHERE idx = ?", (index,)).fetchone()
    envelope = sign(
        scene.world.keys["probe"], kind="reading", seq=seq, time=time, data={"temperature_c": 30}
    )
    db.execute(
        "UPDATE events SET data = ?, sig = ? WHERE idx = ?",
        (envelope.data_json, envelope.signature, index),
    )
    cover_tracks(db)


# --- the matrix --------------------------------------------------------------------------------

ROOT = "do not hash to the signed checkpoint root"
HEADS = "chain heads differ from those the latest checkpoint commits to"
SIG = "signature does not verify"
LOGGED = "differs from what was logged"
LINK = "does not follow from the previous link"


@dataclass
class Case:
    id: str
    tamper: Callable[[sqlite3.Connection, Scene], None]
    reasons: tuple[str, ...]
    where: str | None = None  # scene.idx key of the event the report must name
    names: str | None = None  # or a subject / node / checkpoint the report must name
    named: bool = True  # False: verify_ledger cannot say which event yet (see the xfail below)


CASES = [
    Case("edited-content", edit_content, (LOGGED, SIG, LINK, ROOT), "reading"),
    Case("edited-content-covered", edit_content_covered, (SIG, ROOT, HEADS), "reading"),
    Case("edited-signature", edit_signature, (LOGGED, SIG, LINK, ROOT), "reading"),
    Case("edited-time", edit_time, (LOGGED, SIG, LINK, ROOT), "reading"),
    Case("edited-signer", edit_signer, (LOGGED, SIG, LINK, ROOT), "ship"),
    Case("edited-signer-dangling", edit_signer_dangling, ("cannot be read back", ROOT), "ship"),
    Case("edited-kind", edit_kind, (LOGGED, SIG, LINK, ROOT), "inspect"),
    Case("deleted-event", delete_event, ("event missing from the log", "link", ROOT), "reading"),
    Case(
        "deleted-event-covered",
        delete_event_covered,
        ("covers more than the", ROOT),
        "reading",
        named=False,
    ),
    Case(
        "inserted-event",
        insert_event_at_end,
        ("events were added outside the ledger", HEADS),
        "size",
        named=False,
    ),
    Case("inserted-event-middle", insert_event_in_middle, (ROOT, HEADS), "ship", named=False),
    Case("reordered-events", reorder_events, (LINK, ROOT, "stored log node"), "reading"),
    Case("reordered-events-covered", reorder_events_covered, (ROOT, HEADS), "reading", named=False),
    Case("duplicated-event", duplicate_event, ("duplicate of the event at log index",), "size"),
    Case("swapped-key", swap_key, (SIG, "was not enrolled before this event"), "receive"),
    Case(
        "swapped-key-resigned",
        swap_key_resigned,
        ("was not enrolled before this event", ROOT, HEADS),
        "receive",
    ),
    Case("swapped-enrolment-subject", swap_enrolment_subject, (SIG, ROOT), "carrier_enrol"),
    # Nothing left names the deleted events; the report names the chain that lost its tail.
    Case("truncated-tail", truncate_tail, (f"chain of {LOT2}: stored head/length", HEADS)),
    Case("edited-chain-head", edit_chain_head, (f"chain of {LOT}: stored head", HEADS), names=LOT),
    Case("edited-log-node", edit_log_node, ("stored log node (4, 0) differs",), names="(4, 0)"),
    Case(
        "edited-checkpoint",
        edit_checkpoint,
        ("is not signed by the log key", "does not verify"),
        names="checkpoint at size",
    ),
    Case(
        "resigned-checkpoint",
        resign_checkpoint,
        ("is not signed by the log key", "no signature by test.local/log with key id", SIG),
        "reading",
    ),
    Case(
        "event-resigned-with-party-key",
        resign_event_with_party_key,
        (ROOT, HEADS),
        "reading",
        named=False,
    ),
]


def problems_text(report: Report) -> str:
    return "\n".join(str(problem) for problem in report.problems)


def test_intact_ledger_verifies(scene: Scene):
    report = verify_ledger(scene.world.store, scene.key, workers=1)
    assert report.ok, problems_text(report)
    assert report.log_size == report.events_checked == scene.idx["size"]
    assert report.chains_checked == len(list(scene.world.store.chains()))
    # The late probe2 reading: dated after the revocation time, logged before the revocation.
    assert len(report.warnings) == 1
    assert "revocation logged later" in report.warnings[0]
    assert verify_lot(scene.world.store, LOT, scene.key).events


def test_untouched_copy_verifies(scene: Scene, tmp_path: Path):
    store = Store(copy_db(scene.path, tmp_path / "copy.db"))
    assert verify_ledger(store, scene.key, workers=1).ok


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_tamper_is_detected(scene: Scene, tmp_path: Path, case: Case):
    store = Store(tamper_copy(scene, tmp_path, case.tamper))
    report = verify_ledger(store, scene.key, workers=1)
    text = problems_text(report)
    assert not report.ok
    for reason in case.reasons:
        assert reason in text, f"{reason!r} not in:\n{text}"
    if case.named and case.where is not None:
        index = scene.idx[case.where]
        named = [p for p in report.problems if p.index == index]
        assert named, f"no problem names log index {index}:\n{text}"
    if case.names is not None:
        assert case.names in text


# verify_ledger sees these tampers (a signed checkpoint no longer matches) but cannot say
# which event: the diverging index is only implied by which checkpoint sizes mismatch.
UNNAMED = [case for case in CASES if not case.named]


@pytest.mark.parametrize("case", UNNAMED, ids=lambda case: case.id)
def test_report_names_where_history_diverges(scene: Scene, tmp_path: Path, case: Case):
    store = Store(tamper_copy(scene, tmp_path, case.tamper))
    report = verify_ledger(store, scene.key, workers=1)
    assert not report.ok
    index = scene.idx[case.where]  # type: ignore[index]
    # Checkpoints are made per commit, so the best anyone can say is "in the commit that
    # logged index N": accept any index from the start of that commit up to N.
    start = max(size for size, _ in scene.world.store.checkpoints() if size <= index)
    where = range(start, index + 1)
    assert any(p.index in where for p in report.problems), problems_text(report)


def test_resigned_event_is_caught_only_by_the_log_root(scene: Scene, tmp_path: Path):
    """A party's key re-signs its own event: every signature verifies and every unkeyed
    hash was recomputed; only the checkpoints signed with the log key disagree."""
    store = Store(tamper_copy(scene, tmp_path, resign_event_with_party_key))
    report = verify_ledger(store, scene.key, workers=1)
    text = problems_text(report)
    assert SIG not in text and LOGGED not in text and LINK not in text
    first = scene.idx["reading"] + 1
    later = [size for size, _ in store.checkpoints() if size >= first]
    for size in later:
        assert f"the first {size} events {ROOT}" in text
    for size in [size for size, _ in store.checkpoints() if size < first]:
        assert f"the first {size} events {ROOT}" not in text


# --- key swaps in the identities table ----------------------------------------------------------


def test_forged_events_under_a_swapped_key_are_caught_once_logged(scene: Scene, tmp_path: Path):
    """The identities table is derived state: swap a key in it and the operator's ledger
    accepts the attacker's events (and signs checkpoints over them), but verify replays
    the enrolments from the log and names each forged event."""
    path = tamper_copy(
        scene,
        tmp_path,
        lambda db, s: db.execute(
            "UPDATE identities SET did = ? WHERE id = ?",
            (did_of(ATTACKER), s.identity_id("regulator")),  # may inspect any lot
        ),
    )
    store = Store(path)
    ledger = Ledger(store, scene.world.log_key, clock=lambda: scene.world.now)
    forged = sign(
        ATTACKER, kind="inspect", seq=10_000, time=at(6), data={"result": "fail"}, lots=[LOT]
    )
    (result,) = ledger.append([forged])
    assert result.status == "accepted", result  # the table was trusted
    report = verify_ledger(store, scene.key, workers=1)
    named = [p for p in report.problems if p.index == result.index]
    assert named and all(p.event_id == result.event_id for p in named)
    messages = " / ".join(p.message for p in named)
    assert f"signer {did_of(ATTACKER)} was not enrolled before this event" in messages
    assert "refuse this inspect on replay (unknown-signer" in messages


@pytest.mark.parametrize("column", ["did", "role"])
def test_swapped_identity_row_is_detected_before_use(scene: Scene, tmp_path: Path, column: str):
    """The registry tables are derived from enrol/revoke events: verify compares them."""
    value = did_of(ATTACKER) if column == "did" else "regulator"
    dc = scene.identity_id("dc")  # enrolled, has signed nothing yet
    path = tamper_copy(
        scene,
        tmp_path,
        lambda db, s: db.execute(f"UPDATE identities SET {column} = ? WHERE id = ?", (value, dc)),
    )
    report = verify_ledger(Store(path), scene.key, workers=1)
    assert not report.ok
    enrolment = scene.world.store.identity_by_id(dc).enrol_event  # type: ignore[union-attr]
    named = [p for p in report.problems if p.index == enrolment]
    assert named, problems_text(report)
    assert all("identities table" in p.message for p in named)


# --- derived tables and checkpoint rows ---------------------------------------------------------


def _give_lot_to_dc(db, scene):
    db.execute(
        "UPDATE lots SET custodian = ? WHERE id = ?",
        (scene.identity_id("dc"), chain_id_of(db, LOT)),
    )
    # what the quantity rules read: who holds how much
    db.execute("DELETE FROM holdings WHERE lot = ?", (chain_id_of(db, LOT),))
    db.execute(
        "INSERT INTO holdings (lot, party, held) VALUES (?, ?, 1)",
        (chain_id_of(db, LOT), scene.identity_id("dc")),
    )


def _make_dc_a_past_custodian(db, scene):
    db.execute(
        "INSERT INTO custodians (lot, party) VALUES (?, ?)",
        (chain_id_of(db, LOT), scene.identity_id("dc")),
    )


def _mark_lot2_recalled(db, scene):
    # A lift is checked against the recalls table (its active rows by source), so the
    # edit forges a direct recall there as well as the lots flag.
    lot2 = chain_id_of(db, LOT2)
    db.execute("UPDATE lots SET recalled = 1 WHERE id = ?", (lot2,))
    db.execute("INSERT INTO recalls (lot, source, event) VALUES (?, ?, 0)", (lot2, lot2))


@pytest.mark.parametrize(
    ("tamper", "who", "kind", "lot", "data"),
    [
        pytest.param(_give_lot_to_dc, "dc", "ship", LOT, {"to": "store"}, id="custodian"),
        pytest.param(
            _make_dc_a_past_custodian, "dc", "inspect", LOT, {"result": "fail"}, id="custody"
        ),
        pytest.param(
            _mark_lot2_recalled, "regulator", "recall-lift", LOT2, {"reason": "none"}, id="recalled"
        ),
    ],
)
def test_forbidden_event_accepted_after_lots_table_edit_is_detected(
    scene: Scene, tmp_path: Path, tamper, who: str, kind: str, lot: str, data: dict
):
    # The operator's own ledger (it holds the log key) keeps running on the edited database.
    store = Store(tamper_copy(scene, tmp_path, tamper))
    ledger = Ledger(store, scene.world.log_key, clock=lambda: scene.world.now)
    if "to" in data:
        data = {"to": scene.world.did(data["to"])}
    (result,) = ledger.append([scene.world.sign(who, kind, [lot], data, time=at(10))])
    # dc never received LOT; LOT43 was never recalled: the real ledger refuses them.
    assert result.status == "accepted"
    report = verify_ledger(store, scene.key, workers=1)
    assert any(p.index == result.index for p in report.problems), problems_text(report)


def test_chain_with_all_links_deleted_is_detected(scene: Scene, tmp_path: Path):
    path = tamper_copy(
        scene,
        tmp_path,
        lambda db, s: db.execute("DELETE FROM links WHERE chain = ?", (chain_id_of(db, LOT),)),
    )
    store = Store(path)
    with pytest.raises(VerificationError, match="0 events"):
        verify_lot(store, LOT, scene.key)
    report = verify_ledger(store, scene.key, workers=1)
    assert f"chain of {LOT}: stored head/length (11) differ from its links (0)" in (
        problems_text(report)
    )


def test_checkpoint_row_replaced_by_an_older_note(scene: Scene, tmp_path: Path):
    size = scene.idx["size"]

    def replace(db, s):
        older = db.execute("SELECT note FROM checkpoints WHERE size = ?", (size - 1,)).fetchone()
        db.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (older[0], size))

    report = verify_ledger(Store(tamper_copy(scene, tmp_path, replace)), scene.key, workers=1)
    text = problems_text(report)
    assert f"the latest checkpoint covers {size - 1} events but the log has {size}" in text
    assert "covers more than" not in text  # it does not: it is an older one


# --- rollback and truncation: only a checkpoint kept outside catches them ----------------------


def _grow(world: World) -> None:
    world.ledger.append([world.reading(2 + i / 10, 3.5) for i in range(3)])
    world.ok("regulator", "inspect", [LOT], {"result": "fail", "notes": "warm"}, time=at(8))


def test_rollback_is_not_detected_without_an_external_checkpoint(scene: Scene, tmp_path: Path):
    """Why checkpoints must be kept outside the database: an older copy of the database
    is a perfectly consistent, correctly signed ledger — just an older one."""
    old = Store(copy_db(scene.path, tmp_path / "old.db"))
    _grow(scene.world)
    assert verify_ledger(old, scene.key, workers=1).ok  # the rollback goes unnoticed


def test_rollback_is_detected_with_an_external_checkpoint(scene: Scene, tmp_path: Path):
    old = Store(copy_db(scene.path, tmp_path / "old.db"))
    _grow(scene.world)
    kept = scene.world.store.latest_checkpoint()  # a note saved by a witness after the growth
    assert kept is not None
    report = verify_ledger(old, scene.key, workers=1, external_checkpoint=kept)
    assert not report.ok
    size = scene.world.store.log_size()
    assert (
        f"the database holds {scene.idx['size']} events but the checkpoint you hold covers {size}"
        in problems_text(report)
    )
    assert "rolled back or truncated" in problems_text(report)


def test_external_checkpoint_from_before_growth_is_consistent(scene: Scene):
    kept = scene.world.store.latest_checkpoint()
    _grow(scene.world)
    report = verify_ledger(scene.world.store, scene.key, workers=1, external_checkpoint=kept)
    assert report.ok, problems_text(report)


def test_truncation_covered_is_detected_only_with_an_external_checkpoint(
    scene: Scene, tmp_path: Path
):
    kept = scene.world.store.latest_checkpoint()
    store = Store(tamper_copy(scene, tmp_path, truncate_tail_covered))
    assert verify_ledger(store, scene.key, workers=1).ok  # consistent in itself
    report = verify_ledger(store, scene.key, workers=1, external_checkpoint=kept)
    assert "the database was rolled back or truncated" in problems_text(report)


def test_rewritten_history_is_detected_by_an_external_checkpoint(scene: Scene, tmp_path: Path):
    """History rewritten and re-sealed, checkpoints dropped: the held checkpoint's root differs."""

    def rewrite(db, s):
        resign_event_with_party_key(db, s)
        db.execute("DELETE FROM checkpoints WHERE size > ?", (s.idx["reading"],))

    kept = scene.world.store.latest_checkpoint()
    store = Store(tamper_copy(scene, tmp_path, rewrite))
    report = verify_ledger(store, scene.key, workers=1, external_checkpoint=kept)
    assert f"the first {scene.idx['size']} events differ from the checkpoint you hold" in (
        problems_text(report)
    )


def test_external_checkpoint_by_another_key_is_refused(scene: Scene):
    note = scene.world.store.latest_checkpoint()
    assert note is not None
    body = note[: note.rfind("\n\n") + 1]
    forged = sign_note(body, "test.local/log", ATTACKER)
    report = verify_ledger(scene.world.store, scene.key, workers=1, external_checkpoint=forged)
    assert "the checkpoint you hold does not verify with this log key" in problems_text(report)


# --- one lot at a time ------------------------------------------------------------------------

LOT_EDITS = [
    pytest.param(edit_content, "reading", id="edited-content"),
    pytest.param(edit_signature, "reading", id="edited-signature"),
    pytest.param(edit_time, "reading", id="edited-time"),
    pytest.param(edit_signer, "ship", id="edited-signer"),
]


@pytest.mark.parametrize(("tamper", "where"), LOT_EDITS)
def test_verify_lot_names_the_edited_event(scene: Scene, tmp_path: Path, tamper, where: str):
    store = Store(tamper_copy(scene, tmp_path, tamper))
    index = scene.idx[where]
    (stored,) = [e for e in store.chain_events(store.chain_by_subject(LOT)[0]) if e.index == index]
    with pytest.raises(VerificationError) as caught:
        verify_lot(store, LOT, scene.key)
    message = str(caught.value)
    assert f"event {stored.envelope.event_id} (log index {index})" in message
    assert "changed after signing, or signed with another key" in message


def test_verify_lot_catches_a_covered_edit(scene: Scene, tmp_path: Path):
    store = Store(tamper_copy(scene, tmp_path, resign_event_with_party_key))
    with pytest.raises(VerificationError, match="the chain heads differ"):
        verify_lot(store, LOT, scene.key)


def test_verify_lot_only_vouches_for_its_own_lot(scene: Scene, tmp_path: Path):
    """A naive edit of another lot's event leaves this lot's proofs intact."""

    def edit_lot2(db, s):
        db.execute(
            "UPDATE events SET data = ? WHERE idx = ?",
            ('{"temperature_c":30}', s.idx["lot2_reading"]),
        )

    store = Store(tamper_copy(scene, tmp_path, edit_lot2))
    assert verify_lot(store, LOT, scene.key).events
    with pytest.raises(VerificationError, match=rf"log index {scene.idx['lot2_reading']}\)"):
        verify_lot(store, LOT2, scene.key)


def test_verify_lot_reports_a_deleted_event_as_a_verification_failure(scene: Scene, tmp_path: Path):
    """The bundle cannot even be built (a leaf under a proof is gone): that is a failed
    verification too, not a storage error."""
    store = Store(tamper_copy(scene, tmp_path, delete_event))
    with pytest.raises(VerificationError, match="missing") as caught:
        verify_lot(store, LOT, scene.key)
    assert LOT in str(caught.value)


# --- the command line -------------------------------------------------------------------------


def _cli_verify(scene: Scene, db: Path, tmp_path: Path):
    args = ["--db", str(db), "--keys", str(tmp_path / "keys"), "verify"]
    args += ["--log-key", did_of(scene.world.log_key)]
    return CliRunner().invoke(main, args)


def test_cli_verify_intact(scene: Scene, tmp_path: Path):
    result = _cli_verify(scene, copy_db(scene.path, tmp_path / "copy.db"), tmp_path)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith(f"OK {scene.idx['size']} events")
    assert "BROKEN" not in result.output
    assert "warning: " in result.output  # the late probe2 reading


def test_cli_verify_tampered(scene: Scene, tmp_path: Path):
    result = _cli_verify(scene, tamper_copy(scene, tmp_path, edit_content), tmp_path)
    assert result.exit_code == 1, result.output
    broken = [line for line in result.output.splitlines() if line.startswith("BROKEN ")]
    assert any(f"log index {scene.idx['reading']}: {SIG}" in line for line in broken)
    assert result.output.splitlines()[-1].startswith(f"FAILED: {len(broken)} problem(s)")


# --- several processes --------------------------------------------------------------------------


def test_parallel_verification_finds_a_tamper_in_the_second_chunk(
    scene: Scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(audit, "CHUNK", 8)
    monkeypatch.setattr(audit, "MIN_CHUNK", 8, raising=False)  # blocks are clamped to it
    size = scene.idx["size"]
    assert size > 2 * audit.CHUNK  # three chunks or more
    index = scene.idx["reading"]
    assert audit.CHUNK <= index < 2 * audit.CHUNK  # the tamper sits in the second chunk

    pools: list[int | None] = []

    class CountingPool(audit.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(kwargs.get("max_workers"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(audit, "ProcessPoolExecutor", CountingPool)

    intact = verify_ledger(scene.world.store, scene.key, workers=2)
    assert intact.ok and len(intact.warnings) == 1

    store = Store(tamper_copy(scene, tmp_path, edit_content))
    parallel = verify_ledger(store, scene.key, workers=2)
    serial = verify_ledger(store, scene.key, workers=1)
    assert pools == [2, 2]  # both parallel runs really used two processes
    assert [str(p) for p in parallel.problems] == [str(p) for p in serial.problems]
    assert parallel.warnings == serial.warnings
    assert parallel.events_checked == size
    assert {p.index for p in parallel.problems if p.event_id} == {index}
    assert f"log index {index}: {SIG}" in problems_text(parallel)


# --- the scan page ------------------------------------------------------------------------------

NOT_ABOUT_LOT = {"duplicated-event", "truncated-tail"}  # an extra log entry; LOT2's tail


def scan_integrity(store: Store, scene: Scene):
    from provenance.ledger.lot_view import Scanner

    scanner = Scanner(log_public_key=scene.key, clock=lambda: scene.world.now)
    return scanner.view(store, LOT).integrity


def test_scan_page_of_an_intact_lot_takes_the_logs_word_for_its_signatures(scene: Scene):
    integrity = scan_integrity(scene.world.store, scene)
    assert integrity.verified, integrity.problems
    covered = [s for s in scene.world.store.chain_events(1) if s.index < integrity.checkpoint_size]
    assert integrity.signatures_vouched == integrity.events > 0
    assert len(covered) <= integrity.events


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.id not in NOT_ABOUT_LOT], ids=lambda case: case.id
)
def test_scan_page_shows_tamper(scene: Scene, tmp_path: Path, case: Case):
    """The page of the tampered lot does not say "verified" though it takes the
    signed log's word for the signatures the ledger checked (docs/scan.md,
    "Integrity")."""
    store = Store(tamper_copy(scene, tmp_path, case.tamper), readonly=True)
    try:
        integrity = scan_integrity(store, scene)
    except (ProvenanceError, LookupError) as exc:  # the page refuses: also not "verified"
        assert "no lot" not in str(exc)
        return
    assert not integrity.verified, case.id
    assert integrity.problems or integrity.bad_signatures or not integrity.chain_intact


def resign_and_relink(db, scene):
    """The attacker holds the probe's key: a reading re-signed at the same seq, and
    the lot's chain links and head recomputed — but the log's leaves and nodes
    left as they were, so the newest event's inclusion proof still holds."""
    index = scene.idx["reading"]
    seq, time = db.execute("SELECT seq, time FROM events WHERE idx = ?", (index,)).fetchone()
    envelope = sign(
        scene.world.keys["probe"], kind="reading", seq=seq, time=time, data={"temperature_c": 30}
    )
    db.execute(
        "UPDATE events SET data = ?, sig = ? WHERE idx = ?",
        (envelope.data_json, envelope.signature, index),
    )
    path = db.execute("PRAGMA database_list").fetchone()[2]
    reader = Store(path, readonly=True)
    try:
        chain_id = reader.chain_by_subject(LOT)[0]
        events = reader.chain_events(chain_id)
    finally:
        reader.close()
    link = chains.genesis_link(LOT)
    for pos, stored in enumerate(events):
        link = chains.next_link(link, stored.envelope.id_bytes)
        db.execute("UPDATE links SET link = ? WHERE chain = ? AND pos = ?", (link, chain_id, pos))
    db.execute("UPDATE chains SET head = ? WHERE id = ?", (link, chain_id))


def test_scan_page_shows_a_resigned_event_whose_chain_was_relinked(scene: Scene, tmp_path: Path):
    """Every signature verifies, the chain recomputes to its stored head and the
    newest event is in the signed log: only the heads tree the checkpoint signed
    shows that the lot's history is not the one the log holds."""
    store = Store(tamper_copy(scene, tmp_path, resign_and_relink), readonly=True)
    integrity = scan_integrity(store, scene)
    assert integrity.chain_intact and integrity.included and not integrity.bad_signatures
    assert not integrity.verified
    assert any(
        "cannot confirm this lot's history" in problem
        or "differ from those the signed log commits to" in problem
        for problem in integrity.problems
    ), integrity.problems
