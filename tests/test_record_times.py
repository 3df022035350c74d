"""Record times (EPCIS recordTime, migration 0017_capture): each append notes
the server's clock against its first log index, on SQLite and PostgreSQL."""

from __future__ import annotations

from support.world import HOUR, LOT, at

from provenance.store.record_times import RecordTimes, indexes_by_key
from provenance.store.rows import event_key


def test_every_append_keeps_its_time(world):
    first = world.store.log_size()
    world.now += HOUR
    stamp = world.now
    world.ledger.append([world.reading(h, 4.0) for h in (1, 2)])  # one append, two events
    world.now += HOUR
    world.ok("farm", "ship", [LOT], {"to": world.did("store")}, time=at(3))
    times = RecordTimes.read(world.store)
    assert times.of(first) == times.of(first + 1) == stamp
    assert times.of(first + 2) == stamp + HOUR
    assert times.of(0) is not None and times.of(0) <= stamp  # the world's setup, appended earlier
    keys = indexes_by_key(world.store)
    last = world.store.event_at(first + 2)
    assert keys[event_key(last.envelope.id_bytes)] == first + 2


def test_an_event_appended_before_record_times_has_none():
    assert RecordTimes([(5, 100)]).of(4) is None
    assert RecordTimes([(5, 100), (9, 200)]).of(8) == 100
    assert RecordTimes([]).of(0) is None
