"""The ledger's MQTT ingest service: broker traffic in, ledger appends out.

    broker ─PUBLISH─▶ paho thread ─▶ inbox ─▶ committer thread ─▶ worker process: decode,
           ◀─PUBACK── client.ack(mid) ◀─────────── after commit ◀─ one Ledger.append per group

- The paho thread only wraps each message and puts it in the inbox, which is
  bounded by message count and bytes (`max_pending`, `max_pending_bytes`) from
  receipt until the acknowledgement. When it is full the callback waits, so
  paho stops reading and the broker flow-controls us; under MQTT 5 the Receive
  Maximum we ask for keeps the broker from sending more than `max_pending`
  unacknowledged messages in the first place.
- The committer thread takes up to `max_batch` envelopes, or whatever arrived
  within `max_wait_ms` of the first, and has them committed in ONE
  `Ledger.append` (`commit_batch`: size limits, one envelope or a JSON array,
  then the ledger's schema, signer, signature, replay/dedupe, authorisation
  and commit). Then it acknowledges every message of the group and publishes
  a notice for every rejection on the publisher's rejects topic.
- `commit_batch` runs in a worker process (`python -m provenance.ingest`) when
  the service is given a database path, so the ledger's Python work never
  holds the GIL that paho's thread needs; given a `Ledger` factory it runs on
  the committer thread. docs/ingest.md has the measurements behind this.
- A crash before the ack means the broker redelivers (persistent session) and
  the ledger reports the redelivered envelopes as duplicates: nothing is lost
  and nothing is stored twice.
- One supervisor thread owns connecting: MQTT 5 when the broker speaks it,
  else 3.1.1; subscriptions are made in on_connect; refused credentials stop
  the service; anything else is retried with capped, jittered backoff.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import pickle
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from . import topics
from .envelope import MAX_ENVELOPE_BYTES, Envelope
from .errors import ProvenanceError, ValidationError
from .jcs import MAX_DEPTH, parse_json
from .ledger import Appended, Ledger
from .metrics import CLOCK_EVENT_TIME, CLOCK_SENT_AT, IngestMetrics
from .store import Store, StoreError
from .timefmt import format_time, now_micros, parse_time

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20  # one MQTT message: an envelope or an array of them
MAX_ENVELOPES_PER_MESSAGE = 4096  # bounds the reject records one message can cause
MAX_NOTICES_PER_MESSAGE = 100  # reject notices published for one message
INTERNAL_ERROR = "internal-error"  # reject reason when handling a message raised unexpectedly
SENT_AT = "sent_at"  # MQTT 5 user property: when the publisher sent it (RFC 3339 UTC)

MAX_BATCH = 500
MAX_WAIT_MS = 5
MAX_PENDING = 10_000  # received but not yet acknowledged messages
MAX_PENDING_BYTES = 64 << 20
SESSION_EXPIRY_S = 7 * 24 * 3600  # how long the broker keeps our session while we are away
KEEPALIVE_S = 30
CONNACK_TIMEOUT_S = 5.0  # an MQTT 3.1.1-only broker may never answer an MQTT 5 CONNECT
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 30.0
STABLE_S = 10.0  # a connection that lasted this long resets the reconnect backoff
COMMIT_RETRY_MAX_S = 5.0  # backoff cap while the database refuses writes
FULL_INBOX_LIMIT_S = float(KEEPALIVE_S)  # then drop the connection (the broker redelivers)
STOP_TIMEOUT_S = 30.0
WORKER_RESTARTS = 2  # a worker that dies more often on one group is a fatal error
QUEUED_NOTICES = 10_000  # paho's outgoing queue (reject notices), bounded

PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
_PROTOCOL_NAMES = {mqtt.MQTTv5: "5", mqtt.MQTTv311: "3.1.1"}
_REFUSED_CREDENTIALS = {0x86, 0x87, 0x8C}  # bad user name or password, not authorised, auth method
_UNSUPPORTED_PROTOCOL = {0x01, 0x84}  # 3.1.1 return code 1 / MQTT 5 reason 0x84
_FATAL_CONNACK = {0x85, 0x8A}  # client identifier not valid, banned
_CLIENT_ID = re.compile(r"[^A-Za-z0-9._-]")


class IngestError(ProvenanceError):
    """The service cannot run: bad configuration, or the broker will not have it."""


class CredentialsRefused(IngestError):
    """The broker refused our user name, password or client identity."""


# --- the broker address


@dataclass(frozen=True)
class BrokerURL:
    """`mqtt://HOST[:PORT]` (TCP, port 1883) or `mqtts://HOST[:PORT]` (TLS, 8883)."""

    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerURL:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ValidationError("broker", f"{url!r} is not a broker URL: {exc}") from None
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValidationError(
                "broker", f"{url!r}: use mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS"
            )
        if not parts.hostname:
            raise ValidationError("broker", f"{url!r} names no host")
        if parts.username or parts.password:
            raise ValidationError("broker", "give credentials as --username/--password, not in URL")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValidationError("broker", f"{url!r}: a broker URL has no path or query")
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, port or (8883 if tls else 1883), tls)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


# --- decoding one message (pure: bytes in, items for Ledger.append out)


def decode_message(payload: bytes) -> list[Any]:
    """What to hand `Ledger.append` for one MQTT message; never raises.

    A message is one envelope or a JSON array of 1 to MAX_ENVELOPES_PER_MESSAGE
    envelopes. A single envelope goes to the ledger as the bytes it arrived as,
    and the elements of an array as parsed JSON values: the ledger parses and
    validates them while its thread pool verifies signatures, and refuses
    whatever is no envelope with its reason (`malformed` for bytes that are
    too large, not UTF-8, not JSON or too deep; `schema` for JSON that is no
    envelope), recording it with its raw bytes. A message that is not a
    usable array goes to the ledger whole, as bytes.
    """
    try:
        return _decode(payload)
    except Exception:  # never crash on input: the ledger refuses the raw bytes
        log.exception("unexpected error decoding a message of %d bytes", len(payload))
        return [bytes(payload)]


def _decode(payload: bytes) -> list[Any]:
    if len(payload) > MAX_MESSAGE_BYTES or not _is_array(payload):
        return [payload]
    try:
        value = parse_json(payload, max_depth=MAX_DEPTH + 1)  # + the array around envelopes
    except ValidationError:
        return [payload]
    if not isinstance(value, list) or not value or len(value) > MAX_ENVELOPES_PER_MESSAGE:
        return [payload]  # the ledger: `schema`, an envelope must be a JSON object
    if len(payload) <= MAX_ENVELOPE_BYTES:
        return value
    items: list[Any] = []
    for element in value:  # only a big message can hold an envelope that is too big
        encoded = json.dumps(element, ensure_ascii=False).encode("utf-8", "surrogatepass")
        items.append(encoded if len(encoded) > MAX_ENVELOPE_BYTES else element)
    return items


def _is_array(payload: bytes) -> bool:
    head = payload[:1]
    if head and head in b" \t\r\n":
        head = payload.lstrip(b" \t\r\n")[:1]
    return head == b"["


def event_time(item: Any) -> int | None:
    """The `time` of an accepted item (bytes or parsed JSON), in microseconds."""
    try:
        value = json.loads(item) if isinstance(item, (bytes, str)) else item
        return parse_time(value["time"]) if isinstance(value, dict) else None
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


def reject_notice(result: Appended | ItemResult) -> dict[str, Any]:
    """The payload published on a rejects topic for one refused envelope."""
    notice: dict[str, Any] = {}
    if result.event_id:
        notice["event_id"] = result.event_id
    notice["reason"] = result.reason or INTERNAL_ERROR
    notice["message"] = result.message or ""
    return notice


# --- the inbox: received, not yet acknowledged


@dataclass(slots=True)
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which connection delivered it: ack only on that one
    sent_at: str | None

    @property
    def size(self) -> int:
        return len(self.payload)


class _Inbox:
    """A FIFO of received messages, bounded by count and bytes until each
    message is released (after its ack). `put` waits while full."""

    def __init__(self, max_messages: int, max_bytes: int):
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._not_empty = threading.Condition(self._lock)
        self._queue: deque[_Message] = deque()
        self.pending = 0  # put and not yet released
        self.pending_bytes = 0
        self.peak = 0  # the most ever pending at once
        self.closed = False

    def _full(self, size: int) -> bool:
        if self.pending == 0:
            return False  # one message always fits, however big
        return self.pending >= self.max_messages or self.pending_bytes + size > self.max_bytes

    def put(self, message: _Message, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self.closed and self._full(message.size):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._not_full.wait(remaining)
            if self.closed:
                return False
            self._queue.append(message)
            self.pending += 1
            self.pending_bytes += message.size
            self.peak = max(self.peak, self.pending)
            self._not_empty.notify()
            return True

    def get(self, timeout: float) -> _Message | None:
        """The next message, or None after *timeout* (0: do not wait)."""
        with self._lock:
            if not self._queue and timeout > 0 and not self.closed:
                self._not_empty.wait(timeout)
            return self._queue.popleft() if self._queue else None

    def release(self, messages: Sequence[_Message]) -> None:
        with self._lock:
            self.pending -= len(messages)
            self.pending_bytes -= sum(message.size for message in messages)
            self._not_full.notify_all()

    def close(self) -> None:
        """No more puts; waiting puts return False; gets drain what is queued."""
        with self._lock:
            self.closed = True
            self._not_full.notify_all()
            self._not_empty.notify_all()

    @property
    def drained(self) -> bool:
        with self._lock:
            return self.closed and not self._queue


# --- committing one group: the same code on a thread or in the worker process


class TransientError(IngestError):
    """The database refused the commit (locked, full, I/O): retry the group later."""


class WorkerDied(IngestError):
    """The commit worker process ended unexpectedly."""


class ItemResult(NamedTuple):
    """What became of one envelope (or one whole message that was no envelope)."""

    status: str  # accepted | duplicate | rejected
    reason: str | None
    message: str | None
    event_id: str | None
    time_us: int | None  # an accepted envelope's time, when asked for (no sent_at)


class BatchResult(NamedTuple):
    messages: list[list[ItemResult]]  # per message, per envelope
    envelopes: int
    seconds: float  # in Ledger.append


_TRANSIENT = (sqlite3.Error, StoreError, OSError)


def commit_batch(ledger: Ledger, messages: Sequence[tuple[str, bytes, bool]]) -> BatchResult:
    """Decode (topic, payload, want_times) messages and append all their
    envelopes in one `Ledger.append`. Raises TransientError when the database
    refuses; a message whose handling raises anything else is rejected as
    `internal-error` and logged, the others are committed. `want_times`: also
    report accepted envelopes' `time` (for latency when there is no sent_at)."""
    decoded = [decode_message(payload) for _, payload, _ in messages]
    items = [item for found in decoded for item in found]
    sources = [m[0] for m, found in zip(messages, decoded, strict=True) for _ in found]
    started = time.perf_counter()
    try:
        results = _append(ledger, items, sources)
    except _TRANSIENT as exc:
        raise TransientError(f"commit failed: {exc}") from exc
    except Exception:
        log.exception("ingest: a group of %d messages failed; committing one by one", len(messages))
        results = []
        for (topic, payload, _), found in zip(messages, decoded, strict=True):
            try:
                results.extend(ledger.append(found, source=topic))
            except _TRANSIENT as exc:
                raise TransientError(f"commit failed: {exc}") from exc
            except Exception as exc:
                log.exception(
                    "ingest: a message on %s (%d bytes, starting %r) broke the pipeline; "
                    "rejecting it",
                    topic,
                    len(payload),
                    payload[:200],
                )
                results.extend(_internal_reject(ledger, topic, payload, len(found), exc))
    seconds = time.perf_counter() - started
    out: list[list[ItemResult]] = []
    position = 0
    for (_, _, want_times), found in zip(messages, decoded, strict=True):
        mine = []
        for item, result in zip(found, results[position : position + len(found)], strict=True):
            time_us = None
            if result.status == "accepted" and want_times:
                time_us = item.time_us if isinstance(item, Envelope) else event_time(item)
            mine.append(
                ItemResult(result.status, result.reason, result.message, result.event_id, time_us)
            )
        out.append(mine)
        position += len(found)
    return BatchResult(out, len(items), seconds)


class _ThreadBackend:
    """Commits on the committer thread itself (a `Ledger` factory was given)."""

    def __init__(self, factory: Callable[[], Ledger], owns_store: bool = False):
        self._factory = factory
        self._owns_store = owns_store
        self._ledger: Ledger | None = None

    def open(self) -> None:
        self._ledger = self._factory()

    def commit(self, messages: Sequence[tuple[str, bytes, bool]]) -> BatchResult:
        assert self._ledger is not None
        return commit_batch(self._ledger, messages)

    def restart(self) -> None:
        raise AssertionError("a thread backend does not die")

    def abort(self) -> None:
        """Nothing to interrupt: a blocked append ends with its busy timeout."""

    def close(self, timeout: float) -> None:
        if self._ledger is not None:
            self._ledger.close()
            if self._owns_store:
                self._ledger.store.close()


class _WorkerBackend:
    """Commits in a child process (`python -m provenance.ingest`), so that the
    ledger's CPU work never holds the GIL that paho's network thread needs.
    Requests and replies are length-prefixed pickles on the child's stdin and
    stdout; its stderr is ours. It ignores SIGINT/SIGTERM (we decide when it
    stops) and exits when its stdin closes, so it never outlives us for long."""

    def __init__(self, db_path: Path, log_key: Ed25519PrivateKey):
        self.db_path = db_path
        self._key = log_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        self.process: subprocess.Popen[bytes] | None = None

    def open(self) -> None:
        env = dict(os.environ)
        here = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "provenance.ingest"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        config = {"db": str(self.db_path), "key": self._key, "level": log.getEffectiveLevel()}
        reply = self._call(config)
        if reply[0] != "ready":
            self.close(5)
            raise IngestError(f"cannot open the ledger: {reply[1]}")
        log.info("ingest: commit worker %d ready", self.process.pid)

    def _call(self, request: Any) -> Any:
        assert self.process is not None and self.process.stdin and self.process.stdout
        try:
            _write_frame(self.process.stdin, request)
            return _read_frame(self.process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            code = self.process.poll()
            raise WorkerDied(f"the commit worker died ({exc!r}, exit status {code})") from None

    def commit(self, messages: Sequence[tuple[str, bytes, bool]]) -> BatchResult:
        reply = self._call(("commit", list(messages)))
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "transient":
            raise TransientError(reply[1])
        raise IngestError(reply[1])

    def restart(self) -> None:
        self.abort()
        self.open()

    def abort(self) -> None:
        process = self.process
        if process is not None:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            _close_pipes(process)

    def close(self, timeout: float) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            try:
                assert process.stdin is not None
                _write_frame(process.stdin, ("stop",))
                process.stdin.close()
            except OSError:
                pass  # it is gone already
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("ingest: commit worker did not stop in %gs; killing it", timeout)
        self.abort()


def _close_pipes(process: subprocess.Popen[bytes]) -> None:
    for stream in (process.stdin, process.stdout):
        if stream is not None and not stream.closed:
            with contextlib.suppress(OSError):  # a broken pipe: nothing left to flush
                stream.close()


def _write_frame(stream: Any, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(4, "big") + data)
    stream.flush()


def _read_frame(stream: Any) -> Any:
    header = stream.read(4)
    if len(header) < 4:
        raise EOFError("stream closed")
    size = int.from_bytes(header, "big")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("stream closed mid-frame")
    return pickle.loads(data)  # our own child process, not the network


def worker_main() -> int:
    """The commit worker process: `python -m provenance.ingest` (see _WorkerBackend)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the frames
    config = _read_frame(requests)
    logging.basicConfig(
        level=config["level"], format="%(asctime)s %(levelname)s worker: %(message)s"
    )
    try:
        key = load_pem_private_key(config["key"], password=None)
        assert isinstance(key, Ed25519PrivateKey)
        ledger = Ledger(Store(config["db"], create=False), key)
    except Exception as exc:  # report it to the parent, which says it to the operator
        _write_frame(replies, ("fatal", str(exc)))
        return 1
    _write_frame(replies, ("ready",))
    try:
        while True:
            try:
                request = _read_frame(requests)
            except EOFError:
                return 0  # the parent is gone: a redelivery will cover what it did not ack
            if request[0] != "commit":
                return 0
            try:
                reply: tuple[Any, ...] = ("ok", commit_batch(ledger, request[1]))
            except TransientError as exc:
                reply = ("transient", str(exc))
            except Exception as exc:
                log.exception("commit failed")
                reply = ("fatal", f"commit worker: {exc!r}")
            try:
                _write_frame(replies, reply)
            except OSError:
                return 0
    finally:
        ledger.close()
        ledger.store.close()


# --- statistics (for progress lines and tests; Prometheus has the same numbers)


@dataclass(frozen=True)
class IngestStats:
    messages: int = 0
    envelopes: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    in_flight: int = 0  # received, not yet acknowledged
    peak_in_flight: int = 0
    connected: bool = False
    protocol: str | None = None
    connections: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


# --- one connection


def _guarded(callback: Callable[..., None]) -> Callable[..., None]:
    """A paho callback that logs instead of raising (an exception would end
    paho's network thread)."""

    @functools.wraps(callback)
    def wrapper(*args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("ingest: error in %s", callback.__name__)

    return wrapper


class _Outcome(Enum):
    LOST = "lost"  # was connected for a while; reconnect soon
    DROPPED = "dropped"  # connected, lost again within STABLE_S: back off as if it had failed
    FAILED = "failed"  # never got connected; back off
    SWITCH = "switch"  # the broker does not speak that protocol version; try the other now
    FATAL = "fatal"
    STOPPED = "stopped"


class _Connection:
    """One connection attempt: its paho client and what became of it."""

    def __init__(self, client: mqtt.Client, generation: int, protocol: int):
        self.client = client
        self.generation = generation
        self.protocol = protocol
        self.changed = threading.Event()  # CONNACK arrived, or the connection ended
        self.connack: Any = None  # paho ReasonCode
        self.session_present = False
        self.ended = False


class IngestService:
    """Subscribe to the events topics and append what arrives to the ledger.

    ``ledger`` is a factory called once, on the committer thread (a `Ledger`
    is used by one thread). Or give ``db_path`` and ``log_key``: then the
    decoding and appending run in a worker process (``worker=True``, the
    default), so that paho's network thread never waits for the GIL behind
    the ledger's Python work (docs/ingest.md, "Threads and processes").

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
    ):
        if ledger is not None:
            if worker:
                raise ValueError("a ledger factory runs on a thread; give db_path and log_key")
            self._backend: _ThreadBackend | _WorkerBackend = _ThreadBackend(ledger)
        elif db_path is None or log_key is None:
            raise ValueError("give a ledger factory, or db_path and log_key")
        elif worker or worker is None:
            self._backend = _WorkerBackend(Path(db_path), log_key)
        else:
            self._backend = _ThreadBackend(_ledger_factory(Path(db_path), log_key), True)
        self.broker = broker if isinstance(broker, BrokerURL) else BrokerURL.parse(broker)
        if tls_ca is not None and not self.broker.tls:
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
        self.username = username
        self.password = password
        self.tls_ca = None if tls_ca is None else str(tls_ca)
        self.shared_group = shared_group
        self.client_id = client_id or default_client_id(shared_group)
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_pending = max_pending
        self.protocol = protocol
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.connack_timeout = connack_timeout
        self.backoff = backoff
        self.metrics = metrics if metrics is not None else IngestMetrics()
        self.filters = [topics.shared(f, shared_group) for f in topics.EVENT_FILTERS]

        self.error: IngestError | None = None
        self.stopping = threading.Event()  # set by stop() or a fatal error; intake stops
        self.ready = threading.Event()  # connected and subscribed
        self._abandon = threading.Event()  # stop() gave up waiting for the drain
        self._inbox = _Inbox(max_pending, max_pending_bytes)
        self._lock = threading.Lock()
        self._live: _Connection | None = None
        self._generation = 0
        self._settled: int | None = PROTOCOLS.get(protocol)  # the version that worked
        self._unanswered = 0  # connections closed before a CONNACK, in a row
        self._progress = threading.Condition()
        self._counts: dict[str, Any] = {
            "messages": 0,
            "envelopes": 0,
            "accepted": 0,
            "duplicates": 0,
            "batches": 0,
            "connections": 0,
            "rejected": {},
        }
        self._committer = threading.Thread(
            target=self._committer_main, name="ingest-commit", daemon=True
        )
        self._supervisor = threading.Thread(
            target=self._supervisor_main, name="ingest-connect", daemon=True
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
        self._committer.start()
        self._supervisor.start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop taking messages, commit and acknowledge what is in flight,
        disconnect. After *timeout* it gives up on the rest (unacknowledged
        messages are redelivered to the next session)."""
        deadline = time.monotonic() + timeout
        self._begin_stop()
        if self._started:
            self._committer.join(max(0.0, deadline - time.monotonic()))
            if self._committer.is_alive():
                log.warning("ingest: in-flight work not committed in %gs; leaving it", timeout)
                self._abandon.set()
                self._backend.abort()  # a worker blocked in a commit: kill it
                self._committer.join(5)
        with self._lock:
            live = self._live
        if live is not None:
            live.client.disconnect()  # queued behind the last acknowledgements
        if self._started:
            self._supervisor.join(max(1.0, deadline - time.monotonic()))
        log.info("ingest: stopped (%s)", _summary(self.stats()))

    def _begin_stop(self) -> None:
        self.stopping.set()
        self._inbox.close()

    def _fail(self, error: IngestError) -> None:
        if self.error is None:
            self.error = error
            log.error("ingest: %s", error)
        self._begin_stop()
        with self._lock:
            live = self._live
        if live is not None:
            live.client.disconnect()

    def __enter__(self) -> IngestService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self._committer.is_alive() and self._supervisor.is_alive()

    def join(self, timeout: float) -> bool:
        """Wait for both threads to end; True if they did."""
        deadline = time.monotonic() + timeout
        for thread in (self._committer, self._supervisor):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not (self._committer.is_alive() or self._supervisor.is_alive())

    # --- observation

    def stats(self) -> IngestStats:
        with self._progress:
            counts = dict(self._counts)
            counts["rejected"] = dict(counts["rejected"])
        with self._lock:
            live = self._live
        return IngestStats(
            **counts,
            in_flight=self._inbox.pending,
            peak_in_flight=self._inbox.peak,
            connected=live is not None and live.connack is not None,
            protocol=None if self._settled is None else _PROTOCOL_NAMES[self._settled],
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

    # --- connecting (the supervisor thread)

    def _supervisor_main(self) -> None:
        delay = self.backoff[0]
        candidate = self._settled or mqtt.MQTTv5
        try:
            while not self.stopping.is_set():
                outcome = self._session(self._settled or candidate)
                if outcome in (_Outcome.FATAL, _Outcome.STOPPED):
                    break
                if outcome is _Outcome.SWITCH:
                    candidate = mqtt.MQTTv311 if candidate == mqtt.MQTTv5 else mqtt.MQTTv5
                    continue
                if outcome is _Outcome.LOST:
                    delay = self.backoff[0]
                elif outcome is _Outcome.DROPPED:  # connected, but not for long: back off
                    outcome = _Outcome.FAILED
                wait = random.uniform(delay / 2, delay)  # jitter: fleets do not reconnect in step
                delay = min(self.backoff[1], delay * 2)
                log.info("ingest: reconnecting in %.2fs", wait)
                if self.stopping.wait(wait):
                    break
        except Exception as exc:  # a bug here must not leave a silent, dead service
            log.exception("ingest: connection supervisor failed")
            self._fail(IngestError(f"connection supervisor failed: {exc!r}"))
        finally:
            self.ready.clear()
            self.metrics.connected.set(0)

    def _new_client(self, protocol: int) -> _Connection:
        with self._lock:
            self._generation += 1
            generation = self._generation
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if protocol == mqtt.MQTTv5 else False,
            protocol=protocol,
            reconnect_on_failure=False,  # the supervisor alone reconnects
            manual_ack=True,
        )
        connection = _Connection(client, generation, protocol)
        client.user_data_set(connection)
        if self.username is not None or self.password is not None:
            client.username_pw_set(self.username, self.password)
        if self.broker.tls:
            client.tls_set(ca_certs=self.tls_ca)
        client.max_inflight_messages_set(1000)  # our own publishes: reject notices
        client.max_queued_messages_set(QUEUED_NOTICES)
        client.on_socket_open = _no_delay
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return connection

    def _session(self, protocol: int) -> _Outcome:
        connection = self._new_client(protocol)
        client = connection.client
        kwargs: dict[str, Any] = {}
        if protocol == mqtt.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.session_expiry
            properties.ReceiveMaximum = min(self.max_pending, 65_535)
            kwargs = {"clean_start": False, "properties": properties}
        try:
            client.connect(self.broker.host, self.broker.port, self.keepalive, **kwargs)
        except (OSError, ValueError) as exc:  # refused, unreachable, TLS trouble (ssl is OSError)
            log.warning("ingest: cannot reach %s: %s", self.broker, exc)
            return _Outcome.FAILED
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

    def _watch(self, connection: _Connection) -> _Outcome:
        name = _PROTOCOL_NAMES[connection.protocol]
        if not connection.changed.wait(self.connack_timeout):
            if self._settled is None:
                log.warning("ingest: no answer to an MQTT %s CONNECT; trying another version", name)
                return _Outcome.SWITCH
            log.warning("ingest: no CONNACK from %s in %gs", self.broker, self.connack_timeout)
            return _Outcome.FAILED
        reason = connection.connack
        if reason is None:  # closed before any CONNACK: the broker went away, or dislikes v5
            self._unanswered += 1
            if self._settled is None and self._unanswered >= 2:
                self._unanswered = 0
                return _Outcome.SWITCH
            return _Outcome.FAILED
        self._unanswered = 0
        code = reason.value
        if code in _REFUSED_CREDENTIALS:
            self._fail(
                CredentialsRefused(
                    f"the broker at {self.broker} refused us ({reason}): check --username, "
                    f"--password and the broker's ACL for client id {self.client_id!r}"
                )
            )
            return _Outcome.FATAL
        if code in _UNSUPPORTED_PROTOCOL:
            if self.protocol == "auto" and self._settled is None:
                log.info("ingest: the broker does not speak MQTT %s", name)
                return _Outcome.SWITCH
            self._fail(IngestError(f"the broker at {self.broker} does not speak MQTT {name}"))
            return _Outcome.FATAL
        if code in _FATAL_CONNACK:
            self._fail(IngestError(f"the broker at {self.broker} refused client id: {reason}"))
            return _Outcome.FATAL
        if reason.is_failure:
            log.warning("ingest: the broker refused the connection: %s", reason)
            return _Outcome.FAILED
        self._settled = connection.protocol
        if self.shared_group and connection.protocol != mqtt.MQTTv5:
            self._fail(
                IngestError(
                    f"--shared-group needs MQTT 5 shared subscriptions; the broker at "
                    f"{self.broker} speaks MQTT 3.1.1 only"
                )
            )
            return _Outcome.FATAL
        connected_at = time.monotonic()
        while not connection.ended:  # each wait is bounded; stop() disconnects us
            connection.changed.clear()
            if connection.ended:
                break
            connection.changed.wait(1.0)
        if self.stopping.is_set():
            return _Outcome.STOPPED
        return _Outcome.LOST if time.monotonic() - connected_at >= STABLE_S else _Outcome.DROPPED

    # paho callbacks (network thread): short, and never raise

    @_guarded
    def _on_connect(
        self, client: mqtt.Client, connection: _Connection, flags: Any, reason: Any, _p: Any
    ) -> None:
        connection.connack = reason
        if not reason.is_failure:
            connection.session_present = bool(flags.session_present)
            with self._lock:
                self._live = connection
            self.metrics.connected.set(1)
            self.metrics.connections.inc()
            self._count(connections=1)
            log.info(
                "ingest: connected to %s (MQTT %s, %s session)",
                self.broker,
                _PROTOCOL_NAMES[connection.protocol],
                "resumed" if connection.session_present else "new",
            )
            if connection.protocol == mqtt.MQTTv5:
                wanted = [(f, SubscribeOptions(qos=1)) for f in self.filters]
            else:
                wanted = [(f, 1) for f in self.filters]
            client.subscribe(wanted)
        connection.changed.set()

    @_guarded
    def _on_subscribe(
        self, client: mqtt.Client, connection: _Connection, mid: int, codes: Any, _p: Any
    ) -> None:
        refused = [(f, c) for f, c in zip(self.filters, codes, strict=False) if c.is_failure]
        if refused:
            detail = "; ".join(f"{f}: {c}" for f, c in refused)
            self._fail(IngestError(f"the broker refused our subscriptions ({detail})"))
            return
        log.info("ingest: subscribed to %s", ", ".join(self.filters))
        self.ready.set()

    @_guarded
    def _on_disconnect(
        self, _c: mqtt.Client, connection: _Connection, _f: Any, reason: Any, _p: Any
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
            elif getattr(reason, "value", None) == 0x8E:
                log.warning(
                    "ingest: connection lost: session taken over; is another ingest process "
                    "using client id %r? Give each its own --client-id",
                    self.client_id,
                )
            else:
                log.warning("ingest: connection lost (%s)", reason)
        connection.changed.set()

    def _on_message(self, client: mqtt.Client, connection: _Connection, message: Any) -> None:
        if self.stopping.is_set():
            return  # not acknowledged: the broker delivers it to our next session
        try:
            sent_at = None
            properties = getattr(message, "properties", None)
            for name, value in getattr(properties, "UserProperty", None) or ():
                if name == SENT_AT:
                    sent_at = value
            item = _Message(
                message.topic,
                message.payload,
                message.mid,
                message.qos,
                connection.generation,
                sent_at,
            )
        except Exception:  # a callback must not raise: it would end paho's thread
            log.exception("ingest: unreadable message (mid %s); dropping it", message.mid)
            return
        self.metrics.messages_received.inc()
        if self._inbox.put(item, FULL_INBOX_LIMIT_S):
            self.metrics.in_flight.set(self._inbox.pending)
            return
        if not self.stopping.is_set():
            log.warning(
                "ingest: inbox full for %gs (commits stalled?): reconnecting so that the broker "
                "redelivers",
                FULL_INBOX_LIMIT_S,
            )
            client.disconnect()

    # --- committing (the committer thread)

    def _committer_main(self) -> None:
        backend = self._backend
        try:
            backend.open()
            while True:
                batch = self._collect()
                if batch is None:
                    break
                if batch:
                    self._commit(backend, batch)
        except IngestError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug: say so loudly and stop rather than hang
            log.exception("ingest: the committer failed")
            self._fail(IngestError(f"the committer failed: {exc!r}"))
        finally:
            backend.close(10)

    def _collect(self) -> list[_Message] | None:
        """Messages for one group commit: up to max_batch envelopes, or what
        arrived within max_wait of the first. [] when idle; None when closed
        and drained (or abandoned)."""
        if self._abandon.is_set():
            return None
        first = self._inbox.get(0.25)
        if first is None:
            return None if self._inbox.drained else []
        batch, count = [first], _estimate_envelopes(first.payload)
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch:
            message = self._inbox.get(max(0.0, deadline - time.monotonic()))
            if message is None:
                break
            batch.append(message)
            count += _estimate_envelopes(message.payload)
        return batch

    def _commit(self, backend: _ThreadBackend | _WorkerBackend, batch: list[_Message]) -> None:
        request = [(m.topic, m.payload, m.sent_at is None) for m in batch]
        delay, restarts = 0.05, 0
        while not self._abandon.is_set():
            try:
                result = backend.commit(request)
            except TransientError as exc:  # the database, not the input: keep the messages
                log.error("ingest: %s; retrying %d messages in %.2fs", exc, len(batch), delay)
                self._abandon.wait(delay)
                delay = min(COMMIT_RETRY_MAX_S, delay * 2)
            except WorkerDied as exc:
                if self._abandon.is_set():
                    break
                restarts += 1
                if restarts > WORKER_RESTARTS:
                    raise IngestError(f"{exc}; it died {restarts} times on one group") from None
                log.error("ingest: %s; starting a new one", exc)
                backend.restart()
            else:
                self._settle(batch, result)
                return
        self._settle(batch, None)  # abandoned at shutdown: not acknowledged, redelivered later

    def _settle(self, batch: list[_Message], result: BatchResult | None) -> None:
        """Acknowledge (if committed), publish reject notices, count, release.
        Without a result (abandoned at shutdown) nothing is acknowledged."""
        if result is None:
            self._inbox.release(batch)
            self.metrics.in_flight.set(self._inbox.pending)
            return
        with self._lock:
            live = self._live
        accepted = duplicates = 0
        rejected: dict[str, int] = {}
        now = now_micros()
        for message, items in zip(batch, result.messages, strict=True):
            refused = []
            sent_at = _sent_at(message)
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
            if live is not None and live.generation == message.generation and message.qos > 0:
                live.client.ack(message.mid, message.qos)
            if refused:
                self._notify(live, message, refused, len(items))
        self._inbox.release(batch)
        self.metrics.in_flight.set(self._inbox.pending)
        self.metrics.envelopes_received.inc(result.envelopes)
        self.metrics.accepted.inc(accepted)
        self.metrics.duplicates.inc(duplicates)
        self.metrics.batch_size.observe(result.envelopes)
        self.metrics.commit_seconds.observe(result.seconds)
        self._count(
            messages=len(batch),
            envelopes=result.envelopes,
            accepted=accepted,
            duplicates=duplicates,
            batches=1,
            rejected=rejected,
        )

    def _observe_latency(self, sent_at: int | None, time_us: int | None, now: int) -> None:
        if sent_at is not None:
            self.metrics.latency.labels(CLOCK_SENT_AT).observe(max(0, now - sent_at) / 1e6)
        elif time_us is not None:
            self.metrics.latency.labels(CLOCK_EVENT_TIME).observe(max(0, now - time_us) / 1e6)

    def _notify(
        self, live: _Connection | None, message: _Message, refused: list[ItemResult], count: int
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


# --- helpers


def default_client_id(shared_group: str | None = None) -> str:
    """A stable client id (a persistent session is found by it): one per host,
    and per group. Run several ingest processes on one host? Give each its own."""
    host = _CLIENT_ID.sub("-", socket.gethostname())[:40] or "host"
    return f"provenance-ingest-{host}" + (f"-{shared_group}" if shared_group else "")


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """paho leaves Nagle on, which holds back small PUBACKs by milliseconds."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError) as exc:  # a websocket or unix transport has no such option
        log.debug("ingest: TCP_NODELAY not set: %s", exc)


def _ledger_factory(db_path: Path, log_key: Ed25519PrivateKey) -> Callable[[], Ledger]:
    def make() -> Ledger:
        return Ledger(Store(db_path, create=False), log_key)

    return make


def _append(ledger: Ledger, items: list[Any], sources: list[str]) -> list[Appended]:
    """One `Ledger.append` for the whole group, each reject recorded under its own topic."""
    return ledger.append(items, sources=sources)


def _internal_reject(
    ledger: Ledger, topic: str, payload: bytes, count: int, exc: Exception
) -> list[Appended]:
    """Record a message whose handling raised, so that it is not redelivered forever."""
    text = f"the ingest service could not process this message ({type(exc).__name__})"
    try:
        with ledger.store.transaction():
            at = format_time(ledger.clock())
            ledger.store.insert_reject(at, INTERNAL_ERROR, text, topic, None, payload)
    except _TRANSIENT:
        log.exception("ingest: could not record the reject either")
    return [Appended("rejected", None, None, INTERNAL_ERROR, text) for _ in range(count)]


def _estimate_envelopes(payload: bytes) -> int:
    """Envelopes in a message, cheaply, for batching only (the worker decodes)."""
    return max(1, payload.count(b'"sig"')) if _is_array(payload) else 1


def _sent_at(message: _Message) -> int | None:
    """The publisher's send time (MQTT 5 user property), if it gave a valid one."""
    if message.sent_at is None:
        return None
    try:
        return parse_time(message.sent_at, SENT_AT)
    except ValidationError:
        return None


def _summary(stats: IngestStats) -> str:
    return (
        f"{stats.accepted} accepted, {stats.duplicates} duplicates, {stats.rejected_total} "
        f"rejected, {stats.messages} messages, {stats.in_flight} in flight"
    )


if __name__ == "__main__":  # the commit worker process: see _WorkerBackend
    from provenance.ingest import worker_main

    sys.exit(worker_main())
