"""The ingest service's side of MQTT: one supervisor thread that runs the
shared reconnect loop (`provenance.infra.mqtt.Reconnector`, the same one the
device uplink and the notifiers use) and the ingest's paho callbacks.

MQTT 5 when the broker speaks it, else 3.1.1; a persistent session;
subscriptions are made in on_connect (so they come back after a reconnect);
refused credentials stop the service; anything else is retried with capped,
jittered backoff. What arrives goes into the inbox (`Inbox.put` waits while it
is full, so paho stops reading and the broker flow-controls us).
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from provenance.infra.broker_url import BrokerURL
from provenance.infra.mqtt import (
    MQTT5,
    PROTOCOL_NAMES,
    STABLE_S,
    Backoff,
    ConnackVerdict,
    ConnectionOutcome,
    Login,
    Reconnector,
    close_sockets_in,
    connack_verdict,
    guarded,
    new_client,
)
from provenance.ingest.decode import SENT_AT, estimate_envelopes
from provenance.ingest.errors import CredentialsRefused, IngestError
from provenance.ingest.inbox import Inbox, Message
from provenance.ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # how long the broker keeps our session while we are away
KEEPALIVE_S = 30
CONNACK_TIMEOUT_S = 5.0  # an MQTT 3.1.1-only broker may never answer an MQTT 5 CONNECT
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 30.0
FULL_INBOX_LIMIT_S = float(KEEPALIVE_S)  # then drop the connection (the broker redelivers)
QUEUED_PUBLISHES = 10_000  # paho's outgoing queue (reject notices, checkpoints), bounded
OWN_INFLIGHT = 1000  # our own QoS 1 publishes awaiting the broker's PUBACK
_SESSION_TAKEN_OVER = 0x8E
_CLIENT_ID = re.compile(r"[^A-Za-z0-9._-]")


def default_client_id(shared_group: str | None = None) -> str:
    """A stable client id (a persistent session is found by it): one per host,
    and per group. Run several ingest processes on one host? Give each its own."""
    host = _CLIENT_ID.sub("-", socket.gethostname())[:40] or "host"
    return f"provenance-ingest-{host}" + (f"-{shared_group}" if shared_group else "")


_guarded = guarded(log, "ingest")


class Connection:
    """One connection attempt: its paho client and what became of it."""

    def __init__(self, client: mqtt.Client, generation: int, protocol: int):
        self.client = client
        self.generation = generation
        self.protocol = protocol
        self.changed = threading.Event()  # CONNACK arrived, or the connection ended
        self.connack: Any = None  # paho ReasonCode
        self.session_present = False
        self.ended = False


@dataclass(frozen=True)
class Settings:
    """How to reach the broker and what to ask of it."""

    broker: BrokerURL
    client_id: str
    filters: Sequence[str]
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    shared_group: str | None = None
    protocol: str = "auto"
    session_expiry: int = SESSION_EXPIRY_S
    keepalive: int = KEEPALIVE_S
    connack_timeout: float = CONNACK_TIMEOUT_S
    backoff: tuple[float, float] = (BACKOFF_MIN_S, BACKOFF_MAX_S)
    receive_maximum: int = 65_535


class Connector:
    """Owns connecting (one supervisor thread) and the paho callbacks.

    Received messages go into *inbox*; *on_connected(connection)* runs on
    paho's thread after each successful CONNACK; *fail(error)* is how a fatal
    condition (refused credentials, refused subscriptions…) stops the service.
    *stopping* is the service's: once set, nothing more is taken in.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        inbox: Inbox,
        metrics: IngestMetrics,
        stopping: threading.Event,
        fail: Callable[[IngestError], None],
        on_connected: Callable[[Connection], None],
    ):
        self.settings = settings
        self.inbox = inbox
        self.metrics = metrics
        self.stopping = stopping
        self._fail = fail
        self._on_connected = on_connected
        self.ready = threading.Event()  # connected and subscribed
        self._lock = threading.Lock()
        self._live: Connection | None = None
        self._generation = 0
        self._login = Login(
            settings.broker,
            settings.client_id,
            username=settings.username,
            password=settings.password,
            tls_ca=settings.tls_ca,
        )
        self._reconnector = Reconnector(
            stopping,
            Backoff(*settings.backoff),
            protocol=None if settings.protocol == "auto" else settings.protocol,
            on_retry=lambda delay: log.info("ingest: reconnecting in %.2fs", delay),
        )
        self._unanswered = 0  # connections closed before a CONNACK, in a row
        self._thread = threading.Thread(
            target=self._supervisor_main, name="ingest-connect", daemon=True
        )

    # --- life cycle and observation

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def live(self) -> Connection | None:
        """The connection we are on (CONNACK received), or None."""
        with self._lock:
            return self._live

    @property
    def settled(self) -> int | None:
        """The MQTT version that got a CONNACK (or the one asked for)."""
        return self._reconnector.settled

    @property
    def protocol_name(self) -> str | None:
        return self._reconnector.protocol_name

    def disconnect(self) -> None:
        live = self.live
        if live is not None:
            live.client.disconnect()  # queued behind what we already sent

    # --- the supervisor thread

    def _supervisor_main(self) -> None:
        try:
            self._reconnector.run(self._session)
        except Exception as exc:  # a bug here must not leave a silent, dead service
            log.exception("ingest: connection supervisor failed")
            self._fail(IngestError(f"connection supervisor failed: {exc!r}"))
        finally:
            self.ready.clear()
            self.metrics.connected.set(0)

    def _new_client(self, protocol: int) -> Connection:
        with self._lock:
            self._generation += 1
            generation = self._generation
        client = new_client(self._login, protocol, persistent=True, manual_ack=True)
        connection = Connection(client, generation, protocol)
        client.user_data_set(connection)
        client.max_inflight_messages_set(OWN_INFLIGHT)
        client.max_queued_messages_set(QUEUED_PUBLISHES)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return connection

    def _session(self, protocol: int) -> ConnectionOutcome:
        settings = self.settings
        connection = self._new_client(protocol)
        client = connection.client
        kwargs: dict[str, Any] = {}
        if protocol == MQTT5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = settings.session_expiry
            properties.ReceiveMaximum = min(settings.receive_maximum, 65_535)
            kwargs = {"clean_start": False, "properties": properties}
        try:
            client.connect(settings.broker.host, settings.broker.port, settings.keepalive, **kwargs)
        except (OSError, ValueError) as exc:  # refused, unreachable, TLS trouble (ssl is OSError)
            log.warning("ingest: cannot reach %s: %s", settings.broker, exc)
            close_sockets_in(exc)
            return ConnectionOutcome.FAILED
        client.loop_start()
        try:
            return self._watch(connection)
        finally:
            with self._lock:
                if self._live is connection:
                    self._live = None
            self.ready.clear()
            self.metrics.connected.set(0)
            if not connection.ended:
                client.disconnect()
            client.loop_stop()  # its thread ends within a loop turn (≤ 1 s)

    def _watch(self, connection: Connection) -> ConnectionOutcome:
        settings = self.settings
        name = PROTOCOL_NAMES[connection.protocol]
        if not connection.changed.wait(settings.connack_timeout):
            if self.settled is None:
                log.warning("ingest: no answer to an MQTT %s CONNECT; trying another version", name)
                return ConnectionOutcome.SWITCH
            log.warning(
                "ingest: no CONNACK from %s in %gs", settings.broker, settings.connack_timeout
            )
            return ConnectionOutcome.FAILED
        reason = connection.connack
        if reason is None:  # closed before any CONNACK: the broker went away, or dislikes v5
            self._unanswered += 1
            if self.settled is None and self._unanswered >= 2:
                self._unanswered = 0
                return ConnectionOutcome.SWITCH
            return ConnectionOutcome.FAILED
        self._unanswered = 0
        verdict = connack_verdict(reason)
        if verdict is ConnackVerdict.CREDENTIALS:
            self._fail(
                CredentialsRefused(
                    f"the broker at {settings.broker} refused us ({reason}): check --username, "
                    f"--password and the broker's ACL for client id {settings.client_id!r}"
                )
            )
            return ConnectionOutcome.FATAL
        if verdict is ConnackVerdict.UNSUPPORTED:
            if self.settled is None:
                log.info("ingest: the broker does not speak MQTT %s", name)
                return ConnectionOutcome.SWITCH
            self._fail(IngestError(f"the broker at {settings.broker} does not speak MQTT {name}"))
            return ConnectionOutcome.FATAL
        if verdict is ConnackVerdict.CLIENT:
            self._fail(IngestError(f"the broker at {settings.broker} refused client id: {reason}"))
            return ConnectionOutcome.FATAL
        if verdict is not ConnackVerdict.ACCEPTED:
            log.warning("ingest: the broker refused the connection: %s", reason)
            return ConnectionOutcome.FAILED
        self._reconnector.settle(connection.protocol)
        if settings.shared_group and connection.protocol != MQTT5:
            self._fail(
                IngestError(
                    f"--shared-group needs MQTT 5 shared subscriptions; the broker at "
                    f"{settings.broker} speaks MQTT 3.1.1 only"
                )
            )
            return ConnectionOutcome.FATAL
        connected_at = time.monotonic()
        while not connection.ended:  # each wait is bounded; stop() disconnects us
            connection.changed.clear()
            if connection.ended:
                break
            connection.changed.wait(1.0)
        if self.stopping.is_set():
            return ConnectionOutcome.STOPPED
        # connected, but not for long: back off as if it had failed
        return (
            ConnectionOutcome.LOST
            if time.monotonic() - connected_at >= STABLE_S
            else ConnectionOutcome.FAILED
        )

    # --- paho callbacks (network thread): short, and never raise

    @_guarded
    def _on_connect(
        self, client: mqtt.Client, connection: Connection, flags: Any, reason: Any, _p: Any
    ) -> None:
        connection.connack = reason
        if not reason.is_failure:
            connection.session_present = bool(flags.session_present)
            # Settled here, not only when the supervisor wakes: whoever sees us
            # connected (stats, a test waiting for the subscription) sees the protocol.
            self._reconnector.settle(connection.protocol)
            with self._lock:
                self._live = connection
            self.metrics.connected.set(1)
            self.metrics.connections.inc()
            log.info(
                "ingest: connected to %s (MQTT %s, %s session)",
                self.settings.broker,
                PROTOCOL_NAMES[connection.protocol],
                "resumed" if connection.session_present else "new",
            )
            filters = self.settings.filters
            if connection.protocol == MQTT5:
                # Retained messages are no events: a subscription (ours comes back
                # at every start) must not deliver the topic's retained one again.
                never = SubscribeOptions.RETAIN_DO_NOT_SEND
                wanted = [(f, SubscribeOptions(qos=1, retainHandling=never)) for f in filters]
            else:
                wanted = [(f, 1) for f in filters]
            client.subscribe(wanted)
            self._on_connected(connection)
        connection.changed.set()

    @_guarded
    def _on_subscribe(
        self, client: mqtt.Client, connection: Connection, mid: int, codes: Any, _p: Any
    ) -> None:
        filters = self.settings.filters
        refused = [(f, c) for f, c in zip(filters, codes, strict=False) if c.is_failure]
        if refused:
            detail = "; ".join(f"{f}: {c}" for f, c in refused)
            self._fail(IngestError(f"the broker refused our subscriptions ({detail})"))
            return
        log.info("ingest: subscribed to %s", ", ".join(filters))
        self.ready.set()

    def _ignore_retained(self, client: mqtt.Client, message: Any) -> None:
        """A message with the retain flag is the broker's stored copy, sent
        because we subscribed (MQTT 3.1.1, or a broker that ignores retain
        handling), never a live publication (those arrive with the flag off:
        MQTT 5 "retain as published" is off). Ingesting it would read the same
        event, or write the same reject, at every restart: acknowledge it and
        count it, nothing else."""
        try:
            if message.qos > 0:
                client.ack(message.mid, message.qos)
            topic = message.topic
        except Exception:  # a callback must not raise: it would end paho's thread
            log.exception("ingest: cannot acknowledge a retained message (mid %s)", message.mid)
            return
        self.metrics.retained_ignored.inc()
        log.info(
            "ingest: ignored the retained message on %s (retained messages are no events)", topic
        )

    @_guarded
    def _on_disconnect(
        self, _c: mqtt.Client, connection: Connection, _f: Any, reason: Any, _p: Any
    ) -> None:
        connection.ended = True
        with self._lock:
            if self._live is connection:
                self._live = None
        self.ready.clear()
        self.metrics.connected.set(0)
        if connection.connack is not None and not connection.connack.is_failure:
            if self.stopping.is_set():
                log.info("ingest: disconnected")
            elif getattr(reason, "value", None) == _SESSION_TAKEN_OVER:
                log.warning(
                    "ingest: connection lost: session taken over; is another ingest process "
                    "using client id %r? Give each its own --client-id",
                    self.settings.client_id,
                )
            else:
                log.warning("ingest: connection lost (%s)", reason)
        connection.changed.set()

    def _on_message(self, client: mqtt.Client, connection: Connection, message: Any) -> None:
        if self.stopping.is_set():
            return  # not acknowledged: the broker delivers it to our next session
        if message.retain:
            self._ignore_retained(client, message)
            return
        try:
            sent_at = None
            properties = getattr(message, "properties", None)
            for name, value in getattr(properties, "UserProperty", None) or ():
                if name == SENT_AT:
                    sent_at = value
            payload = message.payload
            item = Message(
                message.topic,
                payload,
                message.mid,
                message.qos,
                connection.generation,
                sent_at,
                estimate_envelopes(payload),
            )
        except Exception:  # a callback must not raise: it would end paho's thread
            log.exception("ingest: unreadable message (mid %s); dropping it", message.mid)
            return
        self.metrics.messages_received.inc()
        if self.inbox.put(item, FULL_INBOX_LIMIT_S):
            self.metrics.in_flight.set(self.inbox.pending)
            return
        if not self.stopping.is_set():
            log.warning(
                "ingest: inbox full for %gs (commits stalled?): reconnecting so that the broker "
                "redelivers",
                FULL_INBOX_LIMIT_S,
            )
            client.disconnect()
