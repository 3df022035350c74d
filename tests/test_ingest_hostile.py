"""Hostile input on the ingest path (issue 9): what one source can make the
ledger store, retained messages, reasons that name what was wrong, and
"these signatures were checked" as something only the verifier can say.

Pure tests run `commit_batch` on both paths the service has: decoding on the
committer thread, and the prep processes' `prepare` → `items_of`. The broker
tests use the real Mosquitto of tests/support/broker.py.
"""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.ingest import (
    GATEWAY_TOPIC,
    PROBE_TOPIC,
    READY,
    SETTLE,
    readings,
    wire,
    wrap_append,
)
from support.world import World

from provenance.core import envelope as envelope_module
from provenance.core import topics
from provenance.core.envelope import (
    Envelope,
    SignatureVouchers,
    signature_checked,
)
from provenance.ingest.commit import commit_batch
from provenance.ingest.decode import INTERNAL_ERROR, MAX_MESSAGE_BYTES
from provenance.ingest.prepare import items_of, prepare
from provenance.ingest.service import IngestService
from provenance.ledger.append import Ledger
from provenance.ledger.rejects import (
    MAX_PER_MESSAGE,
    SOURCE_BURST,
    SOURCE_ROWS_PER_MINUTE,
    Refusal,
    RejectBudget,
)
from provenance.store.db import Store
from provenance.store.state import MAX_REJECT_RAW

HOSTILE_TOPIC = topics.events_topic("gateways", "hostile")
OTHER_TOPIC = topics.events_topic("gateways", "honest")


def by_thread(world: World, messages: list[tuple[str, bytes, bool]]) -> Any:
    return commit_batch(world.ledger, messages)


def by_prep(world: World, messages: list[tuple[str, bytes, bool]]) -> Any:
    vouchers = SignatureVouchers()
    records = prepare([payload for _, payload, _ in messages], vouchers)
    prepared = [items_of(pickle.loads(pickle.dumps(r)), vouchers) for r in records]
    return commit_batch(world.ledger, messages, prepared)


PATHS = pytest.mark.parametrize("commit", [by_thread, by_prep], ids=["thread", "prep"])


def database_bytes(store: Store) -> int:
    """The database's size with its WAL folded in."""
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    return pages * store.conn.execute("PRAGMA page_size").fetchone()[0]


def reject_rows(store: Store) -> list[tuple[Any, ...]]:
    return store.conn.execute(
        "SELECT reason, count, length(raw), length(detail), source FROM rejects ORDER BY id"
    ).fetchall()


def counted(store: Store) -> int:
    return store.conn.execute("SELECT coalesce(sum(count), 0) FROM rejects").fetchone()[0]


def junk(index: int, size: int = 230) -> dict[str, Any]:
    """JSON that is no envelope (`schema`): an unknown field, padded to ~size bytes."""
    return {"v": 1, "kind": "reading", "junk": f"{index:06d}".ljust(size - 40, "x")}


def tampered(world: World, hours: float) -> dict[str, Any]:
    value = world.reading(hours, 4.0).to_json()
    value["data"]["temperature_c"] = 99.0  # the signature no longer matches: bad-signature
    return value


def hostile_message(world: World) -> tuple[bytes, list[Envelope], int]:
    """A ~1 MiB gateway array: 4,096 items, all refused but a few valid readings
    spread through it. (payload, the valid envelopes, the refused count)."""
    valid = readings(world, 6, start=5.0)
    items: list[Any] = [junk(i) for i in range(4096 - len(valid) - 40)]
    items += [tampered(world, 6 + i / 1000) for i in range(40)]
    for n, envelope in enumerate(valid):
        items.insert(n * 700, envelope.to_json())
    payload = json.dumps(items).encode()
    assert 900_000 < len(payload) <= MAX_MESSAGE_BYTES - 1024, len(payload)
    return payload, valid, len(items) - len(valid)


# --- 1. what one source can make the ledger store


@PATHS
def test_a_hostile_1_mib_message_adds_kilobytes_counts_every_refusal_and_keeps_the_valid(
    tmp_path: Path, commit: Callable[..., Any]
) -> None:
    world = World.create(tmp_path)
    payload, valid, refused = hostile_message(world)
    before = database_bytes(world.store)

    result = commit(world, [(HOSTILE_TOPIC, payload, True)])

    statuses = [item.status for item in result.messages[0]]
    assert statuses.count("accepted") == len(valid)
    assert statuses.count("rejected") == refused
    stored = {e.envelope.event_id for e in world.store.events()}
    assert {e.event_id for e in valid} <= stored
    rows = reject_rows(world.store)
    assert len(rows) <= MAX_PER_MESSAGE + 2  # the first refusals + one row per reason
    assert counted(world.store) == refused  # nothing lost from the count
    assert world.store.stats()["rejects"] == {"schema": refused - 40, "bad-signature": 40}
    assert all(raw <= MAX_REJECT_RAW for _r, _c, raw, _d, _s in rows)
    growth = database_bytes(world.store) - before
    assert growth < 64 * 1024, f"one 1 MiB message grew the database by {growth:,} bytes"


@PATHS
def test_a_flood_from_one_source_is_bounded_and_counted_and_others_are_still_stored(
    tmp_path: Path, commit: Callable[..., Any]
) -> None:
    world = World.create(tmp_path)
    before = database_bytes(world.store)
    valid = iter(readings(world, 20, start=5.0))
    accepted = 0
    flood = 3_000
    for _group in range(0, flood, 150):  # groups, as the ingest commits them
        messages = [(HOSTILE_TOPIC, json.dumps(junk(i)).encode(), True) for i in range(150)]
        messages.append((HOSTILE_TOPIC, wire(next(valid)), True))
        result = commit(world, messages)
        accepted += sum(item.status == "accepted" for m in result.messages for item in m)
        world.now += 1_000_000  # a second per group: the limit refills at 6 a minute
    seconds = flood // 150

    assert accepted == flood // 150  # valid envelopes from the flooding source all go in
    assert counted(world.store) == flood
    rows = reject_rows(world.store)
    allowed = SOURCE_BURST + seconds * SOURCE_ROWS_PER_MINUTE // 60 + 1
    assert len([r for r in rows if r[1] == 1]) <= allowed
    assert len([r for r in rows if r[1] > 1]) == 1  # one aggregate row for the window
    growth = database_bytes(world.store) - before
    assert growth < 160 * 1024, f"a flood of {flood} refusals grew the database by {growth:,}"

    # Another source is not silenced by the flood.
    commit(world, [(OTHER_TOPIC, b'{"v": 1}', True)])
    assert reject_rows(world.store)[-1][4] == OTHER_TOPIC
    assert reject_rows(world.store)[-1][1] == 1


def test_through_the_broker_and_the_worker_one_source_cannot_grow_the_ledger(
    tmp_path: Path, broker: Any
) -> None:
    """End to end: the real broker, the commit worker and its prep processes."""
    world = World.create(tmp_path)
    payload, valid, refused = hostile_message(world)
    flood = 600
    later = readings(world, 5, start=8.0)
    before = database_bytes(world.store)
    publisher = RetainingPublisher(broker)
    service = IngestService(
        db_path=tmp_path / "ledger.db",
        log_key=world.log_key,
        broker=broker.url,
        client_id="ingest-hostile",
        backoff=(0.05, 0.5),
        worker=True,
    ).start()
    try:
        assert service.ready.wait(READY), "the ingest service did not subscribe"
        infos = [publisher.client.publish(HOSTILE_TOPIC, payload, qos=1)]
        for i in range(flood):
            infos.append(
                publisher.client.publish(HOSTILE_TOPIC, json.dumps(junk(i)).encode(), qos=1)
            )
        infos += [publisher.client.publish(HOSTILE_TOPIC, wire(e), qos=1) for e in later]
        for info in infos:
            info.wait_for_publish(SETTLE)
        total = len(valid) + refused + flood + len(later)
        assert service.wait_for(lambda s: s.accepted + s.rejected_total >= total, SETTLE), (
            service.stats()
        )
        stats = service.stats()
        assert stats.accepted == len(valid) + len(later)
        assert stats.rejected_total == refused + flood
    finally:
        service.stop(15)
        assert service.join(15)
        publisher.close()
    assert counted(world.store) == refused + flood
    assert len(reject_rows(world.store)) <= SOURCE_BURST + 10
    growth = database_bytes(world.store) - before
    assert growth < 192 * 1024, f"one source grew the database by {growth:,} bytes"


def test_messages_that_break_the_pipeline_are_bounded_like_any_refusal(tmp_path: Path) -> None:
    world = World.create(tmp_path)

    def buggy(items: list[Any]) -> None:
        if any(isinstance(item, bytes) and item.startswith(b"poison") for item in items):
            raise KeyError("a bug that this input triggers")

    ledger = wrap_append(world.ledger, buggy)
    flood = 300
    for start in range(0, flood, 50):
        messages = [(HOSTILE_TOPIC, b"poison %d" % (start + i), True) for i in range(50)]
        result = commit_batch(ledger, messages)
        assert all(m[0].reason == INTERNAL_ERROR for m in result.messages)
    assert counted(world.store) == flood
    assert len(reject_rows(world.store)) <= SOURCE_BURST + 1


def test_stored_raw_bytes_are_capped_whatever_was_refused(tmp_path: Path) -> None:
    world = World.create(tmp_path)
    big_envelope = json.dumps(junk(1, 60_000)).encode()  # refused, under 64 KiB
    too_big = json.dumps(junk(2, 70_000)).encode()  # over 64 KiB
    huge = b"[" + b" " * (MAX_MESSAGE_BYTES + 10) + b"]"  # over 1 MiB
    text = json.dumps(junk(3, 60_000))  # text from the API, not bytes
    commit_batch(world.ledger, [(OTHER_TOPIC, p, True) for p in (big_envelope, too_big, huge)])
    world.ledger.append([text, junk(4, 60_000)], source="api")
    rows = reject_rows(world.store)
    assert len(rows) == 5
    assert all(0 < raw <= MAX_REJECT_RAW for _r, _c, raw, _d, _s in rows)


def test_the_budget_per_message_per_source_and_over_time() -> None:
    budget = RejectBudget()
    minute = 60_000_000
    plan = budget.plan([Refusal(0, "a", "schema")] * 40 + [Refusal(1, "a", "replay")] * 3, 0)
    assert plan.stored == [*range(MAX_PER_MESSAGE), 40, 41, 42]
    assert [(c.reason, c.count, c.row) for c in plan.counted] == [("schema", 40 - 16, None)]
    budget.opened("a", "schema", 7, 0)
    # The same source's next refusals: burst used up after SOURCE_BURST rows.
    many = [Refusal(n, "a", "schema") for n in range(2 * SOURCE_BURST)]
    plan = budget.plan(many, 1)
    assert len(plan.stored) == SOURCE_BURST - MAX_PER_MESSAGE - 3
    assert plan.counted[0].row == 7 and plan.counted[0].count == len(many) - len(plan.stored)
    # Another source has its own budget.
    assert budget.plan([Refusal(0, "b", "schema")], 2).stored == [0]
    # Refilled at SOURCE_ROWS_PER_MINUTE; an aggregate row is reused within its window only.
    plan = budget.plan([Refusal(n, "a", "schema") for n in range(100)], 10 * minute)
    assert len(plan.stored) == 10 * SOURCE_ROWS_PER_MINUTE
    assert plan.counted[0].row is None  # the 10-minute window is over: a new aggregate row
    sources = RejectBudget(max_sources=3)
    for n in range(10):
        sources.plan([Refusal(0, f"s{n}", "schema")], n)
    assert len(sources._sources) == 3  # memory stays bounded however many sources


def test_an_aggregate_row_that_was_rolled_back_is_started_again(tmp_path: Path) -> None:
    world = World.create(tmp_path)
    items = [junk(i) for i in range(MAX_PER_MESSAGE + 5)]
    world.ledger.append(items, source="s")
    world.store.conn.execute("DELETE FROM rejects WHERE count > 1")  # gone, as if rolled back
    world.ledger.append(items, source="s")
    assert counted(world.store) == len(items) + len(items) - 5


# --- 3. reasons that name what was wrong


def _reading(world: World) -> dict[str, Any]:
    return world.reading(1, 4.0).to_json()


REASONS: dict[str, tuple[Callable[[World], bytes], str, str]] = {
    "message-over-1-mib": (
        lambda w: json.dumps(_reading(w)).encode() + b" " * MAX_MESSAGE_BYTES,
        "malformed",
        r"^message of \d+ bytes is larger than the limit of 1048576 bytes per message$",
    ),
    "array-over-1-mib": (
        lambda w: json.dumps([_reading(w)] * 4000).encode(),
        "malformed",
        r"^message of \d+ bytes is larger than the limit of 1048576 bytes per message$",
    ),
    "envelope-over-64-kib": (
        lambda w: json.dumps(junk(1, 70_000)).encode(),
        "malformed",
        r"^envelope of [67]\d{4} bytes is larger than the limit of 65536 bytes$",
    ),
    "array-element-over-64-kib": (
        lambda w: json.dumps([_reading(w), junk(1, 70_000)]).encode(),
        "malformed",
        r"^array element 1 \(an envelope\) of [67]\d{4} bytes is larger than the limit of "
        r"65536 bytes$",
    ),
    "array-too-long": (
        lambda w: json.dumps([{}] * 5000).encode(),
        "schema",
        r"^the array is too long: 5,000 items, limit 4,096 envelopes per message$",
    ),
    "empty-array": (lambda w: b"[]", "schema", r"^an empty array holds no envelope$"),
    "huge-integer": (
        lambda w: b'{"v": 1, "seq": ' + b"9" * 5000 + b"}",
        "malformed",
        r"^number 9{20}… \(5,000 characters\) is too large: a JSON number must fit an IEEE "
        r"754 double",
    ),
    "huge-integer-in-array": (
        lambda w: b'[{"v": 1, "seq": -' + b"9" * 400 + b"}]",
        "malformed",
        r"^number -9{19}… \(401 characters\) is too large",
    ),
    "exponent-overflow": (
        lambda w: b'{"v": 1e999}',
        "malformed",
        r"^number 1e999 is too large: a JSON number must fit an IEEE 754 double",
    ),
    "invalid-utf8": (
        lambda w: b'{"v":1,"kind":"re\xffading"}',
        "malformed",
        r"^not UTF-8: the bytes are not valid UTF-8 at byte offset 17 \(0xff\)",
    ),
    "invalid-utf8-in-array": (
        lambda w: b'[{"v":1,"kind":"\xc3("}]',
        "malformed",
        r"^not UTF-8: the bytes are not valid UTF-8 at byte offset 16 \(0xc3\)",
    ),
    "lone-surrogate-escape": (
        lambda w: json.dumps(_reading(w)).replace("temperature_c", "\\udc80").encode(),
        "malformed",
        r"^data: a JSON string holds the lone surrogate \\udc80, which is no Unicode "
        r"character",
    ),
    "lone-surrogate-in-array": (
        lambda w: json.dumps([_reading(w)]).replace('"reading"', '"\\ud800"').encode(),
        "malformed",
        r"^\[0\]\.kind: a JSON string holds the lone surrogate \\ud800",
    ),
}
MISLEADING = ("must be a JSON object", "int_max_str_digits", "Exceeds the limit", "surrogates not")


@PATHS
@pytest.mark.parametrize("case", list(REASONS))
def test_each_reason_names_what_was_actually_wrong(case: str, commit: Callable[..., Any]) -> None:
    import re

    world = World.create()
    build, reason, pattern = REASONS[case]
    result = commit(world, [(HOSTILE_TOPIC, build(world), True)])
    refused = [item for item in result.messages[0] if item.status == "rejected"]
    assert len(refused) == 1, [(r.reason, r.message) for r in refused]
    assert refused[0].reason == reason
    assert re.search(pattern, refused[0].message or ""), refused[0].message
    assert not any(word in (refused[0].message or "") for word in MISLEADING)
    (row,) = world.store.rejects()
    assert row[1:3] == (reason, refused[0].message)  # stored as said


def test_text_that_was_not_utf8_is_named_so_not_as_a_surrogate() -> None:
    """An API or CLI caller that decoded bytes with surrogateescape hands text."""
    world = World.create()
    raw = json.dumps(_reading(world)).encode().replace(b"reading", b"read\xffing")
    offset = raw.index(b"\xff")
    (result,) = world.ledger.append([raw.decode("utf-8", "surrogateescape")])
    assert result.reason == "malformed"
    assert result.message.startswith(
        f"not UTF-8: the bytes are not valid UTF-8 at byte offset {offset} (0xff)"
    )
    (row,) = world.store.rejects()
    assert row[2] == result.message


# --- 4. "these signatures were checked": only the verifier can say so


class NoCheck(Envelope):
    """What any code could build before: an envelope whose check does nothing."""

    __slots__ = ()

    def verify_signature(self) -> None:
        pass


class Lying(Envelope):
    """Answers with another envelope's signing bytes and signature."""

    __slots__ = ("_other",)

    def signing_bytes(self) -> bytes:
        return self._other.signing_bytes()

    @property
    def signature(self) -> bytes:
        return self._other.signature


def _fields(envelope: Envelope) -> dict[str, Any]:
    return {
        "kind": envelope.kind,
        "signer": envelope.signer,
        "seq": envelope.seq,
        "time": envelope.time,
        "lots": envelope.lots,
        "data": None,
        "sig": envelope.sig,
        "data_json": envelope.data_json,
    }


def _with_other_data(world: World, hours: float) -> tuple[Envelope, dict[str, Any]]:
    """A validly signed reading, and fields saying something else with its sig."""
    genuine = world.reading(hours, 4.0)
    forged = _fields(genuine) | {"data_json": '{"temperature_c":-40.0}'}
    return genuine, forged


FORGERIES: dict[str, Callable[[World], Any]] = {
    "subclass-no-op-check": lambda w: NoCheck(**_with_other_data(w, 1)[1]),
    "subclass-lying-bytes": lambda w: _lying(w),
    "plain-with-a-copied-mark": lambda w: _copied_mark(w),
    "plain-with-a-duck-typed-mark": lambda w: _duck_mark(w),
    "checked-then-changed": lambda w: _changed_after_check(w),
    "checked-then-pickled-and-changed": lambda w: _pickled_and_changed(w),
    "voucher-of-another-key": lambda w: _voucher(w, other_key=True),
    "record-altered-after-the-voucher": lambda w: _voucher(w, other_key=False),
}


def _lying(world: World) -> Envelope:
    genuine, forged = _with_other_data(world, 1)
    envelope = Lying(**forged)
    envelope._other = genuine
    return envelope


def _copied_mark(world: World) -> Envelope:
    genuine, forged = _with_other_data(world, 1)
    genuine.verify_signature()
    envelope = Envelope(**forged)
    envelope._checked = genuine._checked  # a mark for other bytes
    return envelope


def _duck_mark(world: World) -> Envelope:
    _genuine, forged = _with_other_data(world, 1)
    envelope = Envelope(**forged)

    class Mark:
        seal = object()
        signing = envelope.signing_bytes().decode()
        sig = envelope.sig

    envelope._checked = Mark()
    return envelope


def _changed_after_check(world: World) -> Envelope:
    envelope = world.reading(1, 4.0)
    envelope.verify_signature()
    assert signature_checked(envelope)
    envelope.data_json = '{"temperature_c":-40.0}'
    envelope._data = None
    return envelope


def _pickled_and_changed(world: World) -> Envelope:
    envelope = world.reading(1, 4.0)
    envelope.verify_signature()
    copy = pickle.loads(pickle.dumps(envelope))
    copy.seq += 1
    copy._prefix_text = copy._body = copy._id = None
    return copy


def _voucher(world: World, other_key: bool) -> Envelope:
    vouchers = SignatureVouchers()
    (records,) = prepare([wire(world.reading(1, 4.0))], vouchers)
    ((verified, (fields, voucher)),) = records
    assert verified
    if other_key:
        kind, signer, seq, time_, time_us, lots, _data_json, sig = fields
        forged = (kind, signer, seq, time_, time_us, lots, '{"temperature_c":-40.0}', sig)
        (envelope,) = items_of([(True, (forged, voucher))], SignatureVouchers())
    else:
        fields = (*fields[:6], '{"temperature_c":-40.0}', fields[7])
        (envelope,) = items_of([(True, (fields, voucher))], vouchers)
    return envelope


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_forged_claim_of_checked_signatures_is_refused_by_the_ledger(forgery: str) -> None:
    world = World.create()
    size = world.store.log_size()
    item = FORGERIES[forgery](world)
    assert not signature_checked(item)
    (result,) = world.ledger.append([item])
    assert (result.status, result.reason) == ("rejected", "bad-signature"), result
    assert world.store.log_size() == size
    assert world.store.rejects()[0][1] == "bad-signature"


def test_only_the_verifier_marks_and_a_voucher_survives_only_its_own_key() -> None:
    world = World.create()
    envelope = world.reading(1, 4.0)
    assert not signature_checked(envelope)  # signed, never checked
    envelope.verify_signature()
    assert signature_checked(envelope)
    assert not signature_checked(pickle.loads(pickle.dumps(envelope)))  # a mark is per process
    vouchers = SignatureVouchers()
    records = prepare([wire(e) for e in readings(world, 3, start=2.0)], vouchers)
    items = [item for r in records for item in items_of(pickle.loads(pickle.dumps(r)), vouchers)]
    assert all(signature_checked(item) for item in items)
    foreign = [item for r in records for item in items_of(r, SignatureVouchers())]
    assert not any(signature_checked(item) for item in foreign)
    # Unmarked but validly signed: the ledger checks them itself and accepts them.
    assert [r.status for r in world.ledger.append(foreign)] == ["accepted"] * 3


def test_marked_envelopes_are_not_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World.create()
    vouchers = SignatureVouchers()
    records = prepare([wire(e) for e in readings(world, 5, start=2.0)], vouchers)
    items = [item for r in records for item in items_of(r, vouchers)]
    calls = []
    real = envelope_module.verifier_for
    monkeypatch.setattr(envelope_module, "verifier_for", lambda did: calls.append(did) or real(did))
    assert [r.status for r in world.ledger.append(items)] == ["accepted"] * 5
    assert calls == []
    assert [r.status for r in world.ledger.append(readings(world, 2, start=3.0))] == [
        "accepted"
    ] * 2
    assert len(calls) == 2  # what was not checked is checked by the ledger


# --- 2. retained messages on the events topics (real Mosquitto)


class Services:
    """Starts IngestServices with one client id (one persistent session) in turn."""

    def __init__(self, world: World, broker: Any, tmp_path: Path, protocol: str):
        self.world, self.broker, self.tmp_path, self.protocol = world, broker, tmp_path, protocol
        self.running: IngestService | None = None
        self.stores: list[Store] = []

    def start(self) -> IngestService:
        def make() -> Ledger:
            store = Store(self.tmp_path / "ledger.db")
            self.stores.append(store)
            return Ledger(store, self.world.log_key)

        service = IngestService(
            make,
            broker=self.broker.url,
            client_id="ingest-retained",
            protocol=self.protocol,
            backoff=(0.05, 0.5),
        )
        self.running = service.start()
        assert service.ready.wait(READY), "the ingest service did not subscribe"
        return service

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop(15)
            assert self.running.join(15)
            self.running = None

    def close(self) -> None:
        self.stop()
        for store in self.stores:
            store.close()


@pytest.fixture
def services(
    tmp_path: Path, broker: Any, request: Any
) -> Iterator[Callable[[World, str], Services]]:
    made: list[Services] = []

    def make(world: World, protocol: str) -> Services:
        made.append(Services(world, broker, tmp_path, protocol))
        return made[-1]

    yield make
    for one in made:
        one.close()


class RetainingPublisher:
    """Publishes QoS 1, retained or not, and waits for each PUBACK."""

    def __init__(self, broker: Any):
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="retaining", protocol=mqtt.MQTTv5
        )
        connected = threading.Event()
        self.client.on_connect = lambda *_a: connected.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert connected.wait(READY)

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(SETTLE)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _counts(world: World) -> tuple[int, int]:
    events = world.store.conn.execute("SELECT count(*) FROM events").fetchone()[0]
    return events, counted(world.store)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_retained_messages_are_never_ingested_again_at_a_restart(
    tmp_path: Path, broker: Any, services: Any, protocol: str
) -> None:
    if broker.kind != "mosquitto":
        pytest.skip("needs Mosquitto (amqtt keeps no sessions across restarts)")
    world = World.create(tmp_path)
    markers = iter(readings(world, 10, start=20.0))
    publisher = RetainingPublisher(broker)
    ingest = services(world, protocol)
    bad_topic = topics.events_topic("devices", "retained-bad")
    try:
        # Retained before the ingest ever subscribed: no event, no reject.
        publisher.publish(PROBE_TOPIC, wire(world.reading(10, 4.0)), retain=True)
        publisher.publish(bad_topic, b'{"v": 1, "kind": "nonsense"}', retain=True)
        base = _counts(world)

        def run_once(then: Callable[[], None] | None = None) -> IngestService:
            service = ingest.start()
            marker = next(markers)  # published after the SUBACK: behind any retained copy
            publisher.publish(GATEWAY_TOPIC, wire(marker), retain=False)
            assert service.wait_for(lambda s: s.accepted >= 1, SETTLE), service.stats()
            if then is not None:
                then()
            ingest.stop()
            return service

        first = run_once()
        assert _counts(world) == (base[0] + 1, base[1])
        ignored = first.metrics.retained_ignored._value.get()
        assert ignored == (2 if protocol == "3.1.1" else 0)

        # Retained while it runs: ingested (and refused) once, as any publication.
        def live() -> None:
            service = ingest.running
            assert service is not None
            publisher.publish(PROBE_TOPIC, wire(world.reading(11, 4.0)), retain=True)
            publisher.publish(bad_topic, b'{"v": 1, "kind": "still nonsense"}', retain=True)
            assert service.wait_for(lambda s: s.accepted >= 2 and s.rejected_total >= 1, SETTLE), (
                service.stats()
            )

        run_once(live)
        after_live = _counts(world)
        assert after_live == (base[0] + 3, base[1] + 1)

        # Retained while it is down: the session queues it; ingested once at the next start.
        publisher.publish(PROBE_TOPIC, wire(world.reading(12, 4.0)), retain=True)
        service = ingest.start()
        assert service.wait_for(lambda s: s.accepted >= 1, SETTLE), service.stats()
        ingest.stop()
        expected = (after_live[0] + 1, after_live[1])
        assert _counts(world) == expected

        for _restart in range(2):  # and nothing again, however often it restarts
            run_once()
            expected = (expected[0] + 1, expected[1])
            assert _counts(world) == expected
        assert counted(world.store) == base[1] + 1  # the one live bad message, once
    finally:
        publisher.close()
