"""The one MQTT client (provenance.infra.mqtt): backoff, CONNACK verdicts, the
reconnect loop, guarded callbacks, TLS and credentials, and that no other
module builds its own paho client or parses broker URLs itself. Broker tests
run against the suite's real Mosquitto (tests/broker.py)."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from support.broker import WAIT, Broker, Retained, TlsBroker
from support.paths import ROOT

from provenance.core.errors import ValidationError
from provenance.infra.broker_url import BrokerURL
from provenance.infra.mqtt import (
    MQTT5,
    MQTT311,
    Backoff,
    ConnackVerdict,
    ConnectionOutcome,
    Login,
    Reconnector,
    connack_verdict,
    guarded,
    new_client,
)
from provenance.services.notifier import RetainedPublisher

SOURCE_TREES = ("provenance", "gateway", "devices", "simulator")
PAHO_CLIENT = re.compile(r"\bmqtt\.Client\(|\bClient\(\s*CallbackAPIVersion|reconnect_delay_set")


def _connack(code: int) -> ReasonCode:
    return ReasonCode(PacketTypes.CONNACK, identifier=code)


def test_backoff_is_jittered_capped_and_reset_by_a_stable_connection():
    backoff = Backoff(0.5, 4.0)
    waits = [backoff.next() for _ in range(8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True)), waits
    assert backoff.failures == 8
    backoff.reset()
    assert 0.25 <= backoff.next() <= 0.5 and backoff.failures == 1
    with pytest.raises(ValidationError, match="at most backoff_max"):
        Backoff(2.0, 1.0)
    with pytest.raises(ValidationError):
        Backoff(0.0, 1.0)


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (0x00, ConnackVerdict.ACCEPTED),
        (0x86, ConnackVerdict.CREDENTIALS),  # bad user name or password (3.1.1 return code 4)
        (0x87, ConnackVerdict.CREDENTIALS),  # not authorised (3.1.1 return code 5)
        (0x8C, ConnackVerdict.CREDENTIALS),  # bad authentication method
        (0x84, ConnackVerdict.UNSUPPORTED),  # unsupported protocol version (3.1.1 return code 1)
        (0x85, ConnackVerdict.CLIENT),  # client identifier not valid
        (0x8A, ConnackVerdict.CLIENT),  # banned
        (0x88, ConnackVerdict.RETRY),  # server unavailable
        (0x89, ConnackVerdict.RETRY),  # server busy
    ],
)
def test_connack_verdicts(code, verdict):
    assert connack_verdict(_connack(code)) is verdict


def test_login_checks_tls_and_credentials_once(tmp_path):
    plain, secure = BrokerURL.parse("mqtt://127.0.0.1"), BrokerURL.parse("mqtts://127.0.0.1")
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    with pytest.raises(ValidationError, match="use mqtts://"):
        Login(plain, "c", tls_ca=str(ca))
    with pytest.raises(ValidationError, match="no such CA certificate file"):
        Login(secure, "c", tls_ca=str(tmp_path / "missing.pem"))
    with pytest.raises(ValidationError, match="non-empty"):
        Login(plain, "")
    login = Login(secure, "c", username="gw", password="s3cret", tls_ca=str(ca))
    assert "s3cret" not in repr(login) and "gw" in repr(login)
    assert secure.port == 8883 and str(secure) == "mqtts://127.0.0.1:8883"


def test_the_broker_url_parser_is_the_only_one():
    """Every MQTT user parses `--broker` and `broker.url` with BrokerURL.parse,
    so they all accept and refuse the same URLs with the same reasons."""
    bad = ["http://x:1", "mqtt://", "mqtt://x:99999", "mqtt://u:p@x:1", "mqtt://x:1/t", "x:1"]
    for url in bad:
        with pytest.raises(ValidationError):
            BrokerURL.parse(url)
    from gateway.config import ConfigError, check_broker_url

    for url in bad:
        with pytest.raises(ConfigError):
            check_broker_url(url)
    offenders = []
    for tree in SOURCE_TREES:
        for path in sorted((ROOT / tree).rglob("*.py")):
            text = path.read_text()
            if "urlsplit" in text and re.search(r"mqtts?://", text):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == ["provenance/infra/broker_url.py"]


def test_only_the_mqtt_module_builds_paho_clients():
    """One client: nobody else constructs paho clients, nor lets paho reconnect on its own."""
    builders = []
    for tree in SOURCE_TREES:
        for path in sorted((ROOT / tree).rglob("*.py")):
            text = path.read_text()
            if re.search(
                r"\bmqtt\.Client\(|\bClient\(\s*CallbackAPIVersion|reconnect_delay_set", text
            ):
                builders.append(str(path.relative_to(ROOT)))
    assert builders == ["provenance/infra/mqtt.py"]


class _Script:
    """A session that answers with scripted outcomes and records the versions asked for."""

    def __init__(
        self, reconnector: Reconnector, outcomes: list[ConnectionOutcome], settle_on: int = -1
    ):
        self.reconnector = reconnector
        self.outcomes = list(outcomes)
        self.asked: list[int] = []
        self.failures_seen: list[int] = []
        self.settle_on = settle_on

    def __call__(self, protocol: int) -> ConnectionOutcome:
        self.asked.append(protocol)
        self.failures_seen.append(self.reconnector.backoff.failures)
        if len(self.asked) - 1 == self.settle_on:
            self.reconnector.settle(protocol)
        return self.outcomes.pop(0)


def test_reconnector_tries_5_then_311_keeps_what_worked_and_stops_when_fatal():
    stop = threading.Event()
    waits: list[float] = []
    reconnector = Reconnector(stop, Backoff(0.001, 0.004), on_retry=waits.append)
    # 5 unanswered → 3.1.1 at once (no wait) → connected and lost after a while
    # → failed → failed → lost → refused credentials
    script = _Script(
        reconnector,
        [
            ConnectionOutcome.SWITCH,
            ConnectionOutcome.LOST,
            ConnectionOutcome.FAILED,
            ConnectionOutcome.FAILED,
            ConnectionOutcome.LOST,
            ConnectionOutcome.FATAL,
        ],
        settle_on=1,
    )
    assert reconnector.run(script) is ConnectionOutcome.FATAL
    assert script.asked == [MQTT5, MQTT311, MQTT311, MQTT311, MQTT311, MQTT311]
    assert reconnector.protocol_name == "3.1.1"
    # one wait after each non-fatal session but the switch; a stable (LOST) one resets the count
    assert len(waits) == 4
    assert script.failures_seen == [0, 0, 1, 2, 3, 1]


def test_reconnector_with_a_fixed_version_never_switches_and_honours_stop():
    stop = threading.Event()
    reconnector = Reconnector(stop, Backoff(0.001, 0.002), protocol="5")

    def session(protocol: int) -> ConnectionOutcome:
        asked.append(protocol)
        if len(asked) == 3:
            stop.set()
        return ConnectionOutcome.SWITCH

    asked: list[int] = []
    assert reconnector.run(session) is ConnectionOutcome.STOPPED
    assert asked == [MQTT5, MQTT5, MQTT5]
    with pytest.raises(ValidationError, match="mqtt_version"):
        Reconnector(stop, Backoff(1, 2), protocol="4")


def test_a_raising_callback_does_not_kill_the_network_loop(broker, caplog):
    """guarded: the first message's handler raises; the loop thread lives on
    and the second message is delivered (an unguarded paho callback would end it)."""
    got: list[bytes] = []
    second = threading.Event()
    subscribed = threading.Event()
    log = logging.getLogger("test.mqtt")

    @guarded(log, "test")
    def on_message(_client, _userdata, message):
        got.append(message.payload)
        if len(got) == 1:
            raise RuntimeError("a broken handler")
        second.set()

    url = BrokerURL.parse(broker.url)
    client = new_client(Login(url, "guarded-sub"), MQTT311, persistent=False)
    client.on_connect = guarded(log, "test")(lambda c, *_: c.subscribe("guarded/t", qos=1))
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    publisher = new_client(Login(url, "guarded-pub"), MQTT311, persistent=False)
    client.connect(url.host, url.port)
    client.loop_start()
    publisher.connect(url.host, url.port)
    publisher.loop_start()
    try:
        assert subscribed.wait(WAIT)
        with caplog.at_level(logging.ERROR, logger="test.mqtt"):
            for payload in (b"one", b"two"):
                publisher.publish("guarded/t", payload, qos=1).wait_for_publish(WAIT)
            assert second.wait(WAIT), "the network loop died with the first handler"
        assert got == [b"one", b"two"]
        assert "test: on_message failed" in caplog.text and "a broken handler" in caplog.text
    finally:
        for each in (client, publisher):
            each.disconnect()
            each.loop_stop()


@pytest.mark.external  # starts its own broker
def test_the_notifier_reconnects_after_the_broker_restarts(tmp_path):
    broker = Broker(tmp_path / "restart", durable=True).start()
    watcher = None
    publisher = RetainedPublisher(BrokerURL.parse(broker.url), "test-reconnect").start()
    try:
        assert publisher([("recalls/a", b'{"n":1}')])
        broker.restart()
        # the supervisor, not paho, reconnects; a round is acknowledged again
        # (one sent into the dying connection fails, as the notifier expects: it retries)
        deadline = time.monotonic() + WAIT
        while not publisher([("recalls/b", b'{"n":2}')]):
            assert time.monotonic() < deadline, "no reconnect"
        watcher = Retained(broker, "reconnect-watcher", "recalls/#")
        assert watcher.wait_for(lambda latest: latest.get("recalls/b") == {"n": 2})
    finally:
        publisher.stop()
        if watcher is not None:
            watcher.close()
        broker.kill()


@pytest.mark.external  # starts its own broker
def test_tls_and_credentials_through_the_one_client(tmp_path, caplog):
    if Broker(tmp_path / "probe").kind != "mosquitto":
        pytest.skip("the TLS test needs Mosquitto")
    secure = TlsBroker(tmp_path / "tls", users={"notify": "s3cret"}).start()
    url = BrokerURL.parse(secure.url)
    good = RetainedPublisher(
        url, "tls-good", username="notify", password="s3cret", tls_ca=str(secure.ca), ack_timeout=5
    ).start()
    wrong = RetainedPublisher(
        url, "tls-wrong", username="notify", password="nope", tls_ca=str(secure.ca), ack_timeout=1
    ).start()
    untrusted = RetainedPublisher(
        url, "tls-untrusted", username="notify", password="s3cret", ack_timeout=1
    ).start()
    try:
        with caplog.at_level(logging.INFO, logger="provenance.services.notifier"):
            assert good([("recalls/tls", b"{}")])
            assert not wrong([("recalls/tls", b"{}")])  # refused credentials: never connected
            assert not untrusted([("recalls/tls", b"{}")])  # the system CAs do not know ours
        assert "refused the connection" in caplog.text
        assert "certificate verify failed" in caplog.text
    finally:
        for publisher in (good, wrong, untrusted):
            publisher.stop()
        secure.kill()


def test_the_bench_pass_through_baseline_stays_a_raw_client():
    """bench/ingest.py's pass-through figure is the ceiling for our client, so it
    must not be measured through it, nor through any client library whose own
    cost would flatter the ratio: its publishers and null subscriber are the
    lean raw-socket client of bench/lean_mqtt.py."""
    text = Path(ROOT / "bench" / "ingest.py").read_text()
    assert "provenance.infra.mqtt" not in text and "mqtt.Client(" not in text
    assert "lean_mqtt.publish_all(" in text and "lean_mqtt.receive(" in text
    lean = Path(ROOT / "bench" / "lean_mqtt.py").read_text()
    assert "import paho" not in lean and "provenance" not in lean.split('"""', 2)[2]
