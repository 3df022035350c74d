"""The one MQTT publisher: drains an `Outbox` to the broker, QoS 1.

Gateways and self-publishing loggers both use this class; there is no second
copy. Guarantees (docs/devices.md has the long form):

- An outbox entry is deleted only after the broker's PUBACK for the message
  that carried it. Undelivered entries stay in the outbox, whatever happens
  to this process, the network or the broker.
- Delivery in outbox order. After every (re)connect the publisher starts again
  from the oldest entry still in the outbox, so a message may arrive twice
  (the ledger dedupes by event id) but none is skipped. Paho's in-memory
  queue is never relied on: each connection gets a fresh paho client.
- When several entries for one topic are waiting, up to `batch_max` of them
  (and at most `batch_bytes`) travel as one JSON array.
- An MQTT 5 PUBACK "No matching subscribers" (0x10) means the broker dropped
  the message: with `hold_unrouted` (the default) its entries stay and go
  again after a backoff, so readings made before the ingest service first
  subscribed are not lost.
- At most `max_inflight` messages are unacknowledged at once (paho message ids
  are 16-bit; an MQTT 5 broker's Receive Maximum lowers it further).
- Reconnecting is `provenance.infra.mqtt.Reconnector`'s (the one reconnect
  loop of every MQTT client of ours): capped, jittered exponential backoff;
  refused credentials stop it for good with `error` set.

One background thread runs paho's external-loop API (``loop_read``,
``loop_write``, ``loop_misc`` around our own ``select``), so paho callbacks,
publishing and acking all happen in that thread without locks. Producers wake
it through an outbox listener.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from provenance.core.errors import ProvenanceError, ValidationError
from provenance.core.topics import parse_events_topic, rejects_topic
from provenance.infra.broker_url import BrokerURL
from provenance.infra.mqtt import (
    MQTT5,
    PROTOCOL_NAMES,
    STABLE_S,
    Backoff,
    ConnackVerdict,
    ConnectionLossIsNotAnError,
    ConnectionOutcome,
    Login,
    Reconnector,
    close_sockets_in,
    connack_verdict,
    guarded,
    new_client,
    pump,
)

from .outbox import Outbox, OutboxEntry
from .rejects import Reject, log_reject, read_reject

log = logging.getLogger(__name__)
_paho_log = logging.getLogger(__name__ + ".paho")
_paho_log.addFilter(ConnectionLossIsNotAnError())

KEEPALIVE_S = 30
CONNECT_TIMEOUT_S = 10.0  # TCP + TLS + CONNACK
PROBE_CONNACK_S = 3.0  # first MQTT 5 CONNECT: amqtt-like 3.1.1 brokers never answer it
SESSION_EXPIRY_S = 7 * 24 * 3600  # MQTT 5: the broker keeps our rejects for a week offline
IDLE_POLL_S = 1.0  # select() timeout when idle (keepalive granularity)
DISCONNECT_GRACE_S = 2.0
PEEK_MAX = 1000  # outbox rows read per query while filling the window
MAX_MID = 65_535  # MQTT packet identifiers are 16-bit
NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT 5 PUBACK: accepted, but nobody will get it


def _batchable(payload: bytes) -> bool:
    """Only single JSON objects (envelopes) are joined into arrays."""
    return payload[:1] == b"{" and payload[-1:] == b"}"


class Uplink:
    """Publishes everything in *outbox* to the broker at *broker_url* and acks it.

    `start()` runs the background thread; `stop()` drains what it can, then
    disconnects. Counters (read them from any thread): `published` entries sent
    (resends included), `acked` entries PUBACKed and removed, `messages` MQTT
    messages sent, `connects` successful connections, `attempts` connection
    attempts, `rejects` reject notices received, `subscriptions` rejects
    subscriptions confirmed by the broker. `connected` is set while a
    session is up; `error` holds the reason when it gave up for good.
    """

    def __init__(
        self,
        outbox: Outbox,
        broker_url: str,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        max_inflight: int = 64,
        batch_max: int = 100,
        batch_bytes: int = 256 * 1024,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        on_reject: Reject | None = None,
        events_topics: Iterable[str] = (),
        connect_timeout: float = CONNECT_TIMEOUT_S,
        mqtt_version: str | None = None,
        hold_unrouted: bool = True,
    ):
        self.address = BrokerURL.parse(broker_url)
        self._login = Login(
            self.address,
            client_id,
            username=username,
            password=password,
            tls_ca=None if tls_ca is None else str(tls_ca),
        )
        if password is not None and username is None:
            raise ValidationError("password", "given without a username")
        if not 1 <= max_inflight <= MAX_MID:
            raise ValidationError("max_inflight", f"must be 1 to {MAX_MID} (16-bit message ids)")
        if batch_max < 1:
            raise ValidationError("batch_max", "must be at least 1")
        if batch_bytes < 1024:
            raise ValidationError("batch_bytes", "must be at least 1024")
        self._stop = threading.Event()
        self._reconnector = Reconnector(
            self._stop,
            Backoff(backoff_min, backoff_max),
            protocol=mqtt_version,
            on_retry=self._on_retry,
        )
        if not connect_timeout > 0:
            raise ValidationError("connect_timeout", "must be positive")
        self.outbox = outbox
        self.broker_url = self.address.url
        self.client_id = client_id
        self.username = username
        self.tls_ca = None if tls_ca is None else str(tls_ca)
        self.max_inflight = max_inflight
        self.batch_max = batch_max
        self.batch_bytes = batch_bytes
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.on_reject = on_reject
        self.connect_timeout = connect_timeout
        self.hold_unrouted = hold_unrouted

        self.connected = threading.Event()
        self.stopped = threading.Event()  # set when the thread has ended (or never ran)
        self.stopped.set()
        self.error: str | None = None
        self.protocol: str | None = None  # "5" or "3.1.1" once connected
        self.last_failure: str | None = None  # why the last attempt or connection failed
        self.published = 0
        self.acked = 0
        self.messages = 0
        self.connects = 0
        self.attempts = 0
        self.rejects = 0
        self.subscriptions = 0  # rejects subscriptions the broker confirmed (SUBACK)

        self._topics: set[str] = set(events_topics)
        self._drain_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._wake_r: socket.socket | None = None  # made by start(), closed by stop()
        self._wake_w: socket.socket | None = None
        self._unlisten: Callable[[], None] | None = None
        self._reset_session()

    # --- public API

    def start(self) -> Uplink:
        if self._thread is not None:
            raise ProvenanceError("this Uplink was already started (make a new one to restart)")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._unlisten = self.outbox.add_listener(self._wake)
        self.stopped.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"uplink-{self.client_id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Deliver what can be delivered within *timeout* seconds (only if
        connected now), then disconnect and end the thread. Nothing is lost:
        what was not acknowledged stays in the outbox. Returns True when the
        outbox was empty at the end."""
        self._drain_deadline = time.monotonic() + max(0.0, timeout)
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(max(0.0, timeout) + self.connect_timeout + DISCONNECT_GRACE_S)
            if self._thread.is_alive():
                log.error("uplink %s: thread did not end within %.1fs", self.client_id, timeout)
                return False
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        for wake in (self._wake_r, self._wake_w):
            if wake is not None:
                wake.close()
        return len(self.outbox) == 0

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the outbox is empty; False on timeout or if the uplink ended."""
        self.wait_for(lambda: len(self.outbox) == 0 or self.stopped.is_set(), timeout)
        return len(self.outbox) == 0

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (up to *timeout* s) until *predicate()* holds; it is re-checked
        whenever the uplink's state or counters change."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def __repr__(self) -> str:
        state = "connected" if self.connected.is_set() else (self.error or "disconnected")
        return f"<Uplink {self.client_id} → {self.broker_url} {state} acked={self.acked}>"

    # --- the thread

    def _run(self) -> None:
        try:
            self._reconnector.run(self._session)
        except Exception as exc:  # a bug: fail loudly, keep the outbox intact
            log.exception("uplink %s: stopped by an unexpected error", self.client_id)
            self.error = f"internal error: {exc!r}"
        finally:
            self.connected.clear()
            self.stopped.set()
            self._notify()

    def _on_retry(self, delay: float) -> None:
        failures = self._reconnector.backoff.failures
        log.log(
            logging.WARNING if failures == 1 or failures % 20 == 0 else logging.DEBUG,
            "uplink %s: not connected to %s (%s); retrying in %.2fs (attempt %d); "
            "%d entries wait in the outbox",
            self.client_id,
            self.broker_url,
            self.last_failure,
            delay,
            failures,
            len(self.outbox),
        )

    def _session(self, protocol: int) -> ConnectionOutcome:
        """One connection: connect, publish until it drops or stop() ends it."""
        self._reset_session()
        client = self._make_client(protocol)
        self.attempts += 1
        self._notify()
        try:
            if protocol == MQTT5:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = SESSION_EXPIRY_S
                client.connect(
                    self.address.host,
                    self.address.port,
                    keepalive=KEEPALIVE_S,
                    clean_start=False,
                    properties=props,
                )
            else:
                client.connect(self.address.host, self.address.port, keepalive=KEEPALIVE_S)
        except (OSError, ssl.CertificateError) as exc:
            self.last_failure = f"connect failed: {exc}"
            log.debug("uplink %s: %s", self.client_id, self.last_failure)
            close_sockets_in(exc)
            self._discard(client)
            return ConnectionOutcome.FAILED
        try:
            outcome = self._await_connack(client, protocol)
            if outcome is not None:
                return outcome
            started = time.monotonic()
            outcome = self._serve(client)
            if outcome is ConnectionOutcome.FAILED and time.monotonic() - started >= STABLE_S:
                return ConnectionOutcome.LOST
            return outcome
        finally:
            self.connected.clear()
            self._flush_acks()  # PUBACKs that arrived before a loss still count
            self._discard(client)
            self._notify()

    def _await_connack(self, client: mqtt.Client, protocol: int) -> ConnectionOutcome | None:
        timeout = self.connect_timeout
        if self._reconnector.probing and protocol == MQTT5:
            timeout = min(timeout, PROBE_CONNACK_S)  # some 3.1.1 brokers hang on MQTT 5
        deadline = time.monotonic() + timeout
        while self._connack is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.last_failure = f"no CONNACK within {timeout:.1f}s"
                return ConnectionOutcome.SWITCH  # some 3.1.1 brokers never answer an MQTT 5 CONNECT
            if self._stop.is_set():
                return ConnectionOutcome.STOPPED
            rc = pump(client, self._wake_r, min(remaining, IDLE_POLL_S))
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and self._connack is None:
                self.last_failure = f"closed before CONNACK: {mqtt.error_string(rc)}"
                return ConnectionOutcome.SWITCH
        reason, properties = self._connack
        verdict = connack_verdict(reason)
        if verdict is not ConnackVerdict.ACCEPTED:
            name = reason.getName()
            if verdict is ConnackVerdict.UNSUPPORTED:
                self.last_failure = f"broker refused the connection: {name}"
                return ConnectionOutcome.SWITCH
            if verdict in (ConnackVerdict.CREDENTIALS, ConnackVerdict.CLIENT):
                who = f"user {self.username!r}" if self.username else "anonymous clients"
                self.error = (
                    f"the broker {self.broker_url} refused the connection of client "
                    f"{self.client_id!r}: {name} ({who}); not retrying. Fix the username/password "
                    "or the broker's password file and ACL, then restart."
                )
                log.error("uplink %s: %s", self.client_id, self.error)
                return ConnectionOutcome.FATAL
            self.last_failure = f"broker refused the connection: {name}"
            return ConnectionOutcome.FAILED
        self._reconnector.settle(protocol)
        self.protocol = PROTOCOL_NAMES[protocol]
        receive_max = getattr(properties, "ReceiveMaximum", None) if properties else None
        packet_max = getattr(properties, "MaximumPacketSize", None) if properties else None
        self._window = min(self.max_inflight, receive_max or MAX_MID)
        self._message_limit = self.batch_bytes
        if packet_max:  # room for the fixed header, topic and properties
            self._message_limit = max(1, min(self.batch_bytes, packet_max - 1024))
        self.connects += 1
        self.connected.set()
        log.info(
            "uplink %s: connected to %s (MQTT %s, window %d); %d entries waiting",
            self.client_id,
            self.broker_url,
            self.protocol,
            self._window,
            len(self.outbox),
        )
        for topic in sorted(self._topics):
            self._ensure_rejects_subscription(client, topic)
        self._notify()
        return None

    def _serve(self, client: mqtt.Client) -> ConnectionOutcome:
        while True:
            self._flush_acks()
            if self._refused:
                ids, reason = self._refused[0]
                log.error(
                    "uplink %s: the broker refused a message (%s) carrying outbox entries "
                    "%d…%d; they stay in the outbox. Check the broker ACL for this client. "
                    "Reconnecting.",
                    self.client_id,
                    reason,
                    ids[0],
                    ids[-1],
                )
                self.last_failure = f"the broker refused a message: {reason}"
                return ConnectionOutcome.FAILED
            if self._unrouted:
                held = sum(len(ids) for ids in self._unrouted)
                self.last_failure = "No matching subscribers: the broker would drop these"
                log.warning(
                    "uplink %s: no subscriber for %d entries (MQTT 5 PUBACK 0x10): the broker "
                    "dropped them, so they stay in the outbox and go again after a backoff. Is "
                    "the ingest service subscribed with a persistent session?",
                    self.client_id,
                    held,
                )
                return ConnectionOutcome.FAILED
            if not self._fill(client):
                self.last_failure = "publish failed: connection lost"
                return ConnectionOutcome.FAILED
            timeout = IDLE_POLL_S
            if self._stop.is_set():
                remaining = self._drain_deadline - time.monotonic()
                if len(self.outbox) == 0 or remaining <= 0:
                    self._disconnect(client)
                    return ConnectionOutcome.STOPPED
                timeout = min(timeout, remaining)
            rc = pump(client, self._wake_r, timeout)
            self._notify()  # counters may have moved; wake wait_for()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.last_failure = f"connection lost: {mqtt.error_string(rc)}"
                log.warning(
                    "uplink %s: connection to %s lost; %d messages were unacknowledged",
                    self.client_id,
                    self.broker_url,
                    len(self._inflight),
                )
                return ConnectionOutcome.FAILED

    def _fill(self, client: mqtt.Client) -> bool:
        """Publish waiting entries until the in-flight window is full."""
        while len(self._inflight) < self._window:
            room = self._window - len(self._inflight)
            # whole batches per page, so a page boundary rarely cuts one short
            limit = min(max(PEEK_MAX // self.batch_max, 1), room) * self.batch_max
            entries = self.outbox.peek(limit, after=self._last_sent)
            if not entries:
                return True
            index = 0
            while index < len(entries) and len(self._inflight) < self._window:
                group = self._take_group(entries, index)
                index += len(group)
                if not self._publish(client, group):
                    return False
        return True

    def _take_group(self, entries: list[OutboxEntry], start: int) -> list[OutboxEntry]:
        """The leading run of same-topic entries that fits in one message."""
        first = entries[start]
        group = [first]
        if not _batchable(first.payload):
            return group
        size = len(first.payload) + 2
        for index in range(start + 1, len(entries)):
            entry = entries[index]
            if (
                len(group) >= self.batch_max
                or entry.topic != first.topic
                or not _batchable(entry.payload)
                or size + len(entry.payload) + 1 > self._message_limit
            ):
                break
            group.append(entry)
            size += len(entry.payload) + 1
        return group

    def _publish(self, client: mqtt.Client, group: list[OutboxEntry]) -> bool:
        topic = group[0].topic
        self._ensure_rejects_subscription(client, topic)
        if len(group) == 1:
            payload = group[0].payload
        else:
            payload = b"[" + b",".join(entry.payload for entry in group) + b"]"
        try:
            info = client.publish(topic, payload, qos=1)
        except ValueError as exc:  # paho refuses the topic or size; keep it, say why
            log.error("uplink %s: cannot publish entry %d: %s", self.client_id, group[0].id, exc)
            return False
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.debug("uplink %s: publish failed: %s", self.client_id, mqtt.error_string(info.rc))
            return False
        self._inflight[info.mid] = [entry.id for entry in group]
        self._last_sent = group[-1].id
        self.published += len(group)
        self.messages += 1
        return True

    def _flush_acks(self) -> None:
        if not self._acks:
            return
        acked, self._acks = self._acks, []
        self.outbox.ack(acked)
        self.acked += len(acked)
        self._notify()

    def _ensure_rejects_subscription(self, client: mqtt.Client, topic: str) -> None:
        if topic in self._subscribed:
            return
        self._subscribed.add(topic)
        self._topics.add(topic)
        if parse_events_topic(topic) is None:
            return
        rc, _ = client.subscribe(rejects_topic(topic), qos=1)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.debug("uplink %s: subscribe failed: %s", self.client_id, mqtt.error_string(rc))

    def _disconnect(self, client: mqtt.Client) -> None:
        """Send DISCONNECT and let paho flush it (bounded)."""
        client.disconnect()
        deadline = time.monotonic() + DISCONNECT_GRACE_S
        while client.socket() is not None and time.monotonic() < deadline:
            if pump(client, self._wake_r, 0.1) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        log.info("uplink %s: disconnected; %d entries wait", self.client_id, len(self.outbox))

    def _discard(self, client: mqtt.Client) -> None:
        sock = client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _reset_session(self) -> None:
        self._inflight: dict[int, list[int]] = {}
        self._acks: list[int] = []
        self._refused: list[tuple[list[int], str]] = []
        self._unrouted: list[list[int]] = []
        self._subscribed: set[str] = set()
        self._last_sent = 0
        self._window = self.max_inflight
        self._message_limit = self.batch_bytes
        self._connack: tuple[Any, Any] | None = None

    def _make_client(self, protocol: int) -> mqtt.Client:
        client = new_client(self._login, protocol, persistent=True, logger=_paho_log)
        client.max_inflight_messages = 0  # our own window; paho must never hold messages back
        client.connect_timeout = self.connect_timeout
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):  # full (a wake is pending) or closed
                self._wake_w.send(b"\0")

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # --- paho callbacks (run in our thread, inside loop_read/loop_write)

    def _on_connect(self, _client, _userdata, _flags, reason, properties) -> None:
        self._connack = (reason, properties)

    def _on_publish(self, _client, _userdata, mid, reason, _properties) -> None:
        ids = self._inflight.pop(mid, None)
        if ids is None:
            return
        if reason is not None and reason.is_failure:
            self._refused.append((ids, reason.getName()))
        elif reason is not None and reason.value == NO_MATCHING_SUBSCRIBERS and self.hold_unrouted:
            self._unrouted.append(ids)
        else:
            self._acks.extend(ids)

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties) -> None:
        for code in reason_codes:
            if not code.is_failure:
                self.subscriptions += 1
            else:
                log.warning(
                    "uplink %s: the broker refused a rejects subscription (%s); this publisher "
                    "will not see why the ledger refused its events. Grant it read access to "
                    "its provenance/v1/…/rejects topic.",
                    self.client_id,
                    code.getName(),
                )

    def _on_disconnect(self, _client, _userdata, flags, reason, _properties) -> None:
        if flags.is_disconnect_packet_from_server:
            log.warning("uplink %s: broker disconnected us: %s", self.client_id, reason)

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        self.rejects += 1
        who = f"uplink {self.client_id}"
        notice = read_reject(who, message.topic, message.payload)
        if notice is None:
            return
        if self.on_reject is None:
            log_reject(who, message.topic, notice)
            return
        # one broken handler must not stop publishing
        guarded(log, who, "on_reject")(self.on_reject)(message.topic, notice)
