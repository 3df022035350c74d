"""devices.uplink against a real broker: exactly-once and in order when all is
well, nothing lost when the broker or the publisher dies, batching, refused
credentials, reject notices, MQTT 3.1.1 fallback."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from support.broker import Broker, TlsBroker, free_port
from support.paths import ROOT

from devices.outbox import Outbox
from devices.sdk import DeviceLogger
from devices.uplink import Uplink
from provenance.core.envelope import Envelope
from provenance.core.errors import ValidationError
from provenance.infra.broker_url import BrokerURL

TOPIC = "provenance/v1/gateways/truck-7/events"
WAIT = 30.0  # every wait has this deadline; a healthy run needs a fraction of it
FAST = {"backoff_min": 0.05, "backoff_max": 0.3}


class Subscriber:
    """A plain paho QoS 1 subscriber (persistent session, reconnects by itself)
    that flattens envelope arrays and counts messages."""

    def __init__(self, broker: Broker, topic: str = "provenance/v1/+/+/events", name: str = "sub"):
        self.items: list[dict] = []
        self.messages: list[bytes] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self._topic = topic
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{name}",
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(WAIT), "subscriber got no SUBACK"

    def _on_connect(self, client, _userdata, _flags, reason, _properties):
        if not reason.is_failure:
            client.subscribe(self._topic, qos=1)

    def _on_message(self, _client, _userdata, message):
        value = json.loads(message.payload)
        with self._changed:
            self.messages.append(message.payload)
            self.items.extend(value if isinstance(value, list) else [value])
            self._changed.notify_all()

    def persist_session(self, broker: Broker) -> None:
        """Restart the broker gracefully so this session (its subscription) is on
        disk: a later kill -9 then cannot forget it (Mosquitto autosaves 1/s)."""
        if broker.kind != "mosquitto":
            pytest.skip("amqtt keeps no sessions across restarts")
        self._subscribed.clear()
        broker.restart()
        assert self._subscribed.wait(WAIT), "subscriber did not resubscribe"

    def wait_for(self, predicate, timeout: float = WAIT) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def numbers(self) -> list[int]:
        with self._changed:
            return [item["n"] for item in self.items]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def entries(start: int, count: int, topic: str = TOPIC) -> list[tuple[str, bytes]]:
    return [(topic, json.dumps({"n": n}).encode()) for n in range(start, start + count)]


def first_seen(numbers: list[int]) -> list[int]:
    seen: set[int] = set()
    order = []
    for n in numbers:
        if n not in seen:
            seen.add(n)
            order.append(n)
    return order


@pytest.fixture
def broker(tmp_path):
    """A broker that saves every change: these tests kill it with -9 and count
    on it keeping what it acknowledged (Mosquitto's default saves once a
    second, so a kill loses up to a second of acknowledged messages)."""
    running = Broker(tmp_path / "broker", durable=True).start()
    yield running
    running.kill()


@pytest.fixture
def subscriber(broker):
    sub = Subscriber(broker)
    yield sub
    sub.close()


# --- all is well ---------------------------------------------------------------------------


def test_signed_readings_arrive_exactly_once_in_order(broker, subscriber, tmp_path):
    logger = DeviceLogger(Ed25519PrivateKey.generate(), tmp_path / "logger", "probe-1")
    uplink = logger.uplink(broker.url)
    try:
        assert uplink.connected.wait(WAIT)
        sent = [logger.reading({"temperature_c": 4.0 + n / 100}) for n in range(300)]
        assert uplink.wait_drained(WAIT)
        assert subscriber.wait_for(lambda: len(subscriber.items) >= 300)
    finally:
        uplink.stop()
        logger.close()
    received = [Envelope.from_json(item) for item in subscriber.items]
    assert received == sent  # exactly once, in order
    for envelope in received:
        envelope.verify_signature()
    assert [e.seq for e in received] == sorted(e.seq for e in received)
    assert uplink.protocol == "5" if broker.mqtt5 else "3.1.1"
    assert uplink.acked == 300 and len(logger.outbox) == 0


def test_waiting_entries_travel_in_batches(broker, subscriber):
    box = Outbox(None)
    box.put_many(entries(0, 1000))
    uplink = Uplink(box, broker.url, "gw-batch", batch_max=100, batch_bytes=4096).start()
    try:
        assert uplink.wait_drained(WAIT)
        assert subscriber.wait_for(lambda: len(subscriber.items) >= 1000)
    finally:
        uplink.stop()
    assert subscriber.numbers() == list(range(1000))
    assert len(subscriber.messages) < 1000 / 10 * 3  # batched
    assert uplink.messages == len(subscriber.messages)
    for message in subscriber.messages:
        assert len(message) <= 4096 and message.startswith(b"[")
        assert len(json.loads(message)) <= 100


def test_entries_leave_only_after_puback(broker, subscriber, tmp_path):
    subscriber.persist_session(broker)
    box = Outbox(tmp_path / "outbox.db")
    uplink = Uplink(box, broker.url, "gw-puback", **FAST).start()
    try:
        assert uplink.connected.wait(WAIT)
        os.kill(broker.process.pid, signal.SIGSTOP)  # alive, connected, but never answers
        box.put_many(entries(0, 20))
        assert uplink.wait_for(lambda: uplink.published >= 20, WAIT)
        assert uplink.acked == 0 and len(box) == 20
        broker.kill()  # dies without ever sending the PUBACKs
        assert uplink.wait_for(lambda: not uplink.connected.is_set(), WAIT)
        assert len(box) == 20 and [e.payload for e in box.peek(20)] == [
            p for _, p in entries(0, 20)
        ]
        broker.start()
        assert uplink.wait_drained(WAIT)
        assert subscriber.wait_for(lambda: len(subscriber.items) >= 20)
    finally:
        uplink.stop()
    assert sorted(set(subscriber.numbers())) == list(range(20))


# --- failures ------------------------------------------------------------------------------


def test_nothing_is_dropped_before_anyone_subscribes(broker):
    if not broker.mqtt5:
        pytest.skip("needs MQTT 5 PUBACK reason codes")
    box = Outbox(None)
    box.put_many(entries(0, 30))
    uplink = Uplink(box, broker.url, "gw-early", **FAST).start()
    try:
        assert uplink.wait_for(
            lambda: "No matching subscribers" in (uplink.last_failure or ""), WAIT
        )
        assert len(box) == 30 and uplink.acked == 0  # the broker dropped them: keep them
        subscriber = Subscriber(broker, name="late")  # the ingest service comes up
        try:
            assert uplink.wait_drained(WAIT)
            assert subscriber.wait_for(lambda: len(set(subscriber.numbers())) >= 30)
        finally:
            subscriber.close()
    finally:
        uplink.stop()
    assert first_seen(subscriber.numbers()) == list(range(30))


@pytest.mark.parametrize("how", ["kill -9", "graceful restart"])
def test_broker_down_mid_stream_loses_nothing(broker, subscriber, tmp_path, how):
    subscriber.persist_session(broker)
    box = Outbox(tmp_path / "outbox.db")
    box.put_many(entries(0, 2000))
    uplink = Uplink(box, broker.url, "gw-restart", max_inflight=4, batch_max=5, **FAST).start()
    try:
        assert uplink.wait_for(lambda: uplink.acked >= 500, WAIT)
        broker.kill() if how == "kill -9" else broker.stop()
        box.put_many(entries(2000, 1000))  # the stream goes on while the broker is down
        broker.start()
        assert uplink.wait_drained(WAIT)
        arrived = subscriber.wait_for(lambda: len(set(subscriber.numbers())) >= 3000)
        missing = sorted(set(range(3000)) - set(subscriber.numbers()))
        assert arrived, f"{len(missing)} never arrived: {missing[:5]}…{missing[-5:]}"
    finally:
        uplink.stop()
    numbers = subscriber.numbers()
    assert first_seen(numbers) == list(range(3000))  # nothing lost, first arrivals in order
    assert uplink.connects >= 2


def test_long_offline_stretch_delivers_everything_in_order(broker, subscriber, tmp_path):
    subscriber.persist_session(broker)
    box = Outbox(tmp_path / "outbox.db")
    uplink = Uplink(box, broker.url, "gw-offline", **FAST).start()
    try:
        assert uplink.connected.wait(WAIT)
        broker.stop()
        assert uplink.wait_for(lambda: not uplink.connected.is_set(), WAIT)
        for start in range(0, 5000, 50):  # a day of readings, 50 at a time
            box.put_many(entries(start, 50))
        assert len(box) == 5000 and uplink.acked == 0
        broker.start()
        assert uplink.wait_drained(WAIT)
        assert subscriber.wait_for(lambda: len(subscriber.items) >= 5000)
    finally:
        uplink.stop()
    assert first_seen(subscriber.numbers()) == list(range(5000))
    assert len(subscriber.messages) <= 5000 / 10


def test_killed_publisher_leaves_the_rest_to_the_next(broker, subscriber, tmp_path):
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        box.put_many(entries(0, 3000))
    child = (
        "import sys\n"
        "from devices.outbox import Outbox\n"
        "from devices.uplink import Uplink\n"
        "box = Outbox(sys.argv[1])\n"
        "uplink = Uplink(box, sys.argv[2], 'gw-child', max_inflight=1, batch_max=1).start()\n"
        "uplink.wait_drained(120)\n"
    )
    with subprocess.Popen([sys.executable, "-c", child, str(path), broker.url], cwd=ROOT) as proc:
        try:
            assert subscriber.wait_for(lambda: len(subscriber.items) >= 200)
        finally:
            proc.kill()
            proc.wait(timeout=10)
    with Outbox(path) as box:
        left = len(box)
        assert 0 < left < 3000, f"{left} entries left: the kill was not mid-stream"
        uplink = Uplink(box, broker.url, "gw-child").start()
        try:
            assert uplink.wait_drained(WAIT)
            assert subscriber.wait_for(lambda: len(set(subscriber.numbers())) >= 3000)
        finally:
            uplink.stop()
    assert first_seen(subscriber.numbers()) == list(range(3000))


@pytest.mark.external
def test_refused_credentials_stop_retrying(tmp_path):
    secured = Broker(tmp_path / "secured", users={"gateway": "s3cret"}).start()
    try:
        for username, password in [("gateway", "wrong"), (None, None)]:
            box = Outbox(None)
            box.put(TOPIC, b'{"n":0}')
            uplink = Uplink(
                box, secured.url, "gw-auth", username=username, password=password, **FAST
            ).start()
            assert uplink.stopped.wait(WAIT), "it keeps retrying refused credentials"
            assert "refused the connection" in uplink.error and "not retrying" in uplink.error
            # Mosquitto 2.0 answers "Not authorized" where MQTT 5 also has "Bad user name…"
            assert "Not authorized" in uplink.error or "Bad user name" in uplink.error
            assert uplink.attempts == 1 and uplink.connects == 0 and len(box) == 1
            assert not uplink.wait_drained(0.01)
            uplink.stop()
        uplink = Uplink(
            box, secured.url, "gw-auth", username="gateway", password="s3cret", hold_unrouted=False
        )
        assert uplink.start().wait_drained(WAIT) and uplink.error is None
        uplink.stop()
    finally:
        secured.kill()


def test_unreachable_broker_keeps_entries_and_stops_promptly():
    box = Outbox(None)
    box.put_many(entries(0, 5))
    uplink = Uplink(box, f"mqtt://127.0.0.1:{free_port()}", "gw-nobody", **FAST).start()
    assert uplink.wait_for(lambda: uplink.attempts >= 3, WAIT)  # backing off, retrying
    started = time.monotonic()
    assert uplink.stop(timeout=1.0) is False
    assert time.monotonic() - started < 2.0
    assert uplink.stopped.is_set() and uplink.error is None and len(box) == 5


# --- rejects, protocol, configuration ------------------------------------------------------


def _publish(broker: Broker, topic: str, payloads: list[bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-ingest")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for payload in payloads:
            assert client.publish(topic, payload, qos=1).wait_for_publish(WAIT) is None
    finally:
        client.disconnect()
        client.loop_stop()


def test_rejects_reach_on_reject(broker, caplog):
    calls: list[tuple[str, dict]] = []

    def on_reject(topic: str, notice: dict) -> None:
        calls.append((topic, notice))
        if len(calls) == 1:
            raise RuntimeError("a broken handler must not stop the uplink")

    device_events = "provenance/v1/devices/probe-1/events"
    box = Outbox(None)
    uplink = Uplink(
        box,
        broker.url,
        "probe-1",
        on_reject=on_reject,
        events_topics=[device_events],
        hold_unrouted=False,
    ).start()
    try:
        assert uplink.wait_for(lambda: uplink.subscriptions >= 1, WAIT)
        notice = {"event_id": "ab" * 32, "reason": "bad-signature", "message": "…"}
        with caplog.at_level(logging.WARNING, logger="devices.uplink"):
            _publish(
                broker,
                "provenance/v1/devices/probe-1/rejects",
                [b"not json", json.dumps(notice).encode(), b'{"reason":"replay"}'],
            )
            assert uplink.wait_for(lambda: len(calls) >= 2, WAIT)
        assert calls[0] == ("provenance/v1/devices/probe-1/rejects", notice)
        assert calls[1][1] == {"reason": "replay"}
        assert "unreadable reject" in caplog.text and "on_reject failed" in caplog.text
        # a topic first seen in the outbox gets its rejects subscription too
        box.put(TOPIC, b'{"n":1}')
        assert uplink.wait_drained(WAIT)
        assert uplink.wait_for(lambda: uplink.subscriptions >= 2, WAIT)
        _publish(broker, "provenance/v1/gateways/truck-7/rejects", [b'{"reason":"schema"}'])
        assert uplink.wait_for(lambda: len(calls) >= 3, WAIT)
        assert calls[2] == ("provenance/v1/gateways/truck-7/rejects", {"reason": "schema"})
    finally:
        uplink.stop()


def test_rejects_without_handler_are_logged(broker, caplog):
    uplink = Uplink(Outbox(None), broker.url, "gw-log", events_topics=[TOPIC]).start()
    try:
        assert uplink.wait_for(lambda: uplink.subscriptions >= 1, WAIT)
        with caplog.at_level(logging.WARNING, logger="devices.uplink"):
            notice = b'{"event_id":"' + b"cd" * 32 + b'","reason":"unknown-lot"}'
            _publish(broker, "provenance/v1/gateways/truck-7/rejects", [notice])
            assert uplink.wait_for(lambda: uplink.rejects >= 1, WAIT)
    finally:
        uplink.stop()
    assert "the ledger rejected an event" in caplog.text and "unknown-lot" in caplog.text


@pytest.mark.external
def test_falls_back_to_mqtt_311(tmp_path):
    legacy = Broker(tmp_path / "amqtt")
    legacy.kind = "amqtt"  # speaks MQTT 3.1.1 only
    legacy.start()
    try:
        subscriber = Subscriber(legacy, name="legacy")
        box = Outbox(None)
        box.put_many(entries(0, 50))
        uplink = Uplink(box, legacy.url, "gw-legacy", connect_timeout=2.0).start()
        try:
            assert uplink.wait_drained(WAIT)
            assert subscriber.wait_for(lambda: len(subscriber.items) >= 50)
        finally:
            uplink.stop()
            subscriber.close()
    finally:
        legacy.kill()
    assert uplink.protocol == "3.1.1" and subscriber.numbers() == list(range(50))


@pytest.mark.external
def test_mqtts_with_a_private_ca(tmp_path):
    if Broker(tmp_path / "probe").kind != "mosquitto":
        pytest.skip("the TLS test needs Mosquitto")
    secure = TlsBroker(tmp_path / "tls-broker").start()
    try:
        untrusted = Uplink(Outbox(None), secure.url, "gw-untrusted", **FAST).start()
        box = Outbox(None)
        box.put_many(entries(0, 10))
        trusted = Uplink(box, secure.url, "gw-tls", tls_ca=secure.ca, hold_unrouted=False).start()
        try:
            assert trusted.wait_drained(WAIT) and trusted.acked == 10
            # without our CA the broker's certificate is refused; it keeps trying
            assert untrusted.wait_for(lambda: untrusted.attempts >= 2, WAIT)
            assert not untrusted.connected.is_set() and untrusted.error is None
            assert "certificate verify failed" in untrusted.last_failure
        finally:
            trusted.stop()
            untrusted.stop()
    finally:
        secure.kill()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:1883", "scheme must be mqtt:// .* or mqtts://"),
        ("127.0.0.1:1883", "scheme must be"),
        ("mqtt://:1883", "has no host"),
        ("mqtt://u:p@127.0.0.1:1883", "no credentials in the URL"),
        ("mqtt://127.0.0.1:1883/topic", "no path"),
        ("mqtt://127.0.0.1:99999", "not a valid URL"),
    ],
)
def test_bad_broker_urls(url, message):
    with pytest.raises(ValidationError, match=message):
        BrokerURL.parse(url)


def test_broker_url_defaults_and_options(tmp_path):
    assert BrokerURL.parse("mqtt://127.0.0.1").port == 1883
    secure = BrokerURL.parse("mqtts://localhost")
    assert (secure.port, secure.tls, secure.url) == (8883, True, "mqtts://localhost:8883")
    assert BrokerURL.parse("mqtt://[::1]:1884").url == "mqtt://[::1]:1884"
    box = Outbox(None)
    with pytest.raises(ValidationError, match="use mqtts://"):
        Uplink(box, "mqtt://127.0.0.1:1883", "gw", tls_ca=__file__)
    with pytest.raises(ValidationError, match="no such CA"):
        Uplink(box, "mqtts://127.0.0.1:8883", "gw", tls_ca=Path(tmp_path / "missing.pem"))
    with pytest.raises(ValidationError, match="16-bit"):
        Uplink(box, "mqtt://127.0.0.1:1883", "gw", max_inflight=70_000)


def test_tcp_nodelay_is_set(broker):
    """paho leaves Nagle on (5–9 ms per small publish); the uplink turns it off."""
    uplink = Uplink(Outbox(None), broker.url, "gw-nodelay").start()
    try:
        assert uplink.connected.wait(WAIT)
        flags = []
        for name in os.listdir("/proc/self/fd"):  # the only connection to this broker is ours
            try:
                sock = socket.socket(fileno=os.dup(int(name)))
            except OSError:
                continue
            with sock:
                try:
                    if sock.family == socket.AF_INET and sock.getpeername()[1] == broker.port:
                        flags.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                except OSError:
                    continue
        assert flags and all(flags), flags
    finally:
        uplink.stop()
