"""Publishing the log's checkpoint on `provenance/v1/checkpoint` (retained,
QoS 1) so that gateways, scanners and witnesses can follow the log.

The ledger signs a checkpoint (a C2SP signed note) at every commit; the
committer hands each new note to `CheckpointPublisher.offer`. One thread
publishes the newest note at most once per `interval`, and always the newest
once commits pause; again after every reconnect (a restarted broker may have
lost its retained copy); and once more, waiting for the broker's PUBACK, when
the service stops.

Given a `ShownNote` reader (the service gives one when it has the ledger's
path), the note published is the ledger's checkpoint to show instead
(provenance/store/cosignatures.py): with witnesses configured, the newest
checkpoint the quorum cosigned, with the cosignature lines. The publisher
thread reads it from the database (never under the lock `offer` takes, so the
committer never waits on that read) at every wake: after an offer, and at
least once a second, so cosignatures that arrive while commits pause go out too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from provenance.core import topics
from provenance.ingest.connection import Connection
from provenance.ingest.metrics import IngestMetrics
from provenance.store.cosignatures import shown_checkpoint
from provenance.store.db import Store, StoreError
from provenance.store.errors import DATABASE_ERRORS
from provenance.store.location import database_location

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0  # at most one checkpoint publication per interval
CHECKPOINT_TOPIC = topics.CHECKPOINT
SHOWN_READ_MIN_S = 0.1  # at most ten reads a second of the checkpoint to show


def note_size(note: str) -> int:
    """The log size a checkpoint note signs (its second line), -1 if unreadable."""
    try:
        return int(note.split("\n", 2)[1])
    except (IndexError, ValueError):
        return -1


class ShownNote:
    """Reads the ledger's checkpoint to show (with its cosignatures), on a
    read-only connection opened at the first call; None when it cannot."""

    def __init__(self, db_path: str | Path):
        self.db_path = database_location(db_path)
        self._store: Store | None = None
        self._error: str | None = None

    def __call__(self) -> str | None:
        try:
            if self._store is None:
                self._store = Store(self.db_path, create=False, readonly=True)
            shown = shown_checkpoint(self._store)
        except (StoreError, *DATABASE_ERRORS) as exc:
            if str(exc) != self._error:  # once per distinct problem, not ten times a second
                log.warning("ingest: cannot read the checkpoint to show: %s", exc)
            self._error = str(exc)
            self.close()
            return None
        self._error = None
        return None if shown is None else shown.note

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


class CheckpointPublisher:
    """Rate-limited, retained publication of the newest checkpoint note.

    *connection()* gives the live connection (or None while disconnected).
    With *shown*, the note published is what it reads (the checkpoint to show),
    and offered notes only say that it may have changed.
    """

    def __init__(
        self,
        connection: Callable[[], Connection | None],
        metrics: IngestMetrics,
        interval: float = CHECKPOINT_INTERVAL_S,
        topic: str = CHECKPOINT_TOPIC,
        shown: Callable[[], str | None] | None = None,
    ):
        self._connection = connection
        self._shown = shown
        self._last_read = float("-inf")  # monotonic: the last read of the note to show
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
        if self._shown is not None:  # the thread reads what to show
            with self._changed:
                self._changed.notify_all()
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

    def _refresh(self) -> float:
        """Read the checkpoint to show, if there is a reader (without the lock), at
        most once per SHOWN_READ_MIN_S: 0 if read (or nothing to read), else the
        seconds until the next read may be."""
        if self._shown is None:
            return 0.0
        pause = self._last_read + SHOWN_READ_MIN_S - time.monotonic()
        if pause > 0:
            return pause
        self._last_read = time.monotonic()
        note = self._shown()
        if note is None:
            return 0.0
        size = note_size(note)
        with self._changed:
            if size >= self._latest_size:  # never an older one (another reader raced)
                self._latest, self._latest_size = note, size
        return 0.0

    def _main(self) -> None:
        try:
            while True:
                pause = self._refresh()
                with self._changed:
                    if self._stopped:
                        return
                    due = self._due()
                    if due is None:  # a connection may come back without a notify
                        self._changed.wait(pause or 1.0)
                        continue
                    wait = self._last_publish + self.interval - time.monotonic()
                    if wait > 0:  # rate limit: the newest note goes out when the interval is up
                        self._changed.wait(wait)
                        continue
                self._publish(*due)
        finally:
            if isinstance(self._shown, ShownNote):
                self._shown.close()

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
        if not self._thread.is_alive():
            self._last_read = float("-inf")
            self._refresh()
            if isinstance(self._shown, ShownNote):
                self._shown.close()
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
