"""The commit worker and its prep processes, without a broker.

`WorkerBackend` is driven directly: groups go in back to back (so the worker
pipelines and merges them), each answer must match its own messages, and a
prep process or the worker itself killed mid-stream must cost nothing but
time. The prep path (`prepare` → `items_of` → `commit_batch`) must judge every
input exactly as the ledger judges it raw. Every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from support.ingest import GATEWAY_TOPIC, PROBE_TOPIC, bad_inputs, payloads, readings, wire
from support.world import World

from provenance.core import topics
from provenance.core.envelope import Envelope, signature_checked
from provenance.ingest.backend import WorkerBackend
from provenance.ingest.commit import BatchResult, commit_batch
from provenance.ingest.decode import decode_message
from provenance.ingest.errors import IngestError
from provenance.ingest.inbox import Message
from provenance.ingest.prepare import items_of, prepare
from provenance.ledger.audit import verify_ledger

SETTLE = 60.0


class Driver:
    """A WorkerBackend on a world's database, collecting what it settles."""

    def __init__(self, world: World, prep_processes: int | None = None):
        self.settled: list[tuple[list[Message], BatchResult | None]] = []
        self.errors: list[IngestError] = []
        self._changed = threading.Condition()
        self.abandon = threading.Event()
        assert world.store.path is not None
        self.backend = WorkerBackend(
            world.store.path,
            world.log_key,
            self._settle,
            self.abandon,
            self.errors.append,
            prep_processes,
        )
        self.note = self.backend.open()
        self.mid = 0

    def _settle(self, batch: list[Message], result: BatchResult | None) -> None:
        with self._changed:
            self.settled.append((batch, result))
            self._changed.notify_all()

    def submit(self, topic: str, *payloads: bytes) -> None:
        batch = []
        for payload in payloads:
            self.mid += 1
            batch.append(Message(topic, payload, self.mid, 1, 1, None))
        self.backend.submit(batch)

    def wait_settled(self, messages: int) -> list[tuple[Message, list[Any]]]:
        """(message, its item results) for the first *messages* settled, in order."""
        deadline = time.monotonic() + SETTLE
        with self._changed:
            while sum(len(batch) for batch, _ in self.settled) < messages:
                remaining = deadline - time.monotonic()
                assert remaining > 0 and not self.errors, (len(self.settled), self.errors)
                self._changed.wait(remaining)
            out = []
            for batch, result in self.settled:
                assert result is not None, "a group was given up on"
                assert len(result.messages) == len(batch)
                out.extend(zip(batch, result.messages, strict=True))
            return out

    def close(self) -> None:
        self.backend.close(10)


@pytest.fixture
def world(tmp_path):
    made = World.create(tmp_path)
    yield made
    made.ledger.close()
    made.store.close()


def _prep_pids(backend: WorkerBackend) -> list[int]:
    assert backend.process is not None
    worker = backend.process.pid
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == worker and b"spawn_main" in command:
                found.append(int(entry.name))
    return found


@pytest.mark.external
def test_groups_are_answered_in_order_each_with_its_own_results(world):
    envelopes = readings(world, 400)
    stranger = world.reading(9, 5.0).to_json() | {"seq": 10**6}  # signature no longer matches
    driver = Driver(world)
    try:
        assert driver.note == world.store.latest_checkpoint()
        expected: list[list[str]] = []  # per message: the status of each envelope
        for offset in range(0, 300, 10):  # 30 groups of singles, sent back to back
            group = envelopes[offset : offset + 10]
            driver.submit(PROBE_TOPIC, *(wire(e) for e in group))
            expected += [["accepted"]] * len(group)
        for offset in range(300, 400, 25):  # arrays, with a bad signature and a repeat
            array = [e.to_json() for e in envelopes[offset : offset + 25]] + [stranger]
            driver.submit(GATEWAY_TOPIC, json.dumps(array).encode(), wire(envelopes[offset]))
            expected += [["accepted"] * 25 + ["rejected"], ["duplicate"]]
        driver.submit(PROBE_TOPIC, b"not json")
        expected.append(["rejected"])
        settled = driver.wait_settled(len(expected))
    finally:
        driver.close()
    assert [[item.status for item in items] for _, items in settled] == expected
    for message, items in settled[:300]:  # each message got its own envelope's result
        assert items[0].event_id == _event_id(json.loads(message.payload))
    assert world.store.stats()["events"]["reading"] == len(envelopes)
    assert world.store.stats()["rejects"] == {"bad-signature": 4, "malformed": 1}
    assert verify_ledger(world.store, world.log_public_key).ok


def _event_id(envelope: dict[str, Any]) -> str:
    return Envelope.from_json(envelope).event_id


@pytest.mark.external
def test_a_killed_prep_process_costs_nothing_but_time(world):
    envelopes = readings(world, 600)
    driver = Driver(world)
    try:
        preps = _prep_pids(driver.backend)
        assert len(preps) == (os.cpu_count() or 1)
        arrays = [
            json.dumps([e.to_json() for e in envelopes[offset : offset + 50]]).encode()
            for offset in range(0, len(envelopes), 50)
        ]
        for array in arrays[:6]:
            driver.submit(GATEWAY_TOPIC, array)
        os.kill(preps[0], signal.SIGKILL)
        for array in arrays[6:]:
            driver.submit(GATEWAY_TOPIC, array)
        settled = driver.wait_settled(12)
        assert all(item.status == "accepted" for _, items in settled for item in items)
        assert sorted(_prep_pids(driver.backend)) != sorted(preps)  # replaced
    finally:
        driver.close()
    assert world.store.stats()["events"]["reading"] == len(envelopes)
    assert world.store.stats()["rejects"] == {}


@pytest.mark.external
def test_a_killed_worker_is_replaced_and_gets_every_unanswered_group_again(world):
    envelopes = readings(world, 400)
    driver = Driver(world)
    try:
        first = driver.backend.process
        assert first is not None
        for offset in range(0, 200, 20):
            driver.submit(PROBE_TOPIC, *(wire(e) for e in envelopes[offset : offset + 20]))
        first.send_signal(signal.SIGKILL)
        for offset in range(200, 400, 20):
            driver.submit(PROBE_TOPIC, *(wire(e) for e in envelopes[offset : offset + 20]))
        settled = driver.wait_settled(len(envelopes))
        assert driver.backend.process is not first
    finally:
        driver.close()
    statuses = [items[0].status for _, items in settled]
    assert set(statuses) <= {"accepted", "duplicate"}  # a commit it made before dying: duplicate
    assert [json.loads(m.payload)["seq"] for m, _ in settled] == [e.seq for e in envelopes]
    assert world.store.stats()["events"]["reading"] == len(envelopes)
    assert verify_ledger(world.store, world.log_public_key).ok


@pytest.mark.external
def test_without_prep_processes_the_worker_verifies_by_itself(world):
    envelopes = readings(world, 30)
    driver = Driver(world, prep_processes=0)
    try:
        assert _prep_pids(driver.backend) == []
        driver.submit(PROBE_TOPIC, *(wire(e) for e in envelopes))
        settled = driver.wait_settled(len(envelopes))
    finally:
        driver.close()
    assert all(items[0].status == "accepted" for _, items in settled)


def test_prepared_items_are_judged_exactly_like_raw_ones(file_world):
    world = file_world
    cases = bad_inputs(world)
    messages = [
        (topics.events_topic("devices", f"bad-{name}"), payload, True)
        for name, (payload, _) in cases.items()
    ]
    valid = readings(world, 3, start=3.0)
    messages += [(PROBE_TOPIC, wire(e), True) for e in valid]
    prepared = [items_of(records) for records in prepare([p for _, p, _ in messages])]
    # Only well-formed, validly signed envelopes come back verified; the ledger's
    # rules (signer, replay, time, authorisation, lots) still judge them.
    ruled = {"unknown-signer", "unknown-device", "replay", "revoked", "future-time"}
    ruled |= {"unauthorised", "unknown-lot"}
    verified = [signature_checked(items[0]) for items in prepared]
    assert verified == [reason in ruled for _, reason in cases.values()] + [True] * len(valid)
    result = commit_batch(world.ledger, messages, prepared)
    got = [items[0].reason for items in result.messages]
    assert got == [reason for _, reason in cases.values()] + [None] * len(valid)
    assert all(items[0].time_us is not None for items in result.messages[-len(valid) :])
    expected: dict[str, int] = {}
    for _, reason in cases.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert world.store.stats()["rejects"] == expected
    sources = {row[3] for row in world.store.rejects()}
    assert sources == {topic for topic, _, _ in messages[: len(cases)]}
    assert verify_ledger(world.store, world.log_public_key).ok


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads({"v": 1, "kind": "reading", "seq": 1, "time": "2026-09-21T15:00:00Z"}))
def test_prepare_never_raises_and_keeps_one_record_per_item(payload):
    (records,) = prepare([payload])
    assert len(records) == len(decode_message(payload))
    assert not any(verified for verified, _ in records)  # nothing here is validly signed
    assert len(items_of(records)) == len(records)
