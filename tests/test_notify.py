"""Retained recall notices: the pure notice, the notifier's cursor and retries,
and the real thing: `provenance notify` against a real broker, with a
subscriber that arrives after the recall and still gets every affected lot."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.broker import Collector, Retained
from support.lineage import commission, lot, ok_transform
from support.world import GTIN, World

from provenance.cli.context import Context
from provenance.cli.notify import command as notify_command
from provenance.core.notice import RECALL_FORMAT
from provenance.infra.broker_url import BrokerURL
from provenance.ledger.lineage import recall_history
from provenance.services.notifier import Cursor, RecallNotifier, RetainedPublisher
from provenance.services.recall_notice import build_notice, notice_bytes, notice_topic

WAIT = 30.0  # every wait has this deadline; a healthy run needs a fraction of it
RECALLS = "provenance/v1/recalls/#"  # every recall notice
RECALL = {"reason": "Listeria", "class": "I", "instructions": "Do not eat"}


@pytest.fixture
def family(tmp_path):
    """A -> B -> C and B -> D, in a ledger file."""
    world = World.create(tmp_path)
    commission(world, "A")
    commission(world, "Z")
    ok_transform(world, "farm", {"A": 10}, {"B": 10}, unit_out="KGM")
    ok_transform(world, "farm", {"B": 5}, {"C": 2, "D": 3}, hours=2)
    return world


def state_of(world: World, code: str):
    return world.store.lot_states([world.store.lot_by_uri(lot(code)).id])[0]


def test_topic_uses_the_lot_as_encoded_in_its_uri():
    assert notice_topic(lot("LOT42")) == f"provenance/v1/recalls/{GTIN}/LOT42"
    odd = f"https://id.gs1.org/01/{GTIN}/10/A%2FB%2B1"  # lot "A/B+1"
    assert notice_topic(odd) == f"provenance/v1/recalls/{GTIN}/A%2FB%2B1"


def test_notice_is_the_lots_current_state(family):
    world = family
    recall = world.ok("regulator", "recall", [lot("A")], RECALL)
    records = recall_history(world.store, lot("C"))
    notice = build_notice(state_of(world, "C"), records, origin="test.local/log", log_size=42)
    assert notice["format"] == RECALL_FORMAT and notice["recalled"] is True
    assert notice["lot"] == lot("C") and notice["gtin"] == GTIN and notice["lot_code"] == "C"
    (active,) = notice["recalls"]
    assert active["source"] == lot("A") and active["direct"] is False
    assert active["class"] == "I" and active["instructions"] == "Do not eat"
    assert active["event_id"] == recall.event_id and active["regulator"]["name"] == "regulator"
    assert notice["custodian"]["name"] == "farm" and notice["held"] == {"value": 2, "unit": "EA"}
    assert notice["log"] == {"origin": "test.local/log", "size": 42}
    assert json.loads(notice_bytes(notice)) == notice
    lift = world.ok("regulator", "recall-lift", [lot("A")], {"reason": "Clean"})
    records = recall_history(world.store, lot("C"))
    lifted = build_notice(state_of(world, "C"), records, origin="o", log_size=43)
    assert lifted["recalled"] is False and lifted["recalls"] == []
    assert lifted["lifted"][0]["lifted"]["event_id"] == lift.event_id


def topic(code: str) -> str:
    return f"provenance/v1/recalls/{GTIN}/{code}"


def test_notifier_publishes_each_affected_lot_once_and_keeps_a_cursor(family, tmp_path):
    world = family
    publish = Collector()
    cursor = Cursor(tmp_path / "cursor")
    notifier = RecallNotifier(world.store, publish, cursor)
    assert notifier.poll() == 0 and cursor.load() == world.store.log_size()
    world.ok("regulator", "recall", [lot("A")], RECALL)
    world.ok("regulator", "recall", [lot("B")], {"reason": "Glass", "class": "II"})
    assert notifier.poll() == 4
    (sent,) = publish.rounds
    assert set(sent) == {topic(code) for code in "ABCD"}
    assert len(sent[topic("C")]["recalls"]) == 2 and sent[topic("A")]["recalled"]
    assert notifier.poll() == 0 and len(publish.rounds) == 1  # nothing new
    world.ok("regulator", "recall-lift", [lot("A")], {"reason": "Clean"})
    assert notifier.poll() == 4
    after = publish.rounds[-1]
    assert after[topic("A")]["recalled"] is False
    assert after[topic("C")]["recalled"] is True  # still, through B
    assert [r["source"] for r in after[topic("C")]["recalls"]] == [lot("B")]
    # A fresh notifier with the same cursor file starts where this one stopped.
    assert RecallNotifier(world.store, Collector(), Cursor(tmp_path / "cursor")).poll() == 0


def test_unacknowledged_notices_go_again(family, tmp_path):
    world = family
    cursor = Cursor(tmp_path / "cursor")
    failing = RecallNotifier(world.store, Collector(ok=False), cursor)
    world.ok("regulator", "recall", [lot("B")], RECALL)
    assert failing.poll() == 0 and failing.behind and cursor.load() == 0
    publish = Collector()
    assert RecallNotifier(world.store, publish, cursor).poll() == 3
    assert set(publish.rounds[0]) == {topic(code) for code in "BCD"}


# --- against a real broker


def notify_once(world: World, broker, tmp_path: Path) -> str:
    ctx = Context(str(world.store.path), str(tmp_path / "keys"))
    result = CliRunner().invoke(
        notify_command,
        ["--broker", broker.url, "--once", "--cursor", str(tmp_path / "cursor")],
        obj=ctx,
    )
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_a_late_subscriber_gets_the_retained_notice_of_every_affected_lot(family, broker, tmp_path):
    world = family
    world.ok("regulator", "recall", [lot("A")], RECALL)
    assert "published 4 recall notices" in notify_once(world, broker, tmp_path)
    late = Retained(broker, "late", RECALLS)  # subscribes after the notices went out
    try:
        assert late.wait_for(lambda got: set(got) == {topic(code) for code in "ABCD"})
        assert all(notice["recalled"] for notice in late.latest.values())
        assert late.latest[topic("D")]["recalls"][0]["source"] == lot("A")
    finally:
        late.close()
    world.ok("regulator", "recall-lift", [lot("A")], {"reason": "Clean"})
    notify_once(world, broker, tmp_path)
    later = Retained(broker, "later", RECALLS)
    try:
        assert later.wait_for(
            lambda got: len(got) == 4 and not any(n["recalled"] for n in got.values())
        )
        assert later.latest[topic("C")]["lifted"][0]["lifted"]["reason"] == "Clean"
    finally:
        later.close()


def test_the_service_follows_the_ledger(family, broker, tmp_path):
    world = family
    watcher = Retained(broker, "watcher", RECALLS)
    publisher = RetainedPublisher(BrokerURL.parse(broker.url), "test-notify").start()
    notifier = RecallNotifier(
        world.store.__class__(world.store.path), publisher, Cursor(tmp_path / "c")
    )
    stop = threading.Event()
    thread = threading.Thread(target=notifier.run, args=(stop, 0.05), daemon=True)
    thread.start()
    try:
        world.ok("regulator", "recall", [lot("B")], RECALL)
        assert watcher.wait_for(lambda got: set(got) == {topic(code) for code in "BCD"})
        assert watcher.latest[topic("C")]["recalls"][0]["class"] == "I"
    finally:
        stop.set()
        thread.join(WAIT)
        publisher.stop()
        watcher.close()
    assert not thread.is_alive()
