"""The test suite's broker: `provenance.infra.localbroker` (Mosquitto, else amqtt),
with password-protected brokers skipped where only amqtt is available; a broker
with a TLS listener and a throwaway CA (`TlsBroker`); and the two ends of
retained notices in tests: `Collector`, a publisher that needs no broker, and
`Retained`, a subscriber on a real one."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

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


def _tls_material(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1: (ca, cert, key)."""
    from datetime import UTC, datetime, timedelta
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provenance test CA")])

    def builder(subject: x509.Name, public_key) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )

    ca = (
        builder(ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class TlsBroker(Broker):
    """Mosquitto with a TLS listener (certificate from `_tls_material`)."""

    def __init__(self, directory: Path, **options: Any):
        super().__init__(directory, **options)
        self.ca, self.cert, self.key = _tls_material(directory / "tls")

    @property
    def url(self) -> str:
        return f"mqtts://{self.host}:{self.port}"

    def _command(self) -> list[str]:
        command = super()._command()
        config = self.directory / "mosquitto.conf"
        tls = f"cafile {self.ca}\ncertfile {self.cert}\nkeyfile {self.key}\n"
        config.write_text(config.read_text() + tls)
        return command


__all__ = [
    "Broker",
    "Collector",
    "Retained",
    "TlsBroker",
    "broker_kind",
    "describe",
    "free_port",
    "mosquitto_binary",
]
