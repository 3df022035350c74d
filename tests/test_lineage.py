"""Lineage: the edges Ledger.append writes for every transform, the recursive
queries over them, `trace` (origins, depths, holders, quantities), the trace
CLI, and the migration that backfills an existing ledger."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.lineage import (
    BEFORE_LINEAGE_LOG_KEY,
    FIXTURES,
    commission,
    lot,
    ok_transform,
    transform,
)
from support.world import GTIN, World, at

from provenance.cli.context import Context
from provenance.cli.trace import command as trace_command
from provenance.core.errors import NotFound
from provenance.ledger.audit import verify_ledger
from provenance.ledger.lineage import held, trace
from provenance.store.db import Store

ROOT = Path(__file__).resolve().parent.parent


def edges(world: World) -> set[tuple[str, str]]:
    rows = world.store.conn.execute(
        "SELECT p.subject, c.subject FROM lineage l JOIN chains p ON p.id = l.parent "
        "JOIN chains c ON c.id = l.child"
    )
    return {(parent.rsplit("/", 1)[1], child.rsplit("/", 1)[1]) for parent, child in rows}


@pytest.fixture
def diamond(world):
    """A -> X, Y (a split); X + Y -> Z (a merge); B + Z -> P, Q (many in, many out)."""
    commission(world, "A")
    commission(world, "B")
    ok_transform(world, "farm", {"A": 60}, {"X": 30, "Y": 30}, unit_out="KGM")
    ok_transform(world, "farm", {"X": 30, "Y": 30}, {"Z": 50}, unit_out="KGM", hours=2)
    ok_transform(world, "farm", {"B": 20, "Z": 10}, {"P": 4, "Q": 6}, hours=3)
    return world


def test_every_input_output_pair_of_a_transform_is_an_edge_written_with_it(diamond):
    assert edges(diamond) == {
        ("A", "X"),
        ("A", "Y"),
        ("X", "Z"),
        ("Y", "Z"),
        ("B", "P"),
        ("B", "Q"),
        ("Z", "P"),
        ("Z", "Q"),
    }
    row = diamond.store.conn.execute(
        "SELECT l.in_value, l.in_unit, l.out_value, l.out_unit, l.event FROM lineage l "
        "JOIN chains p ON p.id = l.parent JOIN chains c ON c.id = l.child "
        "WHERE p.subject = ? AND c.subject = ?",
        (lot("B"), lot("Q")),
    ).fetchone()
    transform_index = diamond.store.chain_events(diamond.store.lot_by_uri(lot("Q")).id)[0].index
    assert row == (20, "KGM", 6, "EA", transform_index)


def test_indexes_serve_both_directions(world, engine):
    if engine == "postgres":  # a tiny table is scanned unless told not to
        world.store.conn.execute("SET enable_seqscan = off")
        plan = " ".join(
            str(row)
            for direction in ("parent", "child")
            for row in world.store.conn.execute(
                f"EXPLAIN SELECT * FROM lineage WHERE {direction} = 1"
            )
        )
        assert "lineage_child" in plan and "lineage_pkey" in plan and "Seq Scan" not in plan
        return
    plan = " ".join(
        str(row)
        for direction in ("parent", "child")
        for row in world.store.conn.execute(
            f"EXPLAIN QUERY PLAN SELECT * FROM lineage WHERE {direction} = 1"
        )
    )
    assert "lineage_child" in plan and "PRIMARY KEY" in plan and "SCAN" not in plan


def test_trace_forward_through_a_diamond_lists_each_lot_once_at_its_nearest_depth(diamond):
    result = trace(diamond.store, lot("A"), "forward")
    depths = {item.lot: item.depth for item in result.downstream}
    assert depths == {"X": 1, "Y": 1, "Z": 2, "P": 3, "Q": 3}
    assert result.upstream == () and result.origins == ()
    assert result.lot.children == (lot("X"), lot("Y"))
    assert result.lots[lot("Z")].parents == (lot("X"), lot("Y"))
    assert result.lots[lot("Z")].children == (lot("P"), lot("Q"))


def test_trace_back_finds_the_origins(diamond):
    result = trace(diamond.store, lot("P"), "back")
    assert result.origins == (lot("A"), lot("B"))
    assert {item.lot: item.depth for item in result.upstream} == {
        "B": 1,
        "Z": 1,
        "X": 2,
        "Y": 2,
        "A": 3,
    }
    assert result.downstream == ()
    # Only the edges that lead to P: Q is a sibling, not an ancestor.
    assert {(e.parent[-1], e.child[-1]) for e in result.edges} == {
        ("A", "X"),
        ("A", "Y"),
        ("X", "Z"),
        ("Y", "Z"),
        ("B", "P"),
        ("Z", "P"),
    }


def test_trace_both_ways_and_edge_quantities(diamond):
    result = trace(diamond.store, lot("Z"), "both")
    assert [item.lot for item in result.upstream] == ["X", "Y", "A"]
    assert [item.lot for item in result.downstream] == ["P", "Q"]
    assert result.origins == (lot("A"),)
    edge = next(e for e in result.edges if e.parent == lot("Z") and e.child == lot("Q"))
    assert str(edge.used) == "10 KGM" and str(edge.made) == "6 EA"
    assert len(edge.event_id) == 64
    stored = diamond.store.event_at(edge.event_index)
    assert stored.envelope.event_id == edge.event_id and stored.envelope.kind == "transform"


def test_a_commissioned_lot_is_its_own_origin(world):
    result = trace(world.store, world.lot, "both")
    assert result.origins == (world.lot,) and result.upstream == result.downstream == ()


def test_who_holds_each_lot_where_and_how_much(diamond):
    world = diamond
    dock = {"name": "Dock 4", "country": "KE"}
    shipped = world.ok(
        "farm", "ship", [lot("P")], {"to": world.did("dc"), "location": dock}, time=at(4)
    )
    world.ok("farm", "dispense", [lot("Q")], {"quantity": {"value": 2, "unit": "EA"}}, time=at(4))
    result = trace(world.store, lot("B"), "forward")
    p, q = result.lots[lot("P")], result.lots[lot("Q")]
    assert p.custodian.name == "farm" and p.in_transit_to.name == "dc"
    assert p.location == dock
    assert str(q.registered) == "6 EA" and str(q.held) == "4 EA"
    # B: 100 KGM commissioned, 20 KGM went into the transform.
    assert str(result.lot.registered) == "100 KGM" and str(result.lot.held) == "80 KGM"
    world.ok(
        "dc",
        "receive",
        [lot("P")],
        {"shipment": shipped.event_id, "location": {"name": "DC"}},
        time=at(5),
    )
    p = trace(world.store, lot("P"), "back").lot
    assert p.custodian.name == "dc" and p.custodian.role == "distributor"
    assert p.in_transit_to is None and p.location == {"name": "DC"}


def test_held_is_unknown_when_a_use_is_in_another_unit(world):
    """Only a ledger from before the quantity rules holds such a use (they
    refuse a unit not the lot's: tests/test_quantities.py)."""
    from provenance.store.migrations import QUANTITY_RULES_FROM

    commission(world, "A")  # 100 KGM
    with world.store.transaction():
        world.store.set_meta(QUANTITY_RULES_FROM, "1000000")
    world.ledger._forget()
    ok_transform(world, "farm", {"A": 5}, {"M": 1}, unit_in="LTR")
    state = world.store.lot_states([world.store.lot_by_uri(lot("A")).id])[0]
    assert state.used_other and held(state) is None
    assert trace(world.store, lot("A")).lot.held is None


def test_a_transform_output_just_commissioned_takes_the_transforms_quantity(world):
    commission(world, "A")
    commission(world, "M", value=7, unit="EA")
    ok_transform(world, "farm", {"A": 10}, {"M": 9}, location={"name": "Mill"})
    m = trace(world.store, lot("M"), "back").lot
    assert str(m.registered) == "9 EA" and m.location == {"name": "Mill"}


def test_cycles_are_impossible_by_construction(diamond):
    world = diamond
    # An output must be new (or just commissioned): an ancestor cannot become a child…
    again = transform(world, "farm", {"Z": 1}, {"A": 1}, hours=4)
    assert again.reason == "lot-exists"
    # … nor can a just-commissioned lot that has already gone into something.
    commission(world, "C")
    ok_transform(world, "farm", {"C": 1}, {"D": 1}, hours=4)
    assert transform(world, "farm", {"D": 1}, {"C": 1}, hours=5).reason == "lot-exists"
    # And a lot cannot be its own input and output (schema).
    with pytest.raises(Exception, match="only once"):
        world.sign(
            "farm",
            "transform",
            [lot("C")],
            {
                "inputs": [{"batch": lot("C"), "quantity": {"value": 1, "unit": "EA"}}],
                "outputs": [{"batch": lot("C"), "quantity": {"value": 1, "unit": "EA"}}],
            },
        )
    graph: dict[str, set[str]] = {}
    for parent, child in edges(world):
        graph.setdefault(parent, set()).add(child)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
            for nxt in graph.get(start, ())
        )

    assert not any(reaches(node, node, set()) for node in graph)


def test_unknown_lot_and_bad_direction(world):
    with pytest.raises(NotFound, match="no lot"):
        trace(world.store, lot("NOPE"))
    with pytest.raises(ValueError, match="direction"):
        trace(world.store, world.lot, "sideways")


def test_whole_ledger_verify_replays_lineage_and_catches_an_edited_edge(tmp_path):
    world = World.create(tmp_path)
    commission(world, "A")
    ok_transform(world, "farm", {"A": 10}, {"M": 2})
    assert verify_ledger(world.store, world.log_public_key, workers=1).ok
    world.store.conn.execute("UPDATE lineage SET out_value = 3")
    report = verify_ledger(world.store, world.log_public_key, workers=1)
    assert any("lineage table" in p.message for p in report.problems), report.problems


# --- the CLI


def cli_context(world: World, tmp_path: Path) -> Context:
    assert world.store.path is not None
    return Context(str(world.store.path), str(tmp_path / "keys"))


def test_trace_cli_prints_a_tree(tmp_path):
    world = World.create(tmp_path)
    commission(world, "A")
    ok_transform(world, "farm", {"A": 60}, {"X": 30, "Y": 30}, unit_out="KGM")
    ok_transform(world, "farm", {"X": 30, "Y": 30}, {"Z": 50}, unit_out="KGM", hours=2)
    world.ok("regulator", "recall", [lot("Y")], {"reason": "Listeria", "class": "I"})
    result = CliRunner().invoke(
        trace_command, [lot("A"), "--direction", "forward"], obj=cli_context(world, tmp_path)
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{GTIN}/A Product A · held by farm (producer) · 40 KGM of 100 KGM left"
    assert lines[1:] == [
        "",
        "went into (3 lots downstream)",
        f"   ├─ → {GTIN}/X X · held by farm (producer) · 0 KGM of 30 KGM left",
        f"   │  └─ → {GTIN}/Z Z · held by farm (producer) · 50 KGM of 50 KGM left  RECALLED",
        f"   └─ → {GTIN}/Y Y · held by farm (producer) · 0 KGM of 30 KGM left  RECALLED",
        f"      └─ → {GTIN}/Z (shown above)",
    ]
    back = CliRunner().invoke(trace_command, [lot("Z")], obj=cli_context(world, tmp_path))
    assert f"made from (3 lots upstream; origins: {GTIN}/A)" in back.output
    assert "went into: nothing yet" in back.output
    assert f"   ├─ ← {GTIN}/X X" in back.output


def test_trace_cli_json(tmp_path):
    world = World.create(tmp_path)
    commission(world, "A")
    ok_transform(world, "farm", {"A": 60}, {"X": 30}, unit_out="KGM")
    result = CliRunner().invoke(
        trace_command, [lot("X"), "--json"], obj=cli_context(world, tmp_path)
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["direction"] == "both" and out["origins"] == [lot("A")]
    assert out["lot"]["quantity"] == {
        "registered": {"value": 30, "unit": "KGM"},
        "held": {"value": 30, "unit": "KGM"},
    }
    assert out["upstream"][0]["uri"] == lot("A") and out["upstream"][0]["depth"] == 1
    assert out["upstream"][0]["custodian"]["name"] == "farm"
    assert out["edges"][0]["used"] == {"value": 60, "unit": "KGM"}


def test_trace_cli_unknown_lot_exits_1(tmp_path):
    world = World.create(tmp_path)
    result = CliRunner().invoke(trace_command, [lot("NOPE")], obj=cli_context(world, tmp_path))
    assert result.exit_code == 1
    assert f"no lot {lot('NOPE')} in this ledger" in result.output


# --- the migration on an existing ledger


def _drop_new_schema(path: Path) -> None:
    """Take a ledger back to the schema before lineage and recall sources."""
    import sqlite3

    conn = sqlite3.connect(path)
    conn.executescript(
        """
        DROP TABLE lineage; DROP TABLE recalls; DROP INDEX shipments_open;
        ALTER TABLE lots DROP COLUMN quantity; ALTER TABLE lots DROP COLUMN unit;
        ALTER TABLE lots DROP COLUMN used; ALTER TABLE lots DROP COLUMN used_other;
        ALTER TABLE lots DROP COLUMN location;
        DELETE FROM _migrations WHERE name IN ('0002_lineage', '0003_recall_sources');
        UPDATE lots SET recalled = 0;
        """
    )
    conn.commit()
    conn.close()


def _state(store: Store) -> dict[str, list]:
    return {
        "lineage": store.conn.execute("SELECT * FROM lineage ORDER BY 1, 2").fetchall(),
        "recalls": store.conn.execute("SELECT * FROM recalls ORDER BY 1, 2, 3").fetchall(),
        "lots": store.conn.execute(
            "SELECT id, quantity, unit, used, used_other, location, recalled FROM lots ORDER BY id"
        ).fetchall(),
    }


def test_migration_backfills_what_the_ledger_wrote(tmp_path):
    world = World.create(tmp_path)
    commission(world, "A")
    commission(world, "B")
    ok_transform(world, "farm", {"A": 60, "B": 5}, {"X": 30, "Y": 30}, unit_out="KGM")
    ok_transform(world, "farm", {"X": 30}, {"Z": 50}, hours=2, location={"name": "Mill"})
    world.ok("farm", "dispense", [lot("Y")], {"quantity": {"value": 3, "unit": "KGM"}})
    world.ship_and_receive("farm", "dc", [lot("Z")], 3)
    world.ok("regulator", "recall", [lot("A")], {"reason": "r1", "class": "I"})
    world.ok("regulator", "recall", [lot("X")], {"reason": "r2", "class": "II"})
    world.ok("regulator", "recall-lift", [lot("A")], {"reason": "clean"})
    path = world.store.path
    before = _state(world.store)
    assert before["lineage"] and before["recalls"]
    world.store.close()
    _drop_new_schema(path)
    store = Store(path)
    assert store.pending_migrations() == []
    assert _state(store) == before
    assert store.get_meta("recall_rules_from") == "0"  # these events were written under the rules
    assert verify_ledger(store, world.log_public_key, workers=1).ok


def test_a_ledger_written_by_the_previous_version_migrates_and_verifies(tmp_path):
    """A ledger written by the version before lineage (tests/fixtures/README.md):
    a recalled lot was shipped and transformed, as that version allowed. This
    version migrates it, backfills lineage and cascaded recall state, and `verify`
    still passes: the new refusals and the cascade's filing apply only to events
    appended after the migration."""
    shutil.copyfile(FIXTURES / "ledger-before-lineage.db", tmp_path / "ledger.db")
    key = bytes.fromhex(BEFORE_LINEAGE_LOG_KEY)
    store = Store(tmp_path / "ledger.db")
    assert {row[0] for row in store.conn.execute("SELECT name FROM _migrations")} >= {
        "0002_lineage",
        "0003_recall_sources",
    }
    report = verify_ledger(store, key, workers=1)
    assert report.ok, [str(p) for p in report.problems]
    traced = trace(store, lot("A"), "forward")
    assert [item.lot for item in traced.downstream] == ["M", "N"]
    # The cascade is state now: M was made before the recall and is recalled
    # through A; N was made after it (refused today, accepted then) and is not.
    assert traced.lots[lot("M")].recalled and not traced.lots[lot("N")].recalled
    assert str(traced.lot.held) == "5 KGM"
