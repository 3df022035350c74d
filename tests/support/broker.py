"""The test suite's broker: `provenance.infra.localbroker` (Mosquitto, else amqtt),
with password-protected brokers skipped where only amqtt is available; and the
two ends of retained notices in tests: `Collector`, a publisher that needs no
broker, and `Retained`, a subscriber on a real one."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from provenance.infra.localbroker import (
    Broker as _Broker,
)
from provenance.infra.localbroker import (
    BrokerUnavailable,
    broker_kind,
    describe,
    free_port,
    mosquitto_binary,
)
from support.lanes import require_external

WAIT = 30.0  # a subscriber's deadline; a healthy run needs a fraction of it


class Broker(_Broker):
    def start(self) -> Broker:
        require_external("starts a broker")
        try:
            super().start()
        except BrokerUnavailable as exc:
            pytest.skip(str(exc))
        return self


class Collector:
    """A publisher that keeps what it was given (or refuses to acknowledge)."""

    def __init__(self, ok: bool = True):
        self.ok = ok
        self.rounds: list[dict[str, dict]] = []

    def __call__(self, notices):
        if self.ok:
            self.rounds.append({topic: json.loads(payload) for topic, payload in notices})
        return self.ok


class Retained:
    """Subscribes to a topic filter (e.g. every recall topic) and keeps the
    latest payload per topic."""

    def __init__(self, broker, name: str, topic_filter: str):
        self.latest: dict[str, dict] = {}
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{name}",
            clean_session=True,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(WAIT), "no SUBACK"

    def _on_message(self, _client, _userdata, message):
        with self._changed:
            self.latest[message.topic] = json.loads(message.payload)
            self._changed.notify_all()

    def wait_for(self, predicate) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.latest), WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


__all__ = [
    "Broker",
    "Collector",
    "Retained",
    "broker_kind",
    "describe",
    "free_port",
    "mosquitto_binary",
]
