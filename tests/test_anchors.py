"""The anchored audit trail (docs/portal.md, docs/protocol.md §11): the trail's
hash chain against the `anchor` events in the log. Every entry rewritten,
removed or renumbered before the last anchor is caught, named (its id, or the
few entries between two anchors when every hash was recomputed); the `anchor`
kind never goes back; the anchorer's cadence is bounded and a stopped anchorer
leaves a whole anchor or none."""

from __future__ import annotations

import copy
import threading
import time

import pytest
from click.testing import CliRunner
from support.world import World

from provenance.cli.main import main
from provenance.core.trail import GENESIS, Anchor, TrailEntry, check_trail, entry_hash
from provenance.ledger.append import Ledger
from provenance.ledger.audit import verify_ledger
from provenance.ledger.reasons import CONFLICT, UNAUTHORISED
from provenance.ledger.trail_anchors import anchor_trail, trail_anchors, verify_anchored
from provenance.services.anchorer import MIN_EVERY_S, Anchorer
from provenance.store.accounts.accounts import Accounts
from provenance.store.accounts.audit_trail import TRAIL
from provenance.store.accounts.models import HashParams
from provenance.store.db import Store

FAST = HashParams(time_cost=1, memory_cost=8, parallelism=1)
WAIT = 30.0


# --- the pure check


def trail(n: int) -> list[TrailEntry]:
    out, previous = [], GENESIS
    for number in range(1, n + 1):
        fields = {"action": "search", "actor": f"user {number}", "params": {"q": number}}
        previous = entry_hash(previous, fields)
        out.append(TrailEntry(number, fields, previous))
    return out


def rechain(entries: list[TrailEntry]) -> list[TrailEntry]:
    """What an operator with the file does after an edit: recompute every hash
    and renumber the ids, so that nothing local gives it away."""
    out, previous = [], GENESIS
    for number, entry in enumerate(entries, 1):
        previous = entry_hash(previous, entry.fields)
        out.append(TrailEntry(number, entry.fields, previous))
    return out


def anchors_at(entries: list[TrailEntry], *counts: int) -> list[Anchor]:
    return [Anchor(c, entries[c - 1].stored_hash, 100 + c, "2026-01-01T00:00:00Z") for c in counts]


def test_an_intact_trail_matches_its_anchors_and_says_what_is_unanchored():
    entries = trail(10)
    report = check_trail(entries, anchors_at(entries, 3, 7))
    assert report.ok and report.checked == 10 and report.anchors == 2
    assert report.anchored == 7 and report.unanchored == 3


def test_an_edit_without_recomputing_names_the_entry():
    entries = trail(6)
    edited = copy.copy(entries)
    edited[2] = TrailEntry(3, {**entries[2].fields, "params": {"q": "x"}}, entries[2].stored_hash)
    problem = check_trail(edited, anchors_at(entries, 6)).problem
    assert problem.startswith("audit entry 3 (#3) was changed")
    removed = entries[:3] + entries[4:]
    assert check_trail(removed, ()).problem.startswith("audit entry 4 is missing")
    assert check_trail(entries[1:], ()).problem.startswith("audit entry 1 is missing")


@pytest.mark.parametrize("mode", ["rewrite", "delete"])
def test_every_recomputed_rewrite_or_deletion_before_the_last_anchor_is_caught(mode):
    """The class: for each entry before the last anchor, rewriting it (or
    deleting it) and recomputing every hash after it is caught, and the
    message names a span that holds that entry (just it, where the anchor
    cadence put an anchor on it)."""
    entries = trail(12)
    anchors = anchors_at(entries, 2, 5, 6, 9)
    spans = {1: (1, 2), 2: (1, 2), 3: (3, 5), 4: (3, 5), 5: (3, 5), 6: (6, 6), 7: (7, 9)}
    spans |= {8: (7, 9), 9: (7, 9)}
    for k in range(1, 10):
        changed = copy.copy(entries)
        if mode == "rewrite":
            changed[k - 1] = TrailEntry(k, {**entries[k - 1].fields, "outcome": "refused"}, "")
        else:
            del changed[k - 1]
        report = check_trail(rechain(changed), anchors)
        assert not report.ok, k
        first, last = spans[k]
        named = f"audit entry {first} " if first == last else f"audit entries {first}–{last} "
        assert named in report.problem, (k, report.problem)
    # after the last anchor, a rewrite is not provable yet: it is only unanchored
    tail = copy.copy(entries)
    tail[10] = TrailEntry(11, {**entries[10].fields, "outcome": "refused"}, "")
    late = check_trail(rechain(tail), anchors)
    assert late.ok and late.unanchored == 3


def test_a_trail_cut_short_before_its_last_anchor_is_caught():
    entries = trail(8)
    report = check_trail(entries[:5], anchors_at(entries, 3, 8))
    assert "has 5 entries but the anchor at log index 108" in report.problem
    assert "entries #6–#8 were removed" in report.problem


# --- the anchor kind


def anchor(world: World, who: str, count: int, head: str = "ab" * 32, trail_name: str = TRAIL):
    return world.append(who, "anchor", None, {"trail": trail_name, "count": count, "head": head})


def test_anchors_only_go_forward_and_only_the_operator_signs_them(file_world):
    world = file_world
    assert anchor(world, "registrar", 3).status == "accepted"
    back = anchor(world, "registrar", 3)
    assert back.reason == CONFLICT and "anchored at 3 entries already" in back.message
    assert anchor(world, "registrar", 2).reason == CONFLICT
    assert anchor(world, "registrar", 4).status == "accepted"
    assert anchor(world, "registrar", 1, trail_name="other").status == "accepted"  # its own chain
    assert anchor(world, "regulator", 9).reason == UNAUTHORISED
    assert anchor(world, "farm", 9).reason == UNAUTHORISED
    # two anchors in one batch: the second may not go back either
    data = [{"trail": TRAIL, "count": n, "head": "cd" * 32} for n in (9, 8)]
    batch = [world.sign("registrar", "anchor", None, item) for item in data]
    results = world.ledger.append(batch)
    assert [r.status for r in results] == ["accepted", "rejected"]
    assert [a.count for a in trail_anchors(world.store, TRAIL)] == [3, 4, 9]
    assert verify_ledger(world.store, world.log_public_key).ok  # the audit replays them


# --- the real trail, its file and the log


@pytest.fixture
def portal(file_world, tmp_path):
    accounts = Accounts(tmp_path / "accounts", secret=b"s" * 32, hash_params=FAST)
    yield file_world, accounts
    accounts.close()


def write(accounts: Accounts, n: int, start: int = 0) -> None:
    for number in range(start, start + n):
        accounts.audit(f"user u{number}", "search", {"q": number}, role="regulator")


def tamper(accounts: Accounts, change) -> None:
    """The operator with the file: drops the guards, changes the rows as
    *change* says, and recomputes every hash so the chain alone looks fine."""
    conn = accounts.conn
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("DROP TRIGGER audit_no_delete")
    change(conn)
    previous = GENESIS
    for entry in list(accounts.trail_entries()):
        previous = entry_hash(previous, entry.fields)
        conn.execute("UPDATE audit SET hash = ? WHERE id = ?", (previous, entry.id))


def cli_verify(world: World, accounts: Accounts):
    args = ["--db", str(world.store.path), "portal", "--accounts", str(accounts.directory)]
    return CliRunner().invoke(main, [*args, "audit", "--verify"])


def test_a_rebuilt_trail_is_caught_against_the_log_naming_the_entry(portal):
    world, accounts = portal
    write(accounts, 4)
    assert anchor_trail(world.ledger, world.registrar, TRAIL, accounts.audit_head).status == (
        "accepted"
    )
    assert anchor_trail(world.ledger, world.registrar, TRAIL, accounts.audit_head) is None
    write(accounts, 1, start=4)
    anchor_trail(world.ledger, world.registrar, TRAIL, accounts.audit_head)
    write(accounts, 2, start=5)  # not anchored yet
    good = cli_verify(world, accounts)
    assert good.exit_code == 0, good.output
    assert "OK 7 audit entries" in good.output and "2 anchor(s)" in good.output
    assert "newest 2 entries are not anchored yet" in good.output
    # entry 5 (the only one between the two anchors) rewritten, every hash recomputed
    tamper(accounts, lambda c: c.execute("UPDATE audit SET outcome = 'refused' WHERE id = 5"))
    assert accounts.verify_audit() == (7, None)  # the chain alone cannot tell
    caught = cli_verify(world, accounts)
    assert caught.exit_code == 1 and "BROKEN audit entry 5 was rewritten" in caught.output
    report = verify_anchored(list(accounts.trail_entries()), world.store, TRAIL)
    assert "log index" in report.problem


def test_a_deleted_entry_is_caught_even_with_ids_renumbered(portal):
    world, accounts = portal
    write(accounts, 5)
    anchor_trail(world.ledger, world.registrar, TRAIL, accounts.audit_head)

    def delete_and_renumber(conn):
        conn.execute("DELETE FROM audit WHERE id = 2")
        conn.execute("UPDATE audit SET id = id - 1 WHERE id > 2")

    tamper(accounts, delete_and_renumber)
    caught = cli_verify(world, accounts)
    assert caught.exit_code == 1, caught.output
    assert "covers 5: entries #5–#5 were removed" in caught.output


# --- the anchorer


def test_the_anchorer_keeps_its_cadence_and_stops_cleanly(portal):
    world, accounts = portal
    path = world.store.path
    with pytest.raises(ValueError, match=r"0\.05 to 86400"):
        Anchorer(lambda: None, world.registrar, TRAIL, accounts.audit_head, every=0)
    every = MIN_EVERY_S
    anchorer = Anchorer(
        lambda: Ledger(Store(path), world.log_key), world.registrar, TRAIL, accounts.audit_head,
        every=every,
    ).start()  # fmt: skip
    began = time.monotonic()
    deadline = began + WAIT
    number = 0
    try:
        while anchorer.anchored < 3 and time.monotonic() < deadline:
            write(accounts, 1, start=number)  # the trail keeps growing meanwhile
            number += 1
    finally:
        assert anchorer.stop()
    elapsed = time.monotonic() - began
    assert anchorer.anchored >= 3 and anchorer.failures == 0
    assert anchorer.anchored <= elapsed / every + 1  # at most one anchor per round
    reader = Store(path)
    try:
        counts = [a.count for a in trail_anchors(reader, TRAIL)]
        assert counts == sorted(set(counts)) and len(counts) == anchorer.anchored
        assert verify_anchored(list(accounts.trail_entries()), reader, TRAIL).ok
        assert verify_ledger(reader, world.log_public_key).ok
    finally:
        reader.close()


def test_stopping_during_a_round_leaves_a_whole_anchor(portal):
    world, accounts = portal
    write(accounts, 3)
    entered, release = threading.Event(), threading.Event()

    def slow_head():
        entered.set()
        assert release.wait(WAIT)
        return accounts.audit_head()

    path = world.store.path
    anchorer = Anchorer(
        lambda: Ledger(Store(path), world.log_key), world.registrar, TRAIL, slow_head,
        every=MIN_EVERY_S,
    ).start()  # fmt: skip
    assert entered.wait(WAIT)
    assert anchorer.stop(timeout=0.01) is False  # a round is in progress: it is not cut short
    release.set()
    assert anchorer.stop()
    reader = Store(path)
    try:
        (only,) = trail_anchors(reader, TRAIL)
        assert only.count == 3 and only.head == accounts.audit_head()[1]
        assert verify_ledger(reader, world.log_public_key).ok
    finally:
        reader.close()


@pytest.mark.parametrize("every", ["0.001", "-1", "nan", "inf", "1e9"])
def test_serve_refuses_a_cadence_below_the_bound(tmp_path, every):
    result = CliRunner().invoke(
        main, ["--db", str(tmp_path / "x.db"), "serve", f"--anchor-every={every}"]
    )
    assert result.exit_code == 2, result.output
    assert "--anchor-every" in result.output and "from 0.05 to 86400 seconds" in result.output


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"count": 0}, "data.count"),
        ({"count": True}, "data.count"),
        ({"count": 2**53}, "data.count"),
        ({"count": "3"}, "data.count"),
        ({"head": "AB" * 32}, "data.head"),
        ({"head": "ab" * 31}, "data.head"),
        ({"trail": "Portal Trail"}, "data.trail"),
        ({"trail": "x" * 65}, "data.trail"),
    ],
)
def test_an_anchor_says_exactly_trail_count_and_head(change, field):
    from provenance.core.errors import ValidationError
    from provenance.core.kinds import validate_data

    data = {"trail": TRAIL, "count": 3, "head": "ab" * 32, **change}
    with pytest.raises(ValidationError) as caught:
        validate_data("anchor", data, None)
    assert caught.value.field == field


# --- the CLI's ledger actions, through the command line


def test_cli_ledger_actions_join_the_anchored_trail(tmp_path):
    env = {"PROVENANCE_DB": str(tmp_path / "p.db"), "PROVENANCE_KEYS": str(tmp_path / "keys")}
    runner = CliRunner()

    def run(*args: str, code: int = 0, **kwargs) -> str:
        result = runner.invoke(main, list(args), env=env, **kwargs)
        assert result.exit_code == code, (args, result.output)
        return result.output

    run("init")
    run("party", "add", "Farm", "--role", "producer", "--prefix", "9506000")
    assert not (tmp_path / "accounts").exists()  # no portal: no trail is made for it
    run("user", "add", "root", "--role", "admin", "--password-stdin", input="x" * 12 + "\n")
    run("party", "add", "Haulier", "--role", "carrier")
    run("party", "grant", "Farm", "--prefix", "9506000", code=1)  # refused: written as such
    accounts = Accounts(tmp_path / "accounts", hash_params=FAST)
    try:
        entries = {e.action: e for e in accounts.audit_entries()}
        enrol = entries["ledger-enrol"]
        assert enrol.actor.startswith("cli") and enrol.params["kind"] == "enrol"
        refused = entries["ledger-grant"]
        assert refused.outcome.startswith("refused: conflict: Farm already holds")
        assert "anchored the audit trail at" in run("portal", "anchor")
        assert "nothing to anchor" in run("portal", "anchor")
        assert "OK " in run("portal", "audit", "--verify")

        def hide_the_enrolment(conn):
            conn.execute(f"DELETE FROM audit WHERE id = {enrol.id}")
            conn.execute(f"UPDATE audit SET id = id - 1 WHERE id > {enrol.id}")

        tamper(accounts, hide_the_enrolment)
        broken = run("portal", "audit", "--verify", code=1)
        assert broken.startswith("BROKEN ") and "removed" in broken
    finally:
        accounts.close()
