"""The ledger's MQTT ingest service: broker traffic in, ledger appends out.

    broker ─PUBLISH─▶ paho thread ─▶ inbox ─▶ committer thread ─▶ worker process: prep pool
           ◀─PUBACK── client.ack(mid) ◀── reply thread ◀─ after commit ◀─ one Ledger.append
           ◀─ provenance/v1/checkpoint (retained) ◀─ the newest signed checkpoint, ≤ 1/s

`IngestService` puts the parts together; each lives in a module of its own:

| module (`provenance.ingest.…`) | one job |
|---|---|
| connection | connecting, subscriptions, reconnects, paho callbacks |
| inbox | received, not yet acknowledged messages, bounded by count and bytes |
| decode | pure: one message → the items for `Ledger.append`; limits; notices |
| commit | one group → ONE `Ledger.append` (the same code on a thread or in the worker) |
| backend | where groups are committed: on the committer thread, or in the worker |
| prepare | decode, schema and signature checks, in the worker's prep processes |
| worker | the commit worker process: prep processes, the writer thread |
| checkpoints | the retained, rate-limited checkpoint publication |
| metrics, errors | the Prometheus metrics; the service's exceptions |

Each name is imported from the module that defines it; this one defines only the
service, its statistics and its limits (tests/test_names.py checks that).

- The paho thread only wraps each message and puts it in the inbox, which is
  bounded from receipt until the acknowledgement. When it is full the
  callback waits, so paho stops reading and the broker flow-controls us; under
  MQTT 5 the Receive Maximum we ask for keeps the broker from sending more than
  `max_pending` unacknowledged messages in the first place.
- The committer thread takes up to `max_batch` envelopes, or whatever arrived
  within `max_wait_ms` of the first, and submits them as one group. Each group
  is committed in ONE `Ledger.append` (size limits, one envelope or a JSON
  array, then the ledger's schema, signer, signature, replay/dedupe,
  authorisation and commit); then every message of the group is acknowledged
  and a notice published for every rejection on the publisher's rejects topic.
- Given a database path, groups go to a worker process (`worker`) whose
  prep processes decode and verify while it appends the groups before, so the
  ledger's CPU work never holds the GIL that paho's thread needs. Given a
  `Ledger` factory, groups are committed on the committer thread.
- On a shared subscription a message refused for want of an earlier event
  (another node may hold it) waits and is tried again, up to DEPENDENCY_WAIT_S;
  PUBACKs leave in arrival order all the same (acks.py).
- A crash before the ack means the broker redelivers (persistent session) and
  the ledger reports the redelivered envelopes as duplicates: nothing is lost
  and nothing is stored twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import MQTTErrorCode

from provenance.core import topics
from provenance.core.errors import ValidationError
from provenance.core.timefmt import now_micros
from provenance.infra.broker_url import BrokerURL
from provenance.infra.mqtt import PROTOCOLS
from provenance.ingest.acks import AckOrder, Waiting
from provenance.ingest.backend import ThreadBackend, WorkerBackend, ledger_factory
from provenance.ingest.checkpoints import CHECKPOINT_INTERVAL_S, CheckpointPublisher, ShownNote
from provenance.ingest.commit import BatchResult, ItemResult
from provenance.ingest.connection import (
    BACKOFF_MAX_S,
    BACKOFF_MIN_S,
    CONNACK_TIMEOUT_S,
    KEEPALIVE_S,
    SESSION_EXPIRY_S,
    Connection,
    Connector,
    Settings,
    default_client_id,
)
from provenance.ingest.decode import INTERNAL_ERROR, reject_notice, sent_at_micros
from provenance.ingest.errors import IngestError
from provenance.ingest.inbox import Inbox, Message
from provenance.ingest.metrics import CLOCK_EVENT_TIME, CLOCK_SENT_AT, IngestMetrics
from provenance.ledger.append import Ledger
from provenance.store.location import database_location

log = logging.getLogger(__name__)

MAX_NOTICES_PER_MESSAGE = 100  # reject notices published for one message
MAX_BATCH = 500
MAX_WAIT_MS = 5
MAX_PENDING = 10_000  # received but not yet acknowledged messages
MAX_PENDING_BYTES = 64 << 20
STOP_TIMEOUT_S = 30.0
CHECKPOINT_STOP_S = 5.0  # at stop, how long to wait for the broker to take the last checkpoint
# How long an envelope refused for want of an earlier event (ledger.append's
# WAITS_FOR_EARLIER) waits for it, with --shared-group: the broker hands one
# publisher's messages to several nodes, so the earlier one may be on its way
# through another node (docs/ingest.md, "Several ingest nodes").
DEPENDENCY_WAIT_S = 2.0
MAX_WAITING = 1_000  # messages waiting at once; beyond, a refusal is final at once


@dataclass(frozen=True)
class IngestStats:
    """Statistics for progress lines and tests (Prometheus has the same numbers)."""

    messages: int = 0
    envelopes: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    batches: int = 0  # Ledger.append calls (group commits)
    in_flight: int = 0  # received, not yet acknowledged
    peak_in_flight: int = 0
    connected: bool = False
    protocol: str | None = None
    connections: int = 0
    waited: int = 0  # times a message was refused for want of an earlier event and waited

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class IngestService:
    """Subscribe to the events topics and append what arrives to the ledger.

    ``ledger`` is a factory called once, on the committer thread (a `Ledger`
    is used by one thread). Or give ``db_path`` and ``log_key``: then the
    decoding and appending run in a worker process (``worker=True``, the
    default) with ``prep_processes`` processes (default: one per core) that
    decode and verify, so that paho's network thread never waits for the GIL
    behind the ledger's Python work (docs/ingest.md, "Threads and processes").
    The newest signed checkpoint is published, retained, on
    provenance/v1/checkpoint at most every ``checkpoint_interval`` seconds
    (None: not at all).

        service = IngestService(db_path="ledger.db", log_key=key, broker="mqtt://127.0.0.1:1883")
        service.start()
        ...
        service.stop()          # drains: commits and acknowledges what is in flight
    """

    def __init__(
        self,
        ledger: Callable[[], Ledger] | None = None,
        *,
        db_path: str | Path | None = None,
        log_key: Ed25519PrivateKey | None = None,
        broker: str | BrokerURL,
        username: str | None = None,
        password: str | None = None,
        tls_ca: str | Path | None = None,
        shared_group: str | None = None,
        client_id: str | None = None,
        max_batch: int = MAX_BATCH,
        max_wait_ms: float = MAX_WAIT_MS,
        max_pending: int = MAX_PENDING,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        protocol: str = "auto",
        session_expiry: int = SESSION_EXPIRY_S,
        keepalive: int = KEEPALIVE_S,
        connack_timeout: float = CONNACK_TIMEOUT_S,
        backoff: tuple[float, float] = (BACKOFF_MIN_S, BACKOFF_MAX_S),
        metrics: IngestMetrics | None = None,
        worker: bool | None = None,
        prep_processes: int | None = None,
        checkpoint_interval: float | None = CHECKPOINT_INTERVAL_S,
        dependency_wait: float | None = None,
    ):
        broker_url = broker if isinstance(broker, BrokerURL) else BrokerURL.parse(broker)
        if tls_ca is not None and not broker_url.tls:
            raise ValidationError("tls_ca", f"a CA file needs an mqtts:// broker, got {broker}")
        if protocol not in ("auto", *PROTOCOLS):
            raise ValidationError("protocol", "must be auto, 5 or 3.1.1")
        if shared_group is not None:
            try:
                topics.shared("x", shared_group)
            except ValidationError as exc:
                raise ValidationError("shared group", exc.rule) from None
            if protocol == "3.1.1":
                raise IngestError("--shared-group needs MQTT 5 (shared subscriptions)")
        if max_batch < 1 or max_pending < 1 or max_pending_bytes < 1 or max_wait_ms < 0:
            raise ValueError("max_batch, max_pending and max_pending_bytes must be positive")
        self._abandon = threading.Event()  # stop() gave up waiting for the drain
        self._backend: ThreadBackend | WorkerBackend
        if ledger is not None:
            if worker:
                raise ValueError("a ledger factory runs on a thread; give db_path and log_key")
            self._backend = ThreadBackend(ledger, self._settle, self._abandon)
        elif db_path is None or log_key is None:
            raise ValueError("give a ledger factory, or db_path and log_key")
        elif worker or worker is None:
            self._backend = WorkerBackend(
                database_location(db_path),
                log_key,
                self._settle,
                self._abandon,
                self._fail,
                prep_processes,
                idle=self._idle,
            )
        else:
            factory = ledger_factory(database_location(db_path), log_key)
            self._backend = ThreadBackend(factory, self._settle, self._abandon, owns_store=True)
        self.broker = broker_url
        self.shared_group = shared_group
        self.client_id = client_id or default_client_id(shared_group)
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_pending = max_pending
        # Default: wait only on a shared subscription; alone, a node sees one
        # publisher's messages in the order they were sent.
        if dependency_wait is None:
            dependency_wait = DEPENDENCY_WAIT_S if shared_group else 0.0
        self.dependency_wait = dependency_wait
        self._order = AckOrder()  # PUBACKs in arrival order
        self._waiting = Waiting()
        self.metrics = metrics if metrics is not None else IngestMetrics()
        self._latency_sent_at = self.metrics.latency.labels(CLOCK_SENT_AT)
        self._latency_event_time = self.metrics.latency.labels(CLOCK_EVENT_TIME)
        self.filters = [topics.shared(f, shared_group) for f in topics.EVENT_FILTERS]

        self.error: IngestError | None = None
        self.stopping = threading.Event()  # set by stop() or a fatal error; intake stops
        self._inbox = Inbox(max_pending, max_pending_bytes)
        settings = Settings(
            broker=broker_url,
            client_id=self.client_id,
            filters=tuple(self.filters),
            username=username,
            password=password,
            tls_ca=None if tls_ca is None else str(tls_ca),
            shared_group=shared_group,
            protocol=protocol,
            session_expiry=session_expiry,
            keepalive=keepalive,
            connack_timeout=connack_timeout,
            backoff=backoff,
            receive_maximum=max_pending,
        )
        self._connector = Connector(
            settings,
            inbox=self._inbox,
            metrics=self.metrics,
            stopping=self.stopping,
            fail=self._fail,
            on_connected=self._on_connected,
        )
        self.ready = self._connector.ready  # connected and subscribed
        self._checkpoints: CheckpointPublisher | None = None
        if checkpoint_interval is not None:
            self._checkpoints = CheckpointPublisher(
                lambda: self._connector.live,
                self.metrics,
                checkpoint_interval,
                shown=None if db_path is None else ShownNote(db_path),
            )
        self._progress = threading.Condition()
        self._counts: dict[str, Any] = {
            "messages": 0,
            "envelopes": 0,
            "accepted": 0,
            "duplicates": 0,
            "batches": 0,
            "connections": 0,
            "waited": 0,
            "rejected": {},
        }
        self._committer = threading.Thread(
            target=self._committer_main, name="ingest-commit", daemon=True
        )
        self._started = False

    # --- life cycle

    def start(self) -> IngestService:
        if self._started:
            raise RuntimeError("an IngestService starts once")
        self._started = True
        log.info(
            "ingest: broker %s, client id %s, filters %s, batches of up to %d envelopes / %g ms",
            self.broker,
            self.client_id,
            ", ".join(self.filters),
            self.max_batch,
            self.max_wait * 1000,
        )
        if self._checkpoints is not None:
            self._checkpoints.start()
        self._committer.start()
        self._connector.start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop taking messages, commit and acknowledge what is in flight,
        publish the newest checkpoint, disconnect. After *timeout* it gives up
        on the rest (unacknowledged messages are redelivered to the next
        session)."""
        deadline = time.monotonic() + timeout
        self._begin_stop()
        if self._started:
            self._committer.join(max(0.0, deadline - time.monotonic()))
            if self._committer.is_alive():
                log.warning("ingest: in-flight work not committed in %gs; leaving it", timeout)
                self._abandon.set()
                self._backend.abort()  # a worker blocked in a commit: kill it
                self._committer.join(5)
            if self._checkpoints is not None:
                wait = min(CHECKPOINT_STOP_S, max(0.5, deadline - time.monotonic()))
                if not self._checkpoints.stop(wait):
                    log.warning("ingest: the broker did not take the newest checkpoint")
        self._connector.disconnect()  # queued behind the last acknowledgements
        if self._started:
            self._connector.join(max(1.0, deadline - time.monotonic()))
        log.info("ingest: stopped (%s)", _summary(self.stats()))

    def _begin_stop(self) -> None:
        self.stopping.set()
        self._inbox.close()

    def _fail(self, error: IngestError) -> None:
        if self.error is None:
            self.error = error
            log.error("ingest: %s", error)
        self._begin_stop()
        self._connector.disconnect()

    def __enter__(self) -> IngestService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self._committer.is_alive() and self._connector.is_alive()

    def join(self, timeout: float) -> bool:
        """Wait for both threads to end; True if they did."""
        deadline = time.monotonic() + timeout
        self._committer.join(max(0.0, deadline - time.monotonic()))
        self._connector.join(max(0.0, deadline - time.monotonic()))
        return not (self._committer.is_alive() or self._connector.is_alive())

    # --- observation

    def stats(self) -> IngestStats:
        with self._progress:
            counts = dict(self._counts)
            counts["rejected"] = dict(counts["rejected"])
        live = self._connector.live
        return IngestStats(
            **counts,
            in_flight=self._inbox.pending,
            peak_in_flight=self._inbox.peak,
            connected=live is not None and live.connack is not None,
            protocol=self._connector.protocol_name,
        )

    def wait_for(self, predicate: Callable[[IngestStats], bool], timeout: float) -> bool:
        """Wait until *predicate(stats)* holds (checked after every commit)."""
        deadline = time.monotonic() + timeout
        with self._progress:
            while True:
                if predicate(self.stats()):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(min(remaining, 0.5))

    def _count(self, **changes: Any) -> None:
        with self._progress:
            for name, value in changes.items():
                if name == "rejected":
                    counts = self._counts["rejected"]
                    for reason, n in value.items():
                        counts[reason] = counts.get(reason, 0) + n
                else:
                    self._counts[name] += value
            self._progress.notify_all()

    def _on_connected(self, _connection: Connection) -> None:
        self._count(connections=1)
        if self._checkpoints is not None:
            self._checkpoints.connected()

    # --- committing (the committer thread submits; settling follows each commit)

    def _committer_main(self) -> None:
        backend = self._backend
        try:
            note = backend.open()
            if self._checkpoints is not None:
                self._checkpoints.offer(note)
            while True:
                batch = self._collect()
                if batch is None:
                    backend.drain()  # what comes back waiting is tried once more, for good
                    if not len(self._waiting) or self._abandon.is_set():
                        break
                    continue
                if batch:
                    backend.submit(batch)
        except IngestError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug: say so loudly and stop rather than hang
            log.exception("ingest: the committer failed")
            self._fail(IngestError(f"the committer failed: {exc!r}"))
        finally:
            backend.close(10)

    def _collect(self) -> list[Message] | None:
        """Messages for one group commit: up to max_batch envelopes. What is
        there when the ledger is idle (a lone message waits for nobody); while
        earlier groups are being committed, what arrives until they are, or
        within max_wait of the first (so that a busy worker is fed). [] when
        idle; None when closed and drained (or abandoned)."""
        if self._abandon.is_set():
            return None
        now = time.monotonic()
        due = self._waiting.due(now, self.max_batch, everything=self._inbox.drained)
        if due:
            return due
        following = self._waiting.next_at()
        timeout = 0.25 if following is None else min(0.25, max(0.0, following - now))
        busy = self._backend.busy
        batch = self._inbox.take(self.max_batch, timeout, self.max_wait, busy)
        if not batch and self._inbox.drained:
            return None
        until = time.monotonic() + self.dependency_wait
        may_wait = self.dependency_wait > 0 and len(self._waiting) < MAX_WAITING
        for message in batch:
            message.may_wait = may_wait
            message.wait_until = until
        self._order.received(batch)
        return batch

    def _idle(self) -> None:
        """The worker answered every group: a group being gathered goes now."""
        self._inbox.nudge()

    def _settle(self, batch: list[Message], result: BatchResult | None) -> None:
        """Acknowledge (if committed), publish reject notices, count, release.
        Without a result (abandoned at shutdown) nothing is acknowledged."""
        if result is None:
            self._acknowledge(self._order.done(batch, ack=False), None)
            return
        live = self._connector.live
        accepted = duplicates = waited = envelopes = 0
        rejected: dict[str, int] = {}
        now = now_micros()
        settled = []
        for message, items in zip(batch, result.messages, strict=True):
            if any(item.status == "waiting" for item in items):
                if live is not None and live.generation == message.generation:
                    waited += 1
                    self.metrics.waited.inc()
                    self._waiting.park(message, time.monotonic())
                    self._inbox.nudge()  # the committer times its next take by it
                    continue
                self._acknowledge(self._order.done([message], ack=False), live)
                continue  # its connection is gone: the broker delivers it again
            settled.append(message)
            envelopes += len(items)
            refused = []
            sent_at = sent_at_micros(message.sent_at)
            for item in items:
                if item.status == "accepted":
                    accepted += 1
                    self._observe_latency(sent_at, item.time_us, now)
                elif item.status == "duplicate":
                    duplicates += 1
                else:
                    reason = item.reason or INTERNAL_ERROR
                    rejected[reason] = rejected.get(reason, 0) + 1
                    self.metrics.rejected.labels(reason).inc()
                    refused.append(item)
            if refused:
                self._notify(live, message, refused, len(items))
        self._acknowledge(self._order.done(settled), live)
        self.metrics.envelopes_received.inc(envelopes)
        self.metrics.accepted.inc(accepted)
        self.metrics.duplicates.inc(duplicates)
        appended = result.envelopes if result.appended is None else result.appended
        if appended:
            self.metrics.batch_size.observe(appended)
            self.metrics.commit_seconds.observe(result.seconds)
        if self._checkpoints is not None:
            self._checkpoints.offer(result.checkpoint)
        self._count(
            messages=len(settled),
            envelopes=envelopes,
            accepted=accepted,
            duplicates=duplicates,
            batches=1 if appended else 0,
            rejected=rejected,
            waited=waited,
        )

    def _acknowledge(self, turn: list[tuple[Message, bool]], live: Connection | None) -> None:
        """PUBACK the messages whose turn has come (in arrival order), on the
        connection that delivered each, and release them from the inbox."""
        for message, ack in turn:
            mine = live is not None and live.generation == message.generation
            if ack and mine and message.qos > 0:
                live.client.ack(message.mid, message.qos)  # type: ignore[union-attr]
        self._inbox.release([message for message, _ in turn])
        self.metrics.in_flight.set(self._inbox.pending)

    def _observe_latency(self, sent_at: int | None, time_us: int | None, now: int) -> None:
        if sent_at is not None:
            self._latency_sent_at.observe(max(0, now - sent_at) / 1e6)
        elif time_us is not None:
            self._latency_event_time.observe(max(0, now - time_us) / 1e6)

    def _notify(
        self, live: Connection | None, message: Message, refused: list[ItemResult], count: int
    ) -> None:
        first = refused[0]
        log.info(
            "ingest: %d of %d envelope(s) on %s rejected; first: %s: %s",
            len(refused),
            count,
            message.topic,
            first.reason,
            first.message,
        )
        topic = topics.rejects_topic(message.topic)
        for result in refused[:MAX_NOTICES_PER_MESSAGE]:
            if live is None:
                self.metrics.notices_dropped.inc()
                continue
            payload = json.dumps(reject_notice(result), ensure_ascii=False)
            info = live.client.publish(topic, payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.metrics.notices_dropped.inc()
        if len(refused) > MAX_NOTICES_PER_MESSAGE:
            self.metrics.notices_dropped.inc(len(refused) - MAX_NOTICES_PER_MESSAGE)


def _summary(stats: IngestStats) -> str:
    return (
        f"{stats.accepted} accepted, {stats.duplicates} duplicates, {stats.rejected_total} "
        f"rejected, {stats.messages} messages, {stats.in_flight} in flight"
    )
