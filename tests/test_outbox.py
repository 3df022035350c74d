"""devices.outbox: the persistent store-and-forward queue (order, durability
across kill -9, thread safety, bounds, one owner per file)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from support.children import read_lines
from support.paths import ROOT

from devices.outbox import Outbox, OutboxEntry, OutboxFull, OutboxLocked
from provenance.core.errors import ProvenanceError, ValidationError

TOPIC = "provenance/v1/devices/probe-1/events"
OTHER = "provenance/v1/gateways/truck-7/events"


def drain(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> list[bytes]:
    """Everything left in a dead child's stdout (complete lines only)."""
    return read_lines(proc, sys.maxsize, timeout)


# --- order, peek, ack ------------------------------------------------------------------------


def test_put_peek_ack_keep_order():
    box = Outbox(None)
    ids = [box.put(TOPIC if n % 2 else OTHER, b'{"n":%d}' % n) for n in range(10)]
    assert ids == sorted(ids) and len(set(ids)) == 10
    assert len(box) == 10
    entries = box.peek(4)
    assert [entry.id for entry in entries] == ids[:4]
    assert [entry.payload for entry in entries] == [b'{"n":%d}' % n for n in range(4)]
    assert entries[0].topic == OTHER and entries[1].topic == TOPIC
    assert isinstance(entries[0], OutboxEntry) and entries[0].created_us > 0
    assert [entry.id for entry in box.peek(100, after=ids[6])] == ids[7:]
    box.ack([ids[0], ids[2], 999_999])  # unknown ids are ignored
    assert len(box) == 8
    assert [entry.id for entry in box.peek(3)] == [ids[1], ids[3], ids[4]]
    box.ack(ids)
    assert len(box) == 0 and box.peek(10) == []
    box.ack([])


def test_put_many_is_one_transaction_and_ordered():
    box = Outbox(None)
    ids = box.put_many((TOPIC, b"{}") for _ in range(5))
    assert ids == list(range(ids[0], ids[0] + 5))
    assert box.put_many([]) == []
    with pytest.raises(ValidationError, match="topic"):
        box.put_many([(TOPIC, b"{}"), ("bad/+/topic", b"{}")])
    assert len(box) == 5  # nothing of the failed batch went in


def test_entries_and_ids_survive_reopen(tmp_path):
    path = tmp_path / "state" / "outbox.db"
    with Outbox(path) as box:
        first = box.put_many([(TOPIC, b"a"), (OTHER, b"b"), (TOPIC, b"c")])
        box.ack([first[1]])
    with Outbox(path) as box:
        assert len(box) == 2
        assert [(e.id, e.topic, e.payload) for e in box.peek(10)] == [
            (first[0], TOPIC, b"a"),
            (first[2], TOPIC, b"c"),
        ]
        box.ack(first)
    with Outbox(path) as box:  # emptied: ids still never come back (AUTOINCREMENT)
        assert len(box) == 0
        assert box.put(TOPIC, b"d") > first[-1]


def test_file_is_wal_with_full_sync(tmp_path):
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        box.put(TOPIC, b"x")
        assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        with sqlite3.connect(path) as other:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.external
def test_every_returned_put_survives_kill_9(tmp_path):
    path = tmp_path / "outbox.db"
    child = (
        "import sys\n"
        "from devices.outbox import Outbox\n"
        "box = Outbox(sys.argv[1])\n"
        "for n in range(1_000_000):\n"
        "    entry_id = box.put('provenance/v1/devices/probe-1/events', b'{\"n\":%d}' % n)\n"
        "    sys.stdout.write(f'{entry_id} {n}\\n')\n"
        "    sys.stdout.flush()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", child, str(path)], cwd=ROOT, stdout=subprocess.PIPE
    ) as proc:
        try:
            lines = read_lines(proc, 300, timeout=30)
        finally:
            proc.kill()  # SIGKILL, mid-stream
            proc.wait(timeout=10)
        lines += drain(proc)
    assert proc.returncode == -9
    returned = dict(tuple(map(int, line.split())) for line in lines)
    assert len(returned) >= 300
    with Outbox(path) as box:  # the dead child's lock is gone with it
        stored = {entry.id: entry.payload for entry in box.peek(len(returned) + 10)}
    for entry_id, n in returned.items():
        assert stored.get(entry_id) == b'{"n":%d}' % n, f"put {entry_id} returned but was lost"
    assert len(stored) - len(returned) <= 1  # at most the put in progress at the kill


# --- threads, bounds, ownership ----------------------------------------------------------------


def test_concurrent_producers_and_a_consumer(tmp_path):
    box = Outbox(tmp_path / "outbox.db")
    producers, per_producer = 6, 150
    seen: dict[bytes, int] = {}
    done = threading.Event()
    errors: list[BaseException] = []

    def produce(worker: int) -> None:
        try:
            for n in range(per_producer):
                box.put(TOPIC, b"%d:%d" % (worker, n))
        except BaseException as exc:
            errors.append(exc)

    wake = threading.Event()
    box.add_listener(wake.set)

    def consume() -> None:
        last = 0
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                wake.clear()
                finished = done.is_set()
                entries = box.peek(50, after=last)
                if not entries:
                    if finished:
                        return
                    wake.wait(1.0)
                    continue
                for entry in entries:
                    seen[entry.payload] = entry.id
                last = entries[-1].id
                box.ack(entry.id for entry in entries)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(producers)]
    consumer = threading.Thread(target=consume)
    consumer.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    done.set()
    wake.set()
    consumer.join(60)
    assert not errors and not consumer.is_alive()
    assert len(seen) == producers * per_producer and len(set(seen.values())) == len(seen)
    for worker in range(producers):  # each producer's entries keep its order
        ids = [seen[b"%d:%d" % (worker, n)] for n in range(per_producer)]
        assert ids == sorted(ids)
    assert len(box) == 0
    box.close()


def test_full_outbox_refuses_loudly():
    box = Outbox(None, max_entries=3)
    box.put_many([(TOPIC, b"1"), (TOPIC, b"2")])
    with pytest.raises(OutboxFull, match=r"max_entries=3, cannot add 2\. Nothing was added"):
        box.put_many([(TOPIC, b"3"), (TOPIC, b"4")])
    assert len(box) == 2
    third = box.put(TOPIC, b"3")
    with pytest.raises(OutboxFull, match="full: 3 entries waiting") as caught:
        box.put(TOPIC, b"4")
    assert isinstance(caught.value, ProvenanceError)
    box.ack([third])
    box.put(TOPIC, b"4")
    assert len(box) == 3


def test_one_owner_per_file(tmp_path):
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    with pytest.raises(OutboxLocked, match="already open"):
        Outbox(path)
    box.close()
    box.close()  # idempotent
    with pytest.raises(ProvenanceError, match="closed"):
        box.put(TOPIC, b"x")
    Outbox(path).close()


def test_oldest_age_and_listeners():
    now = [1_000_000_000]
    box = Outbox(None, clock=lambda: now[0])
    assert box.oldest_age_s(now[0]) is None
    calls: list[int] = []
    remove = box.add_listener(lambda: calls.append(len(box)))
    box.put(TOPIC, b"a")
    now[0] += 5_000_000
    box.put_many([(TOPIC, b"b"), (TOPIC, b"c")])
    assert calls == [1, 3]  # once per put, after the commit
    assert box.oldest_age_s(now[0] + 2_500_000) == 7.5
    remove()
    remove()
    box.put(TOPIC, b"d")
    assert calls == [1, 3]


@pytest.mark.parametrize(
    ("topic", "payload", "message"),
    [
        ("", b"x", "topic: must be a non-empty"),
        ("provenance/v1/devices/+/events", b"x", "no wildcards"),
        ("provenance/#", b"x", "no wildcards"),
        (TOPIC, "text, not bytes", "payload: must be bytes"),
        (TOPIC, b"x" * (1024 * 1024 + 1), "more than the 1048576 allowed"),
    ],
)
def test_bad_entries_are_refused(topic, payload, message):
    box = Outbox(None)
    with pytest.raises(ValidationError, match=message):
        box.put(topic, payload)
    assert len(box) == 0
