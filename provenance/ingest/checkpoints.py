"""Publishing the log's latest signed checkpoint on `provenance/v1/checkpoint`
(retained, QoS 1) so that gateways and witnesses can follow the log.

The ledger signs a checkpoint (a C2SP signed note) at every commit; the
committer hands each new note to `CheckpointPublisher.offer`. One thread
publishes the newest note at most once per `interval`, and always the newest
once commits pause; again after every reconnect (a restarted broker may have
lost its retained copy); and once more, waiting for the broker's PUBACK, when
the service stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from provenance.core import topics
from provenance.ingest.connection import Connection
from provenance.ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0  # at most one checkpoint publication per interval
CHECKPOINT_TOPIC = topics.CHECKPOINT


def note_size(note: str) -> int:
    """The log size a checkpoint note signs (its second line), -1 if unreadable."""
    try:
        return int(note.split("\n", 2)[1])
    except (IndexError, ValueError):
        return -1


class CheckpointPublisher:
    """Rate-limited, retained publication of the newest checkpoint note.

    *connection()* gives the live connection (or None while disconnected).
    """

    def __init__(
        self,
        connection: Callable[[], Connection | None],
        metrics: IngestMetrics,
        interval: float = CHECKPOINT_INTERVAL_S,
        topic: str = CHECKPOINT_TOPIC,
    ):
        self._connection = connection
        self.metrics = metrics
        self.interval = interval
        self.topic = topic
        self._changed = threading.Condition()
        self._latest: str | None = None  # the newest note offered
        self._latest_size = -1
        self._published: tuple[int, str] | None = None  # (connection generation, note)
        self._last_publish = float("-inf")  # monotonic
        self._stopped = False
        self._thread = threading.Thread(target=self._main, name="ingest-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, note: str | None) -> None:
        """A note from a commit; kept if it is the newest seen."""
        if note is None:
            return
        size = note_size(note)
        with self._changed:
            if size < self._latest_size:
                return  # an older one (another writer's commit came in between)
            self._latest, self._latest_size = note, size
            self._changed.notify_all()

    def connected(self) -> None:
        """A new connection: publish the newest note on it (paho's thread: no waiting)."""
        with self._changed:
            self._changed.notify_all()

    def _due(self) -> tuple[Connection, str] | None:
        """What to publish now, if anything (called with the lock held)."""
        live = self._connection()
        note = self._latest
        if live is None or note is None:
            return None
        if self._published == (live.generation, note):
            return None
        return live, note

    def _main(self) -> None:
        while True:
            with self._changed:
                while not self._stopped and self._due() is None:
                    self._changed.wait(1.0)  # a connection may come back without a notify
                if self._stopped:
                    return
                wait = self._last_publish + self.interval - time.monotonic()
                if wait > 0:  # rate limit: the newest note goes out when the interval is up
                    self._changed.wait(wait)
                    continue
                due = self._due()
            if due is not None:
                self._publish(*due)

    def _publish(self, live: Connection, note: str) -> mqtt.MQTTMessageInfo | None:
        with self._changed:
            self._last_publish = time.monotonic()  # a failure is retried an interval later
        try:
            info = live.client.publish(self.topic, note, qos=1, retain=True)
        except (ValueError, RuntimeError) as exc:  # paho refused it outright
            log.warning("ingest: checkpoint not published: %s", exc)
            return None
        with self._changed:
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return None  # disconnected meanwhile: it goes out on the next connection
            self._published = (live.generation, note)
        self.metrics.checkpoints_published.inc()
        self.metrics.checkpoint_size.set(note_size(note))
        return info

    def stop(self, timeout: float) -> bool:
        """Stop the thread; publish the newest note if it has not gone out on
        this connection, and wait (up to *timeout*) for the broker's PUBACK.
        True if the newest note went out and, if published now, was acknowledged."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._changed:
            due = self._due()
            latest = self._latest
        if latest is None:
            return True
        if due is None:
            return self._connection() is not None
        info = self._publish(*due)
        if info is None:
            return False
        try:
            info.wait_for_publish(timeout)
        except (ValueError, RuntimeError):  # the connection ended first
            return False
        return info.is_published()
