"""Several `provenance ingest` nodes on one MQTT 5 shared subscription
(`--shared-group`) and one ledger file, as real processes against a real
Mosquitto: the broker hands one device's readings out round-robin, so each
node sees them out of `seq` order and the nodes' group commits interleave.
kill -9 of one node mid-stream loses nothing and stores nothing twice, the log
verifies, a redelivered or republished envelope is a duplicate and a reused
seq with other content is still refused (docs/ingest.md, "Several ingest
nodes"; docs/protocol.md §1)."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from typing import Any

import pytest
from support.ingest_process import SETTLE, Ingest, Ledger, Stream, wait_until, wire
from support.paths import ROOT

from provenance.ledger.audit import verify_ledger
from provenance.store.db import Store

GROUP = "ledger"
COUNT = 2000


@pytest.fixture
def ledger(tmp_path):
    return Ledger(tmp_path)


@pytest.fixture
def processes():
    running: list[Ingest] = []
    yield running
    with contextlib.ExitStack() as closing:
        for ingest in running:
            closing.callback(ingest.close)


def node(processes: list[Ingest], ledger: Ledger, broker: Any, name: str) -> Ingest:
    """One ingest node of the shared group; its client id names it, so that
    a restarted node takes over its own session (and what it had not acked)."""
    ingest = Ingest(
        ledger, broker.url, "--shared-group", GROUP, "--client-id", f"node-{name}", alone=False
    )
    processes.append(ingest)
    return ingest


def accepted_by(ingest: Ingest) -> int:
    """How many envelopes the node accepted, from its stop line."""
    found = re.findall(r"stopped \((\d+) accepted", ingest.output)
    assert found, ingest.output
    return int(found[-1])


@pytest.mark.slow
def test_two_nodes_kill_9_one_mid_stream_lose_and_duplicate_nothing(ledger, broker, processes):
    if not broker.mqtt5:
        pytest.skip("shared subscriptions need MQTT 5 (Mosquitto); amqtt has none")
    published = ledger.readings(COUNT)
    ledger.close_writer()
    a, b = node(processes, ledger, broker, "a"), node(processes, ledger, broker, "b")
    a.wait_for_line("subscribed to")
    b.wait_for_line("subscribed to")
    stream = Stream(broker, [wire(e) for e in published])
    stream.start()
    wait_until(lambda: ledger.count() >= 0.3 * COUNT, SETTLE, "30 % of the readings")
    a.kill9()  # mid-stream: what it had received and not acknowledged stays with its session
    wait_until(lambda: ledger.count() >= 0.5 * COUNT, SETTLE, "50 % of the readings")
    a = node(processes, ledger, broker, "a")  # its session comes back, with what it held
    a.wait_for_line("subscribed to")
    stream.wait_acknowledged()
    wait_until(lambda: ledger.count() >= COUNT, SETTLE, "every reading")
    stream.close()  # the next publisher has its client id

    # Republished: the same envelopes again are duplicates, wherever they land;
    # a reused seq with other content is refused as a replay.
    again = Stream(broker, [wire(e) for e in published[:40]])
    again.client.publish(
        "provenance/v1/gateways/truck7/events",
        wire(ledger.world.sign("probe", "reading", None, {"temperature_c": 9.0}, seq=5)),
        qos=1,
    )
    again.start()
    again.wait_acknowledged()
    wait_until(lambda: _rejects(ledger) == {"replay": 1}, SETTLE, "the replay refused")

    assert a.terminate() == 0, a.output
    assert b.terminate() == 0, b.output
    again.close()
    stored = ledger.stored()
    assert len(stored) == len(set(stored)) == COUNT, "a reading was lost or stored twice"
    assert sorted(stored) == sorted((e.signer, e.seq) for e in published)
    # One device's seqs reached the log out of order (two nodes, round-robin), all accepted.
    seqs = [seq for _, seq in stored]
    assert seqs != sorted(seqs)
    # Both shared the work: b took some, and a (the killed one, or its
    # successor with what the broker kept for its session) the rest.
    assert 0 < accepted_by(b) < COUNT
    assert accepted_by(a) + accepted_by(b) <= COUNT  # the first a's count died with it
    store = Store(ledger.db, readonly=True)
    try:
        report = verify_ledger(store, ledger.log_public_key)
        assert report.ok, report.problems[:3]
    finally:
        store.close()
    command = [sys.executable, str(ledger.runner), "--db", str(ledger.db), "--keys"]
    command += [str(ledger.keys), "verify", "--workers", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=SETTLE, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.startswith("OK"), done.stdout + done.stderr


def _rejects(ledger: Ledger) -> dict[str, int]:
    store = Store(ledger.db, readonly=True)
    try:
        return store.stats()["rejects"]
    finally:
        store.close()
