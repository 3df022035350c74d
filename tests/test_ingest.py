"""The MQTT ingest service against a real broker (tests/support/broker.py), in-process.

Publishers are plain paho clients; the ledger is tests/support/world.py's supply chain
in a SQLite file. Every wait has a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from paho.mqtt.enums import CallbackAPIVersion
from support.ingest import (
    GATEWAY_TOPIC,
    PROBE_TOPIC,
    READY,
    SETTLE,
    CheckpointWatcher,
    Publisher,
    bad_inputs,
    payloads,
    readings,
    wire,
    wrap_append,
)
from support.world import World

from provenance.core import topics
from provenance.core.errors import ValidationError
from provenance.infra.broker_url import BrokerURL
from provenance.infra.keystore import KeyStore
from provenance.ingest.commit import ItemResult, commit_batch
from provenance.ingest.connection import default_client_id
from provenance.ingest.decode import (
    INTERNAL_ERROR,
    MAX_ENVELOPES_PER_MESSAGE,
    decode_message,
    reject_notice,
)
from provenance.ingest.errors import IngestError, TransientError
from provenance.ingest.inbox import Inbox, Message
from provenance.ingest.metrics import IngestMetrics, serve
from provenance.ingest.service import IngestService
from provenance.ledger.append import Ledger
from provenance.ledger.audit import verify_ledger


@pytest.fixture
def file_world(tmp_path):
    world = World.create(tmp_path)
    yield world
    world.ledger.close()
    world.store.close()


# --- end to end


@pytest.mark.parametrize("worker", [False, True], ids=["thread", "worker-process"])
def test_exactly_n_readings_one_per_message_and_in_arrays(
    file_world, start_ingest, publisher, worker
):
    world = file_world
    service = start_ingest(world, worker=worker)
    single, batched = readings(world, 120), readings(world, 180, start=2.0)
    for envelope in single:
        publisher.publish(PROBE_TOPIC, wire(envelope))
    for offset in range(0, len(batched), 30):
        array = [e.to_json() for e in batched[offset : offset + 30]]
        publisher.publish(GATEWAY_TOPIC, json.dumps(array).encode())
    publisher.publish(PROBE_TOPIC, wire(single[0]))  # a redelivery, say: a duplicate
    publisher.wait_published()
    n = len(single) + len(batched)
    assert service.wait_for(lambda s: s.accepted + s.duplicates >= n + 1, SETTLE), service.stats()

    stats = service.stats()
    assert (stats.accepted, stats.duplicates, stats.rejected_total) == (n, 1, 0)
    assert stats.messages == len(single) + len(batched) // 30 + 1
    assert world.store.stats()["events"]["reading"] == n
    report = verify_ledger(world.store, world.log_public_key)
    assert report.ok, report.problems[:3]
    stored = {(e.envelope.signer, e.envelope.seq) for e in world.store.events()}
    assert {(e.signer, e.seq) for e in single + batched} <= stored
    assert service.wait_for(lambda s: s.in_flight == 0, SETTLE)


def test_rejects_are_stored_with_topic_counted_and_published(file_world, start_ingest, publisher):
    world = file_world
    service = start_ingest(world)
    publisher.listen_for_rejects()
    topic = topics.events_topic("devices", "broken-7")
    publisher.publish(topic, b'{"v": 1, "kind": ')
    good = world.reading(1, 4.0)
    bad = good.to_json() | {"seq": good.seq + 1}  # signature no longer matches
    publisher.publish(GATEWAY_TOPIC, json.dumps([good.to_json(), bad]).encode())
    notices = publisher.wait_notices(2)

    assert len(notices_of(notices, topic)) == len(notices_of(notices, GATEWAY_TOPIC)) == 1
    malformed = notices_of(notices, topic)[0]
    assert malformed["reason"] == "malformed" and "event_id" not in malformed
    assert "malformed JSON" in malformed["message"]
    signature = notices_of(notices, GATEWAY_TOPIC)[0]
    assert signature["reason"] == "bad-signature" and len(signature["event_id"]) == 64
    assert service.wait_for(lambda s: s.accepted == 1 and s.rejected_total == 2, SETTLE)
    assert world.store.stats()["rejects"] == {"malformed": 1, "bad-signature": 1}
    sources = {(row[1], row[3]) for row in world.store.rejects()}
    assert sources == {("malformed", topic), ("bad-signature", GATEWAY_TOPIC)}
    raw = world.store.conn.execute("SELECT raw FROM rejects WHERE reason = 'malformed'")
    assert raw.fetchone()[0] == b'{"v": 1, "kind": '
    assert service.metrics.rejected.labels("malformed")._value.get() == 1


def notices_of(notices: list[tuple[str, dict[str, Any]]], events: str) -> list[dict[str, Any]]:
    return [payload for topic, payload in notices if topic == topics.rejects_topic(events)]


@pytest.mark.parametrize("worker", [False, True], ids=["thread", "worker-process"])
def test_bad_input_matrix_each_with_its_reason_while_valid_traffic_flows(
    file_world, start_ingest, publisher, worker
):
    world = file_world
    cases = bad_inputs(world)
    valid = readings(world, 2 * len(cases) + 2, start=3.0)
    service = start_ingest(world, worker=worker)
    publisher.listen_for_rejects()
    feed = iter(valid)
    publisher.publish(PROBE_TOPIC, wire(next(feed)))
    for name, (payload, _reason) in cases.items():
        publisher.publish(topics.events_topic("devices", f"bad-{name}"), payload)
        publisher.publish(PROBE_TOPIC, wire(next(feed)))
    for envelope in feed:
        publisher.publish(PROBE_TOPIC, wire(envelope))
    publisher.wait_published()
    notices = publisher.wait_notices(len(cases))
    assert service.wait_for(lambda s: s.accepted >= len(valid), SETTLE), service.stats()

    got = {
        name: [
            n["reason"] for n in notices_of(notices, topics.events_topic("devices", f"bad-{name}"))
        ]
        for name in cases
    }
    assert got == {name: [reason] for name, (_payload, reason) in cases.items()}
    stats = service.stats()
    assert stats.accepted == len(valid) and stats.rejected_total == len(cases)
    expected: dict[str, int] = {}
    for _payload, reason in cases.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert world.store.stats()["rejects"] == expected
    assert verify_ledger(world.store, world.log_public_key).ok


# --- backpressure and failures


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_backpressure_bounds_what_is_in_flight(
    file_world, start_ingest, publisher, broker, protocol
):
    if protocol == "5" and not broker.mqtt5:
        pytest.skip("MQTT 5 needs Mosquitto (amqtt fallback in use)")
    world = file_world
    gate = threading.Event()

    def hold(_items: list[Any]) -> None:
        assert gate.wait(SETTLE), "the test never opened the gate"

    service = start_ingest(
        world,
        protocol=protocol,
        max_pending=5,
        wrap=lambda ledger: wrap_append(ledger, hold),
    )
    batch = readings(world, 60)
    for envelope in batch:
        publisher.publish(PROBE_TOPIC, wire(envelope))
    publisher.wait_published()  # the broker holds the rest for our session
    assert service.wait_for(lambda s: s.in_flight == 5, SETTLE), service.stats()
    gate.set()
    assert service.wait_for(lambda s: s.accepted == len(batch), SETTLE), service.stats()
    assert service.stats().peak_in_flight == 5
    assert service.stats().protocol == protocol


def test_database_errors_are_retried_and_nothing_is_lost(file_world, start_ingest, publisher):
    world = file_world
    failures = [3]

    def flaky(_items: list[Any]) -> None:
        if failures[0]:
            failures[0] -= 1
            raise sqlite3.OperationalError("database is locked")

    service = start_ingest(world, wrap=lambda ledger: wrap_append(ledger, flaky))
    batch = readings(world, 10)
    for envelope in batch:
        publisher.publish(PROBE_TOPIC, wire(envelope))
    publisher.wait_published()
    assert service.wait_for(lambda s: s.accepted == len(batch), SETTLE), service.stats()
    assert failures == [0] and service.stats().rejected_total == 0


def test_a_message_that_breaks_the_pipeline_is_rejected_alone(file_world):
    world = file_world

    def buggy(items: list[Any]) -> None:
        if b"poison" in items:
            raise KeyError("a bug that this input triggers")

    ledger = wrap_append(Ledger(world.store, world.log_key), buggy)
    reading = world.reading(1, 4.0)
    good = wire(reading)
    result = commit_batch(ledger, [(PROBE_TOPIC, good, True), (PROBE_TOPIC, b"poison", True)])
    assert [[item.status for item in items] for items in result.messages] == [
        ["accepted"],
        ["rejected"],
    ]
    assert result.messages[0][0].time_us == reading.time_us
    assert result.messages[1][0].reason == INTERNAL_ERROR
    assert world.store.rejects()[0][1:4:2] == (INTERNAL_ERROR, PROBE_TOPIC)

    def locked(_items: list[Any]) -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(TransientError, match="locked"):
        commit_batch(
            wrap_append(Ledger(world.store, world.log_key), locked), [(PROBE_TOPIC, good, True)]
        )


# --- never crash on input


@pytest.mark.parametrize("worker", [False, True], ids=["thread", "worker-process"])
def test_hypothesis_payloads_never_crash_the_service(file_world, start_ingest, publisher, worker):
    world = file_world
    service = start_ingest(world, worker=worker)
    template = world.reading(0.9, 4.0).to_json()
    topic = topics.events_topic("devices", "fuzz")
    published = []

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(payloads(template))
    def publish_one(payload: bytes) -> None:
        publisher.publish(topic, payload)
        published.append(payload)

    publish_one()
    assert len(published) >= 200  # "a few hundred" payloads went through the broker
    valid = readings(world, 20, start=4.0)
    for envelope in valid:
        publisher.publish(PROBE_TOPIC, wire(envelope))
    publisher.wait_published()
    total = len(published) + len(valid)
    assert service.wait_for(lambda s: s.messages >= total, SETTLE), service.stats()
    assert service.alive and service.error is None
    stats = service.stats()
    assert stats.accepted >= len(valid)  # mutants may be valid envelopes too
    assert INTERNAL_ERROR not in stats.rejected
    assert service.wait_for(lambda s: s.in_flight == 0, SETTLE)
    assert world.store.stats()["events"]["reading"] >= len(valid)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads({"v": 1, "kind": "reading", "seq": 1, "time": "2026-09-21T15:00:00Z"}))
def test_decode_and_commit_never_raise_on_any_payload(payload):
    items = decode_message(payload)
    assert 1 <= len(items) <= MAX_ENVELOPES_PER_MESSAGE
    world = _shared_world()
    result = commit_batch(world.ledger, [("provenance/v1/devices/fuzz/events", payload, True)])
    assert len(result.messages) == 1 and len(result.messages[0]) == len(items)
    assert all(item.status in ("accepted", "duplicate", "rejected") for item in result.messages[0])


_WORLD: list[World] = []


def _shared_world() -> World:
    if not _WORLD:
        _WORLD.append(World.create())
    return _WORLD[0]


# --- pieces, without a broker


def test_decode_message_keeps_single_envelopes_as_bytes_and_splits_arrays():
    assert decode_message(b'{"v":1}') == [b'{"v":1}']
    assert decode_message(b'  [{"v":1}, 2]') == [{"v": 1}, 2]
    (empty,) = decode_message(b"[]")  # refused whole, as `schema`, saying why
    assert (empty.reason, empty.raw) == ("schema", b"[]")
    assert decode_message(b"[1,") == [b"[1,"]  # refused whole, as `malformed`
    too_many = json.dumps([{}] * (MAX_ENVELOPES_PER_MESSAGE + 1)).encode()
    (long,) = decode_message(too_many)
    assert (long.reason, long.raw) == ("schema", too_many)
    assert f"{MAX_ENVELOPES_PER_MESSAGE + 1:,} items" in long.message
    big = json.dumps([{"pad": "x" * 70_000}, {"v": 1}]).encode()
    first, second = decode_message(big)
    assert first.reason == "malformed" and len(first.raw) > 65_536  # refused as too large
    assert "array element 0" in first.message
    assert second == {"v": 1}


def test_reject_notice_has_event_id_only_when_known():
    assert reject_notice(ItemResult("rejected", "replay", "seq used", "ab" * 32, None)) == {
        "event_id": "ab" * 32,
        "reason": "replay",
        "message": "seq used",
    }
    assert reject_notice(ItemResult("rejected", "malformed", "not JSON", None, None)) == {
        "reason": "malformed",
        "message": "not JSON",
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1884", BrokerURL("127.0.0.1", 1884, False)),
        ("mqtt://broker.local", BrokerURL("broker.local", 1883, False)),
        ("mqtts://broker.local", BrokerURL("broker.local", 8883, True)),
        ("mqtts://[::1]:8884", BrokerURL("::1", 8884, True)),
    ],
)
def test_broker_url(url, expected):
    assert BrokerURL.parse(url) == expected


@pytest.mark.parametrize(
    "url",
    ["http://x:1", "mqtt://", "mqtt://x:99999", "mqtt://u:p@x:1", "mqtt://x:1/topic", "x:1"],
)
def test_broker_url_refuses(url):
    with pytest.raises(ValidationError):
        BrokerURL.parse(url)


def test_inbox_is_bounded_by_count_and_bytes():
    def message(size: int) -> Message:
        return Message("t", b"x" * size, 1, 1, 1, None)

    inbox = Inbox(max_messages=2, max_bytes=100)
    assert inbox.put(message(10), 0) and inbox.put(message(10), 0)
    assert not inbox.put(message(10), 0.01)  # full by count
    taken = [inbox.get(0), inbox.get(0)]
    assert not inbox.put(message(10), 0.01)  # taken is not released: still in flight
    inbox.release(taken)
    assert inbox.put(message(60), 0)
    assert not inbox.put(message(60), 0.01)  # full by bytes
    big = Inbox(max_messages=2, max_bytes=100)
    assert big.put(message(500), 0)  # one message always fits
    inbox.close()
    assert not inbox.put(message(1), 1)  # closed: returns at once
    assert inbox.get(0) is not None and inbox.drained


def test_unblocked_put_when_a_release_makes_room():
    inbox = Inbox(max_messages=1, max_bytes=1000)
    assert inbox.put(Message("t", b"a", 1, 1, 1, None), 0)
    done = []
    waiter = threading.Thread(
        target=lambda: done.append(inbox.put(Message("t", b"b", 2, 1, 1, None), 30))
    )
    waiter.start()
    first = inbox.get(0)
    assert first is not None
    inbox.release([first])
    waiter.join(30)
    assert done == [True]


def test_default_client_id_is_stable_and_topic_safe():
    assert default_client_id() == default_client_id()
    assert default_client_id("blue").endswith("-blue")
    assert all(c.isalnum() or c in "._-" for c in default_client_id())


def test_configuration_errors_are_refused_early():
    def factory() -> Ledger:
        raise AssertionError("not called before start()")

    with pytest.raises(IngestError, match="MQTT 5"):
        IngestService(factory, broker="mqtt://127.0.0.1:1", shared_group="g", protocol="3.1.1")
    with pytest.raises(ValidationError, match="mqtts"):
        IngestService(factory, broker="mqtt://127.0.0.1:1", tls_ca="ca.pem")
    with pytest.raises(ValidationError, match="group"):
        IngestService(factory, broker="mqtt://127.0.0.1:1", shared_group="a/b")
    with pytest.raises(ValueError, match="factory"):
        IngestService(broker="mqtt://127.0.0.1:1")


# --- protocol versions, sharing, metrics


def test_shared_subscription_spreads_the_work_over_two_services(
    file_world, start_ingest, publisher, broker
):
    if not broker.mqtt5:
        pytest.skip("shared subscriptions need MQTT 5 (amqtt fallback in use)")
    world = file_world
    first = start_ingest(world, shared_group="ingest", client_id="ingest-a")
    second = start_ingest(world, shared_group="ingest", client_id="ingest-b")
    assert all(f.startswith("$share/ingest/") for f in first.filters)
    batch = readings(world, 200)
    for envelope in batch:
        publisher.publish(PROBE_TOPIC, wire(envelope))
    publisher.wait_published()

    def both() -> int:
        return first.stats().accepted + second.stats().accepted

    deadline = time.monotonic() + SETTLE
    while both() < len(batch):
        assert time.monotonic() < deadline, (first.stats(), second.stats())
        first.wait_for(lambda s: both() >= len(batch), 0.5)
    assert first.stats().accepted > 0 and second.stats().accepted > 0
    assert first.stats().duplicates + second.stats().duplicates == 0
    assert world.store.stats()["events"]["reading"] == len(batch)


@pytest.mark.slow
def test_falls_back_to_mqtt_311_and_refuses_a_shared_group_there(
    file_world, start_ingest, tmp_path
):
    from support.broker import Broker

    amqtt = Broker(tmp_path / "amqtt")
    amqtt.kind = "amqtt"  # an MQTT 3.1.1-only broker: it never answers an MQTT 5 CONNECT
    amqtt.start()
    try:
        world = file_world
        service = start_ingest(world, url=amqtt.url, connack_timeout=1.0)
        assert service.stats().protocol == "3.1.1"
        client = Publisher(amqtt, client_id="pub311", protocol=mqtt.MQTTv311)
        batch = readings(world, 30)
        for envelope in batch:
            client.publish(PROBE_TOPIC, wire(envelope))
        client.wait_published()
        assert service.wait_for(lambda s: s.accepted >= len(batch), SETTLE), service.stats()
        client.close()

        shared = IngestService(
            lambda: Ledger(world.store, world.log_key),
            broker=amqtt.url,
            shared_group="g",
            client_id="shared311",
            connack_timeout=1.0,
        ).start()
        assert shared.stopping.wait(READY)
        assert shared.join(READY)
        assert isinstance(shared.error, IngestError)
        assert "MQTT 5" in str(shared.error) and "3.1.1" in str(shared.error)
    finally:
        amqtt.kill()


def test_metrics_endpoint_serves_the_counters(file_world, start_ingest, publisher, broker):
    world = file_world
    clock = "sent_at" if broker.mqtt5 else "event_time"  # user properties are MQTT 5
    metrics = IngestMetrics()
    service = start_ingest(world, metrics=metrics)
    server = serve(metrics, 0)
    try:
        sent_at = "2026-11-22T10:15:00.000Z"
        for envelope in readings(world, 3):
            publisher.publish(
                PROBE_TOPIC, wire(envelope), sent_at=sent_at if broker.mqtt5 else None
            )
        publisher.publish(PROBE_TOPIC, b"nope")
        publisher.wait_published()
        assert service.wait_for(lambda s: s.messages >= 4, SETTLE)
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.close()
    for line in (
        "provenance_ingest_messages_received_total 4.0",
        "provenance_ingest_envelopes_received_total 4.0",
        "provenance_ingest_envelopes_accepted_total 3.0",
        "provenance_ingest_envelopes_duplicate_total 0.0",
        'provenance_ingest_rejected_total{reason="malformed"} 1.0',
        f'provenance_ingest_publish_to_commit_seconds_count{{clock="{clock}"}} 3.0',
        "provenance_ingest_in_flight_messages 0.0",
        "provenance_ingest_connected 1.0",
    ):
        assert line in text, line
    assert "provenance_ingest_batch_envelopes_bucket" in text
    assert IngestMetrics().registry is not metrics.registry  # no shared global registry


# --- checkpoints on provenance/v1/checkpoint


ORIGIN = "test.local/log"  # tests/support/world.py


@pytest.mark.parametrize("worker", [False, True], ids=["thread", "worker-process"])
def test_the_newest_checkpoint_is_published_retained_after_commits(
    file_world, start_ingest, publisher, broker, worker
):
    world = file_world
    assert world.store.get_meta("origin") == ORIGIN
    service = start_ingest(world, worker=worker)
    batch = readings(world, 120)
    for envelope in batch[:60]:
        publisher.publish(PROBE_TOPIC, wire(envelope))
    publisher.publish(GATEWAY_TOPIC, json.dumps([e.to_json() for e in batch[60:]]).encode())
    publisher.wait_published()
    assert service.wait_for(lambda s: s.accepted == len(batch), SETTLE), service.stats()
    size = world.store.log_size()

    # While it runs: the newest note goes out once commits pause (rate limit 1 s).
    live = CheckpointWatcher(broker, "witness-live")
    try:
        checkpoint = live.wait_for_size(world, size)
    finally:
        live.close()
    assert checkpoint.origin == ORIGIN
    assert world.store.latest_checkpoint() is not None
    published = service.metrics.checkpoints_published._value.get()
    assert 1 <= published <= 10  # rate-limited: not one per commit

    # After a clean stop a newcomer gets the final note, retained, from the broker alone.
    more = readings(world, 5, start=3.0)
    for envelope in more:
        publisher.publish(PROBE_TOPIC, wire(envelope))
    publisher.wait_published()
    assert service.wait_for(lambda s: s.accepted == len(batch) + len(more), SETTLE)
    service.stop(15)
    late = CheckpointWatcher(broker, "witness-late")
    try:
        final = late.wait_for_size(world, world.store.log_size())
        assert final.size == size + len(more)
        assert late.notes[0][0], "the checkpoint was not retained"
        assert world.store.latest_checkpoint() == late.notes[-1][1]
    finally:
        late.close()


def test_checkpoint_publisher_keeps_the_newest_note_only():
    from provenance.ingest.checkpoints import CheckpointPublisher, note_size

    publisher = CheckpointPublisher(lambda: None, IngestMetrics(), interval=60)
    assert note_size("origin\n17\nroot=\n\n— origin sig\n") == 17
    assert note_size("garbage") == -1
    publisher.offer("o\n5\nr\n")
    publisher.offer("o\n4\nr\n")  # an older one (another writer) is ignored
    publisher.offer(None)
    assert publisher._latest == "o\n5\nr\n"
    assert publisher.stop(0.1) is False  # never connected: not published


# --- the command (registered on a group of our own: the owner adds it to `provenance`)


def cli() -> Any:
    import click

    from provenance.cli.ingest import command
    from provenance.cli.main import main

    group = click.Group("provenance", params=main.params, callback=main.callback)
    group.add_command(command)
    return group


def test_command_help_shows_options_and_an_example():
    from click.testing import CliRunner

    result = CliRunner().invoke(cli(), ["ingest", "--help"])
    assert result.exit_code == 0
    for option in ("--broker", "--username", "--password", "--tls-ca", "--shared-group"):
        assert option in result.output
    assert "--metrics-port" in result.output and "--client-id" in result.output
    assert "--ready-file" in result.output
    assert "Example: provenance ingest --broker mqtt://" in result.output


def ledger_options(directory: Path) -> list[str]:
    return ["--db", str(directory / "ledger.db"), "--keys", str(directory / "keys")]


def write_log_key(world: World, keys: Path) -> None:
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    keys.mkdir(mode=0o700)
    pem = world.log_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    KeyStore(keys).path("log").write_bytes(pem)
    KeyStore(keys).path("log").chmod(0o600)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--broker", "http://127.0.0.1:1"], 2, "use mqtt://HOST:PORT"),
        (["--broker", "mqtt://127.0.0.1:1", "--tls-ca", __file__], 2, "mqtts://"),
        (["--broker", "mqtt://127.0.0.1:1", "--shared-group", "a/b"], 1, "shared group"),
        (["--broker", "mqtt://127.0.0.1:1", "--metrics-port", "70000"], 2, "70000"),
    ],
)
def test_command_usage_errors(file_world, tmp_path, args, code, message):
    from click.testing import CliRunner

    write_log_key(file_world, tmp_path / "keys")
    result = CliRunner().invoke(
        cli(),
        ["--db", str(tmp_path / "ledger.db"), "--keys", str(tmp_path / "keys"), "ingest", *args],
    )
    assert message in result.output
    assert result.exit_code == code, result.output


def test_command_refuses_a_log_key_that_is_not_the_ledgers(file_world, tmp_path):
    from click.testing import CliRunner

    KeyStore(tmp_path / "keys").create("log")
    result = CliRunner().invoke(
        cli(),
        [*ledger_options(tmp_path), "ingest", "--broker", "mqtt://127.0.0.1:1"],
    )
    assert result.exit_code == 1 and "is not the log key" in result.output


def test_command_refuses_a_missing_ledger(tmp_path):
    from click.testing import CliRunner

    options = ["--db", str(tmp_path / "none.db"), "--keys", str(tmp_path)]
    result = CliRunner().invoke(cli(), [*options, "ingest", "--broker", "mqtt://127.0.0.1:1"])
    assert result.exit_code == 1 and "provenance init" in result.output


# --- TLS


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key: Any, issuer: Any, issuer_key: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = certificate("test CA", ca_key, ca_name, ca_key, True)
    server = certificate("127.0.0.1", server_key, ca_name, ca_key, False)
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def test_mqtts_with_a_private_ca(file_world, start_ingest, tmp_path):
    from support.broker import Broker, broker_kind

    if broker_kind() != "mosquitto":
        pytest.skip("the TLS test needs Mosquitto (amqtt fallback in use)")
    ca, cert, key = make_tls_files(tmp_path / "tls")

    class TLSBroker(Broker):
        def _command(self) -> list[str]:
            command = super()._command()
            config = self.directory / "mosquitto.conf"
            config.write_text(config.read_text() + f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
            return command

    tls = TLSBroker(tmp_path / "tls-broker").start()
    try:
        url = f"mqtts://{tls.host}:{tls.port}"
        service = start_ingest(file_world, url=url, tls_ca=ca)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-pub", protocol=mqtt.MQTTv5)
        client.tls_set(ca_certs=str(ca))
        client.connect(tls.host, tls.port)
        client.loop_start()
        batch = readings(file_world, 20)
        infos = [client.publish(PROBE_TOPIC, wire(e), qos=1) for e in batch]
        for info in infos:
            info.wait_for_publish(SETTLE)
        assert service.wait_for(lambda s: s.accepted == len(batch), SETTLE), service.stats()
        client.disconnect()
        client.loop_stop()
    finally:
        tls.kill()
