"""Several writers on one ledger file (ingest nodes on a shared subscription,
the portal, the CLI): each `Ledger` catches up with the others' appends at
the start of its write transaction — the frontier, the chains that moved or
were made, and every lazily filled cache (docs/ingest.md, "Several ingest
nodes")."""

from __future__ import annotations

import fcntl
import os
import random
import threading

import pytest
from support.world import GTIN, World, at

from provenance.core.checkpoint import open_checkpoint
from provenance.ledger.append import Ledger
from provenance.ledger.audit import verify_ledger
from provenance.store.db import Store
from provenance.store.writer_lock import WriterLock


def lot(code: str) -> str:
    return f"https://id.gs1.org/01/{GTIN}/10/{code}"


@pytest.fixture
def two(tmp_path):
    """The world's ledger file, and a second writer on it (its own connection)."""
    world = World.create(tmp_path)
    store = Store(tmp_path / "ledger.db")
    other = Ledger(store, world.log_key, clock=lambda: world.now)
    yield world, other
    other.close()
    store.close()
    world.ledger.close()
    world.store.close()


def commission(world: World, code: str) -> object:
    data = {"gtin": GTIN, "lot": code, "product": "Kale"}
    return world.sign("farm", "commission", [lot(code)], data, time=at(0))


def test_a_writer_sees_what_another_committed_even_what_it_found_missing(two):
    world, other = two
    # The other writer looks for the lot first: it is not there (and that is cached).
    attach = world.sign("farm", "attach", [lot("L1")], {"device": world.did("probe")}, time=at(1))
    refused = other.append([attach])[0]
    assert refused.reason == "unknown-lot"
    # The world's writer commissions it; the other now finds it, and files the attach.
    assert world.ledger.append([commission(world, "L1")])[0].status == "accepted"
    again = world.sign("farm", "attach", [lot("L1")], {"device": world.did("probe")}, time=at(1))
    assert other.append([again])[0].status == "accepted"
    # And back: a reading filed by the world's writer lands in both attached lots,
    # custody and seq state the other wrote included.
    reading = world.ledger.append([world.reading(2, 4.0)])[0]
    assert reading.status == "accepted"
    stored = world.store.event_at(reading.index)
    both = {world.store.lot_by_uri(uri).id for uri in (world.lot, lot("L1"))}
    assert set(stored.lots) == both
    assert other.append([world.reading(2, 4.0, lots=None)])[0].status == "accepted"
    assert other.catch_ups >= 1 and world.ledger.catch_ups >= 1
    assert verify_ledger(world.store, world.log_public_key).ok


def test_interleaved_writers_make_one_log_that_verifies(two):
    """Random interleaving of two writers over new lots, attachments, handoffs
    and readings: one append-only log, every chain whole, the latest
    checkpoint signs the log as stored."""
    world, other = two
    writers = [world.ledger, other]
    rng = random.Random(14)
    codes = []
    for step in range(60):
        writer = writers[rng.randrange(2)]
        choice = rng.randrange(3)
        if choice == 0 or not codes:
            codes.append(f"R{step}")
            batch = [commission(world, codes[-1])]
        elif choice == 1:
            batch = [world.reading(1 + step / 100, 4.0, lots=[world.lot])]
        else:
            batch = [
                world.sign("farm", "inspect", [lot(rng.choice(codes))], {"result": "pass"}),
                world.reading(1 + step / 100, 5.0),
            ]
        results = writer.append(batch)
        assert all(r.status == "accepted" for r in results), results
    # A duplicate is a duplicate on either writer, whoever stored the event.
    first = world.store.event_at(world.store.log_size() - 1).envelope
    assert world.ledger.append([first])[0].status == "duplicate"
    assert other.append([first])[0].status == "duplicate"
    report = verify_ledger(world.store, world.log_public_key)
    assert report.ok, report.problems
    note = world.store.latest_checkpoint()
    checkpoint = open_checkpoint(note, "test.local/log", world.log_public_key)
    assert checkpoint.size == world.store.log_size() == 1 + report.log_size - 1


def test_catching_up_reads_only_the_chains_that_moved(two, monkeypatch):
    world, other = two
    other.append([world.reading(1.5, 4.0)])  # loaded once
    for code in ("M1", "M2"):
        assert world.ledger.append([commission(world, code)])[0].status == "accepted"

    def everything():  # pragma: no cover - the failure this test is about
        raise AssertionError("a catch-up reloaded every chain")

    monkeypatch.setattr(other.store, "chains", everything)
    assert other.append([world.reading(1.6, 4.0)])[0].status == "accepted"
    assert other.catch_ups == 1
    assert verify_ledger(world.store, world.log_public_key).ok


def test_a_rolled_back_chain_id_does_not_stay_cached_under_its_subject(two):
    """A writer's atomic batch that made a chain and was refused leaves no
    trace: the other writer may give that chain id to another lot, and both
    read that lot's events under its own name (before, the store kept the
    rolled-back subject for the id, and read the other lot's events wrongly)."""
    world, other = two
    refused = world.sign("farm", "recall", [world.lot], {"reason": "x", "class": "I"})
    results = other.append([commission(world, "GONE"), refused], atomic=True)
    assert [r.status for r in results] == ["aborted", "rejected"]
    made = world.ledger.append([commission(world, "KEPT")])[0]
    assert made.status == "accepted"
    for store in (world.store, other.store):
        assert store.event_at(made.index).envelope.lots == (lot("KEPT"),)
    assert other.store.lot_by_uri(lot("GONE")) is None
    assert verify_ledger(other.store, world.log_public_key).ok


def test_writers_queue_on_the_writer_lock_and_the_lock_only_queues(tmp_path):
    """A write transaction holds `{ledger}-writer` (writer_lock.py): another
    writer waits for it, then goes; a writer that waited past the queue's
    timeout goes on to SQLite's own lock, which still excludes it."""
    world = World.create(tmp_path)
    world.ledger.close()
    first, second = world.store, Store(tmp_path / "ledger.db")
    lock_file = tmp_path / "ledger.db-writer"
    inside, leave, second_in = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with first.transaction():
            inside.set()
            leave.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(10)
    probe = os.open(lock_file, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        impatient = WriterLock(tmp_path / "ledger.db", timeout=0.05)
        impatient.acquire()  # gives up queueing, holds nothing
        impatient.release()
        impatient.close()

        def write() -> None:
            with second.transaction():
                second_in.set()

        writer = threading.Thread(target=write)
        writer.start()
        assert not second_in.wait(0.2)  # queued behind the first
        leave.set()
        holder.join(10)
        assert second_in.wait(10)
        writer.join(10)
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
        fcntl.flock(probe, fcntl.LOCK_UN)
    finally:
        leave.set()
        os.close(probe)
        second.close()
        first.close()


def test_a_read_only_store_makes_no_lock_file(tmp_path):
    world = World.create(tmp_path)
    world.ledger.close()
    world.store.close()
    (tmp_path / "ledger.db-writer").unlink()
    Store(tmp_path / "ledger.db", readonly=True).close()
    assert not (tmp_path / "ledger.db-writer").exists()
