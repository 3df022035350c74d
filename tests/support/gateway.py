"""The gateway in tests (test_gateway, test_gateway_faults): a gateway folder
with its keys and gateway.toml, a subscriber that collects what arrives, an
HTTP POST helper and a Gateway running in a thread."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.service import Gateway
from provenance.core.envelope import Envelope
from provenance.core.jcs import parse_json

DEADLINE = 20.0


def write_key(path: Path, key: Ed25519PrivateKey | None = None) -> Ed25519PrivateKey:
    key = key or Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    path.chmod(0o600)
    return key


def make_config(
    directory: Path,
    sources: str = "",
    *,
    broker_url: str = "mqtt://127.0.0.1:1883",
    site_key: Ed25519PrivateKey | None = None,
    gateway_key: Ed25519PrivateKey | None = None,
    extra: str = "",
    gateway_id: str = "gw1",
) -> Path:
    """A gateway folder with two keys and gateway.toml; returns the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    write_key(directory / "keys" / "gateway.pem", gateway_key)
    write_key(directory / "keys" / "site.pem", site_key)
    path = directory / "gateway.toml"
    path.write_text(
        f"""
[gateway]
id = "{gateway_id}"
key_file = "keys/gateway.pem"
status_interval_s = 0.5
drain_timeout_s = 5

[site]
party = "farm"
key_file = "keys/site.pem"

[broker]
url = "{broker_url}"
backoff_min = 0.05
backoff_max = 0.5
{extra}
{sources}
"""
    )
    return path


class Subscriber:
    """A plain paho client collecting every envelope that arrives (arrays flattened)."""

    def __init__(
        self,
        url: str,
        topic: str = "provenance/v1/gateways/+/events",
        *,
        client_id: str | None = None,
        persistent: bool = False,
    ):
        host, port = url.removeprefix("mqtt://").rsplit(":", 1)
        self.topic = topic
        self.envelopes: list[Envelope] = []
        self.messages = 0
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-sub-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, int(port), keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(DEADLINE), "subscriber did not subscribe"

    def _on_connect(self, client, _userdata, _flags, _reason, _properties) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, _client, _userdata, message) -> None:
        value = parse_json(message.payload)
        items = value if isinstance(value, list) else [value]
        with self._changed:
            self.messages += 1
            self.envelopes.extend(Envelope.from_json(item) for item in items)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[Envelope]], bool], timeout: float = DEADLINE):
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.envelopes), timeout)

    def distinct(self) -> list[Envelope]:
        """Envelopes in order of first arrival, duplicates (same event id) dropped."""
        seen: set[str] = set()
        out = []
        with self._changed:
            for envelope in self.envelopes:
                if envelope.event_id not in seen:
                    seen.add(envelope.event_id)
                    out.append(envelope)
        return out

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def post(url: str, body: bytes, content_type: str = "application/json", **headers: str):
    """(status, parsed JSON body) of a POST."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


class Running:
    """A Gateway running in a thread; `stop()` ends it like SIGTERM does."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=gateway.run, args=(self.stop_event,), daemon=True)
        self.thread.start()
        assert gateway.started.wait(DEADLINE)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(DEADLINE + 10)
        assert not self.thread.is_alive(), "gateway did not stop"
