"""The MQTT ingest in tests: `start_ingest` (an IngestService on the test's
broker, in-process) and `publisher` (a plain paho client) fixtures, the payloads
they exchange (valid readings, the bad-input matrix, generated junk) and
`wrap_append`, which runs a step ahead of every append. Registered as a plugin
in tests/conftest.py, so any test may ask for the fixtures."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from provenance.core import topics
from provenance.core.checkpoint import open_checkpoint
from provenance.core.signing import did_of, sign
from provenance.ingest.service import IngestService
from provenance.ledger.append import Ledger
from provenance.store.db import Store
from support.world import GTIN, LOT, World, at

READY = 15.0  # seconds to connect and subscribe


SETTLE = 60.0  # seconds for published traffic to be committed


PROBE_TOPIC = topics.events_topic("devices", "probe")


GATEWAY_TOPIC = topics.events_topic("gateways", "truck7")


UNKNOWN_LOT = f"https://id.gs1.org/01/{GTIN}/10/NOPE"


def wire(envelope: Any) -> bytes:
    value = envelope.to_json() if hasattr(envelope, "to_json") else envelope
    return json.dumps(value).encode()


class Publisher:
    """A plain paho client that publishes QoS 1 and collects reject notices."""

    def __init__(self, broker: Any, client_id: str = "publisher", protocol: int | None = None):
        if protocol is None:
            protocol = mqtt.MQTTv5 if broker.mqtt5 else mqtt.MQTTv311
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol
        )
        self.client.max_inflight_messages_set(200)
        self.protocol = protocol
        self.notices: list[tuple[str, dict[str, Any]]] = []
        self.infos: list[Any] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        connected = threading.Event()
        self.client.on_connect = lambda _c, _u, _f, reason, _p: (
            None if reason.is_failure else connected.set()
        )
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert connected.wait(READY), "publisher could not connect"

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        with self._changed:
            self.notices.append((message.topic, json.loads(message.payload)))
            self._changed.notify_all()

    def listen_for_rejects(self) -> None:
        self.client.subscribe("provenance/v1/+/+/rejects", qos=1)
        assert self._subscribed.wait(READY)

    def publish(self, topic: str, payload: bytes, sent_at: str | None = None) -> None:
        properties = None
        if sent_at is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = ("sent_at", sent_at)
        self.infos.append(self.client.publish(topic, payload, qos=1, properties=properties))

    def wait_published(self, timeout: float = SETTLE) -> None:
        deadline = time.monotonic() + timeout
        for info in self.infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "the broker did not acknowledge a publish"

    def wait_notices(self, count: int, timeout: float = SETTLE) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.notices) < count:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{len(self.notices)} of {count} reject notices arrived"
                self._changed.wait(remaining)
            return list(self.notices)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def start_ingest(tmp_path, broker):
    """start_ingest(world, **options): an IngestService on the test's broker,
    connected and subscribed; stopped (drained) after the test."""
    services: list[IngestService] = []
    stores: list[Store] = []

    def factory(world: World, wrap: Callable[[Ledger], Ledger] | None) -> Any:
        def make() -> Ledger:
            store = Store(tmp_path / "ledger.db")
            stores.append(store)
            ledger = Ledger(store, world.log_key)
            return wrap(ledger) if wrap else ledger

        return make

    def start(
        world: World,
        url: str | None = None,
        wrap: Callable[[Ledger], Ledger] | None = None,
        **options: Any,
    ) -> IngestService:
        options.setdefault("client_id", f"ingest-{len(services)}")
        options.setdefault("backoff", (0.05, 0.5))
        if not broker.mqtt5:  # amqtt never answers an MQTT 5 CONNECT: fall back sooner
            options.setdefault("connack_timeout", 1.0)
        if options.get("worker"):
            options.update(db_path=tmp_path / "ledger.db", log_key=world.log_key)
            service = IngestService(broker=url or broker.url, **options)
        else:
            service = IngestService(factory(world, wrap), broker=url or broker.url, **options)
        services.append(service.start())
        assert service.ready.wait(READY), "the ingest service did not subscribe"
        return service

    yield start
    for service in services:
        service.stop(15)
        assert service.join(15)
    for store in stores:
        store.close()


@pytest.fixture
def publisher(broker):
    client = Publisher(broker)
    yield client
    client.close()


def readings(world: World, count: int, start: float = 1.0) -> list[Any]:
    return [world.reading(start + i / 1000, 4.0 + i % 7) for i in range(count)]


def bad_inputs(world: World) -> dict[str, tuple[bytes, str]]:
    """name → (payload, the reason it must be refused with)."""
    world.enrol_device("probe2", owner="farm")
    world.ok("farm", "attach", [LOT], {"device": world.did("probe2")}, time=at(0.5))
    world.ok("registrar", "revoke", None, {"subject": world.did("probe2"), "from": at(5)})
    stranger = Ed25519PrivateKey.generate()
    used = world.reading(1.5, 4.0)
    world.ledger.append([used])  # committed before the ingest starts
    tampered = world.reading(1.6, 4.0).to_json()
    tampered["data"]["temperature_c"] = 9.5
    wrong_types = world.reading(1.7, 4.0).to_json() | {"seq": "7"}
    envelope = world.reading(1.8, 4.0).to_json()
    oversized = json.dumps(envelope, indent=70_000 // 8).encode()  # > 64 KiB of whitespace
    assert len(oversized) > 65_536
    commission = {"gtin": GTIN, "lot": "LOT427", "product": "Kale"}
    return {
        "malformed-json": (b'{"v":1,"kind":"reading",', "malformed"),
        "oversized": (oversized, "malformed"),
        "non-utf8": (b'{"v":1,"kind":"\xff\xfe"}', "malformed"),
        "deep-nesting": (b'{"a":' * 40 + b"1" + b"}" * 40, "malformed"),
        "deep-array": (b"[" * 40 + b"]" * 40, "malformed"),
        "wrong-types": (wire(wrong_types), "schema"),
        "scalar": (b"42", "schema"),
        "empty-array": (b"[]", "schema"),
        "unknown-signer": (
            wire(sign(stranger, kind="reading", seq=0, time=at(2), data={"temperature_c": 4})),
            "unknown-signer",
        ),
        "unknown-device": (
            wire(world.sign("farm", "attach", [LOT], {"device": did_of(stranger)}, time=at(2))),
            "unknown-device",
        ),
        "bad-signature": (wire(tampered), "bad-signature"),
        "replayed-seq": (
            wire(
                world.sign("probe", "reading", None, {"temperature_c": 5}, time=at(2), seq=used.seq)
            ),
            "replay",
        ),
        "revoked-key": (wire(world.reading(6, 4.0, who="probe2")), "revoked"),
        "future-time": (wire(world.reading(24 * 365 * 50, 4.0)), "future-time"),
        "kind-not-allowed": (
            wire(world.sign("probe", "commission", [f"{LOT}7"], commission, time=at(2))),
            "unauthorised",
        ),
        "unknown-lot": (
            wire(world.sign("farm", "inspect", [UNKNOWN_LOT], {"result": "pass"}, time=at(2))),
            "unknown-lot",
        ),
    }


def wrap_append(ledger: Ledger, before: Callable[[list[Any]], None]) -> Ledger:
    """The same ledger, with *before(items)* run ahead of every append."""
    original = ledger.append

    def append(items: Any, **options: Any) -> Any:
        items = list(items)
        before(items)
        return original(items, **options)

    ledger.append = append  # type: ignore[method-assign]
    return ledger


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)


ENVELOPE_FIELDS = ["v", "kind", "signer", "seq", "time", "batches", "data", "sig", "extra"]


def _mutants(template: dict[str, Any]) -> st.SearchStrategy[bytes]:
    def mutate(field: str, value: Any, drop: bool) -> bytes:
        changed = dict(template)
        if drop:
            changed.pop(field, None)
        else:
            changed[field] = value
        return json.dumps(changed).encode()

    return st.builds(mutate, st.sampled_from(ENVELOPE_FIELDS), JSON_VALUES, st.booleans())


def payloads(template: dict[str, Any]) -> st.SearchStrategy[bytes]:
    one = st.one_of(
        st.binary(max_size=300),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        _mutants(template),
    )
    return st.one_of(
        one,
        st.lists(one, max_size=4).map(lambda xs: b"[" + b",".join(xs) + b"]"),
    )


class CheckpointWatcher:
    """A subscriber to the checkpoint topic: the retained note, and each new one."""

    def __init__(self, broker: Any, client_id: str):
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.notes: list[tuple[bool, str]] = []  # (retained, note)
        self._changed = threading.Condition()
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_a: c.subscribe(topics.CHECKPOINT, qos=1)
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(READY), "could not subscribe to the checkpoint topic"

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        with self._changed:
            self.notes.append((bool(message.retain), message.payload.decode()))
            self._changed.notify_all()

    def wait_for_size(self, world: World, size: int, timeout: float = SETTLE) -> Any:
        """The first note that verifies with the log key and signs *size*."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for _retained, note in self.notes:
                    checkpoint = open_checkpoint(note, WATCHED_ORIGIN, world.log_public_key)
                    if checkpoint.size == size:
                        return checkpoint
                remaining = deadline - time.monotonic()
                sizes = [note.split("\n")[1] for _, note in self.notes]
                assert remaining > 0, f"no checkpoint of size {size}; got sizes {sizes}"
                self._changed.wait(remaining)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


WATCHED_ORIGIN = "test.local/log"  # tests/support/world.py
