"""The recall notifier: follows the ledger and publishes, retained and QoS 1, the
current recall notice of every lot a recall or lift reached, on
`provenance/v1/recalls/{gtin}/{lot}` (docs/lineage.md).

`RecallNotifier.poll()` reads the recalls and lifts appended since its cursor
(a log index), builds one notice per affected lot from the lot's state *now*,
hands them to the publisher, and advances the cursor only when every notice
was acknowledged by the broker: a crash or an outage means the same notices
go again, which retained current-state messages make harmless.

With `channels` (provenance/services/notice_delivery.py), each notice also
goes to the subscribers among the lot's holders (past, present and in
transit) by signed webhook and e-mail, queued once the round is acknowledged.

The cursor lives in a small file beside the database, not in the ledger's
meta table: a write there would make every ledger writer (the ingest service)
rebuild its caches.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from provenance.infra.broker_url import BrokerURL
from provenance.infra.mqtt import (
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
from provenance.ledger.lineage import recall_records
from provenance.services.notice_delivery import Channels
from provenance.services.recall_notice import (
    Evidence,
    add_evidence,
    build_notice,
    notice_bytes,
    notice_topic,
)
from provenance.store.db import Store
from provenance.store.errors import DATABASE_ERRORS

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0  # how often the database is asked for new recalls
ACK_TIMEOUT_S = 10.0  # how long a round of notices may wait for PUBACKs
KEEPALIVE_S = 30
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.5, 30.0
CONNACK_TIMEOUT_S = 10.0

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

    def __init__(
        self,
        store: Store,
        publish: Callable[[Sequence[Notice]], bool],
        cursor: Cursor,
        channels: Channels | None = None,
    ):
        self.store = store
        self.publish = publish
        self.cursor = cursor
        self.channels = channels
        self.queued = 0  # webhook and e-mail deliveries queued so far
        self._outgoing: list[tuple[dict[str, Any], bytes, set[str]]] = []
        self.published = 0  # notices acknowledged so far
        self.behind = False  # the last round was not acknowledged: try again

    def pending(self) -> tuple[list[Notice], int]:
        """The notices due since the cursor, and the log size they describe."""
        store = self.store
        begin = self.cursor.load()
        self._outgoing = []
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
            transit = store.open_shipments() if self.channels is not None else {}
            for state in sorted(store.lot_states(list(lots)), key=lambda s: s.id):
                records = recall_records(store, state.id, state.uri, cache)
                notice = add_evidence(
                    build_notice(state, records, origin=origin, log_size=size), evidence
                )
                payload = notice_bytes(notice)
                notices.append((notice_topic(state.uri), payload))
                if self.channels is not None:
                    self._outgoing.append((notice, payload, _holders(store, state.id, transit)))
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
        if self.channels is not None:
            if self._outgoing:
                self.channels.refresh()
            for notice, payload, holders in self._outgoing:
                self.queued += self.channels.deliver(notice, payload, holders)
            self._outgoing = []
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
                # a cursor file, a busy or unreachable database
                except (OSError, RuntimeError, *DATABASE_ERRORS) as exc:
                    log.warning("notify: round failed, will retry: %s", exc)
                    self.behind = True
            stop.wait(interval)


def _holders(store: Store, lot_id: int, transit: dict[int, Any]) -> set[str]:
    """The dids of every party that holds or held the lot, and of the party a
    shipment of it is on its way to."""
    dids = set()
    for party_id in store.custodian_history(lot_id):
        identity = store.identity_by_id(party_id)
        if identity is not None:
            dids.add(identity.did)
    moving = transit.get(lot_id)
    if moving is not None and moving[1]:
        dids.add(moving[1])
    return dids


class _Attempt:
    """One connection of the publisher: its paho client and how it went."""

    def __init__(self, client: mqtt.Client):
        self.client = client
        self.changed = threading.Event()  # CONNACK arrived, or the connection ended
        self.connack: Any = None
        self.ended = False


class RetainedPublisher:
    """Publishes retained QoS 1 messages and waits for their PUBACKs.

    The connection is the shared MQTT client's (`provenance.infra.mqtt`): one
    supervisor thread runs the `Reconnector` (capped, jittered backoff, MQTT
    3.1.1 with a clean session), paho's own loop thread carries each connection,
    and every callback is guarded."""

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
        self.login = Login(broker, client_id, username=username, password=password, tls_ca=tls_ca)
        self.connected = threading.Event()
        self.client: mqtt.Client | None = None  # the live connection's client
        self._stop = threading.Event()
        self._reconnector = Reconnector(
            self._stop,
            Backoff(RECONNECT_MIN_S, RECONNECT_MAX_S),
            protocol="3.1.1",
            on_retry=lambda delay: log.debug("notify: reconnecting in %.2fs", delay),
        )
        self._attempt: _Attempt | None = None
        self._thread = threading.Thread(target=self._run, name="notify-connect", daemon=True)

    def start(self) -> RetainedPublisher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        attempt = self._attempt
        if attempt is not None:
            attempt.changed.set()
        self._thread.join(timeout)

    def __call__(self, notices: Sequence[Notice]) -> bool:
        """Publish every notice retained, QoS 1; True when all were acknowledged
        within the timeout."""
        if not self.connected.wait(self.ack_timeout) or self.client is None:
            log.warning("notify: not connected to %s; will retry", self.broker)
            return False
        client = self.client
        infos = []
        for topic, payload in notices:
            info = client.publish(topic, payload, qos=1, retain=True)
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

    # --- the supervisor thread

    def _run(self) -> None:
        try:
            self._reconnector.run(self._session)
        except Exception:  # a bug: say so; __call__ then reports "not connected"
            log.exception("notify: the connection supervisor failed")

    def _session(self, protocol: int) -> ConnectionOutcome:
        client = new_client(self.login, protocol, persistent=False)
        client.max_inflight_messages_set(100)
        attempt = _Attempt(client)
        client.user_data_set(attempt)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=KEEPALIVE_S)
        except (OSError, ValueError) as exc:  # refused, unreachable, TLS trouble
            log.info("notify: cannot reach %s: %s", self.broker, exc)
            close_sockets_in(exc)
            return ConnectionOutcome.FAILED
        self._attempt = attempt
        client.loop_start()
        try:
            if not attempt.changed.wait(CONNACK_TIMEOUT_S) or attempt.connack is None:
                return (
                    ConnectionOutcome.STOPPED if self._stop.is_set() else ConnectionOutcome.FAILED
                )
            if connack_verdict(attempt.connack) is not ConnackVerdict.ACCEPTED:
                log.error(
                    "notify: broker %s refused the connection: %s", self.broker, attempt.connack
                )
                return ConnectionOutcome.FAILED
            connected_at = time.monotonic()
            self.client = client
            self.connected.set()
            while not (attempt.ended or self._stop.is_set()):  # bounded waits
                attempt.changed.wait(1.0)
                attempt.changed.clear()
            if self._stop.is_set():
                return ConnectionOutcome.STOPPED
            return (
                ConnectionOutcome.LOST
                if time.monotonic() - connected_at >= STABLE_S
                else ConnectionOutcome.FAILED
            )
        finally:
            self.connected.clear()
            if not attempt.ended:
                client.disconnect()
            client.loop_stop()

    # --- paho callbacks (paho's loop thread): short, and never raise

    @guarded(log, "notify")
    def _on_connect(self, _c: Any, attempt: _Attempt, _flags: Any, reason: Any, _p: Any) -> None:
        attempt.connack = reason
        if not reason.is_failure:
            log.info("notify: connected to %s", self.broker)
        attempt.changed.set()

    @guarded(log, "notify")
    def _on_disconnect(self, _c: Any, attempt: _Attempt, _f: Any, reason: Any, _p: Any) -> None:
        attempt.ended = True
        self.connected.clear()
        log.info("notify: disconnected from %s (%s)", self.broker, reason)
        attempt.changed.set()


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
