"""The recall notifier: follows the ledger and publishes, retained and QoS 1, the
current recall notice of every lot a recall or lift reached, on
`provenance/v1/recalls/{gtin}/{lot}` (docs/lineage.md).

`RecallNotifier.poll()` reads the recalls and lifts appended since its cursor
(a log index), builds one notice per affected lot from the lot's state *now*,
hands them to the publisher, and advances the cursor only when every notice
was acknowledged by the broker: a crash or an outage means the same notices
go again, which retained current-state messages make harmless.

The cursor lives in a small file beside the database, not in the ledger's
meta table: a write there would make every ledger writer (the ingest service)
rebuild its caches.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from provenance.infra.broker_url import BrokerURL
from provenance.ledger.lineage import recall_records
from provenance.services.recall_notice import (
    Evidence,
    add_evidence,
    build_notice,
    notice_bytes,
    notice_topic,
)
from provenance.store.db import Store

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0  # how often the database is asked for new recalls
ACK_TIMEOUT_S = 10.0  # how long a round of notices may wait for PUBACKs
KEEPALIVE_S = 30
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.5, 30.0

Notice = tuple[str, bytes]  # (topic, payload)


class Cursor:
    """The next log index to look at, kept in a file (atomic replace)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def load(self) -> int:
        try:
            return int(self.path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def save(self, index: int) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(f"{index}\n")
        os.replace(temporary, self.path)


class RecallNotifier:
    """Turns new recalls and lifts into notices. *publish(notices)* returns True
    once the broker acknowledged all of them."""

    def __init__(self, store: Store, publish: Callable[[Sequence[Notice]], bool], cursor: Cursor):
        self.store = store
        self.publish = publish
        self.cursor = cursor
        self.published = 0  # notices acknowledged so far
        self.behind = False  # the last round was not acknowledged: try again

    def pending(self) -> tuple[list[Notice], int]:
        """The notices due since the cursor, and the log size they describe."""
        store = self.store
        begin = self.cursor.load()
        with store.snapshot():
            size = store.log_size()
            lots: dict[int, None] = {}
            for index in store.recall_events_since(begin):
                lots.update(dict.fromkeys(store.lots_of_recall_event(index)))
            if not lots:
                return [], size
            origin = store.get_meta("origin") or ""
            notices = []
            cache: dict[Any, Any] = {}  # recall events and regulators shared by the lots
            evidence = Evidence(store)  # the regulators' envelopes, enrolments and proofs
            for state in sorted(store.lot_states(list(lots)), key=lambda s: s.id):
                records = recall_records(store, state.id, state.uri, cache)
                notice = add_evidence(
                    build_notice(state, records, origin=origin, log_size=size), evidence
                )
                notices.append((notice_topic(state.uri), notice_bytes(notice)))
        return notices, size

    def poll(self) -> int:
        """Publish what is due; returns how many notices went out (0 if none were
        due or the broker did not acknowledge them: they go again next time)."""
        notices, size = self.pending()
        if size <= self.cursor.load():
            return 0
        if notices and not self.publish(notices):
            self.behind = True
            return 0
        self.behind = False
        self.cursor.save(size)
        self.published += len(notices)
        if notices:
            log.info("notify: published %d recall notices up to log size %d", len(notices), size)
        return len(notices)

    def run(self, stop: threading.Event, interval: float = POLL_INTERVAL_S) -> None:
        """Poll until *stop* is set; sleeps *interval* between polls (a cheap
        `PRAGMA data_version` check skips the queries when nothing was written)."""
        seen = None
        while not stop.is_set():
            version = self.store.data_version()
            if version != seen or self.behind:
                try:
                    self.poll()
                    seen = version
                except (OSError, RuntimeError, sqlite3.Error) as exc:  # cursor file, busy database
                    log.warning("notify: round failed, will retry: %s", exc)
                    self.behind = True
            stop.wait(interval)


class RetainedPublisher:
    """A small paho client that publishes retained QoS 1 messages and waits for
    their PUBACKs. paho's own loop thread reconnects with capped backoff."""

    def __init__(
        self,
        broker: BrokerURL,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        tls_ca: str | None = None,
        ack_timeout: float = ACK_TIMEOUT_S,
    ):
        self.broker = broker
        self.ack_timeout = ack_timeout
        self.connected = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.max_inflight_messages_set(100)
        if username is not None:
            client.username_pw_set(username, password)
        if broker.tls:
            client.tls_set(ca_certs=tls_ca, cert_reqs=ssl.CERT_REQUIRED)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_socket_open = _no_delay
        self.client = client

    def start(self) -> RetainedPublisher:
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __call__(self, notices: Sequence[Notice]) -> bool:
        """Publish every notice retained, QoS 1; True when all were acknowledged
        within the timeout."""
        if not self.connected.wait(self.ack_timeout):
            log.warning("notify: not connected to %s; will retry", self.broker)
            return False
        infos = []
        for topic, payload in notices:
            info = self.client.publish(topic, payload, qos=1, retain=True)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return False
            infos.append(info)
        for info in infos:
            try:
                info.wait_for_publish(self.ack_timeout)
            except (ValueError, RuntimeError):
                return False
            if not info.is_published():
                return False
        return True

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("notify: broker %s refused the connection: %s", self.broker, reason)
            return
        log.info("notify: connected to %s", self.broker)
        self.connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        log.info("notify: disconnected from %s (%s)", self.broker, reason)


def _no_delay(_client: Any, _userdata: Any, sock: Any) -> None:
    """paho leaves Nagle on, which holds back small packets by milliseconds."""
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket: nothing to do
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def default_cursor_path(db_path: str | os.PathLike[str]) -> Path:
    return Path(str(db_path) + ".notify-cursor")


__all__ = [
    "ACK_TIMEOUT_S",
    "POLL_INTERVAL_S",
    "Cursor",
    "RecallNotifier",
    "RetainedPublisher",
    "default_cursor_path",
]
