"""Where the gateway's envelopes come from, and how they reach the outbox.

A source yields either unsigned `Measurement`s from keyless sensors or
envelopes already signed at the source. `Intake` turns both into outbox
entries:

- a signed envelope is checked (`Envelope.from_json`, then its signature) and
  queued as its canonical bytes, never re-signed or altered: the signature
  stays end to end;
- a measurement becomes a ``reading`` signed with the gateway's own device key,
  ``data.sensor`` naming the probe, ``seq`` from a persistent counter that is
  never reused across restarts.

Every source runs in its own thread through ``run(stop)`` and returns soon
after *stop* is set; a bad line, request or sensor is logged and skipped,
never fatal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import select
import stat
import termios
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devices import drivers
from devices.drivers import Measurement
from devices.outbox import Outbox, OutboxFull
from provenance.core.envelope import Envelope
from provenance.core.errors import ProvenanceError, ValidationError, VerificationError
from provenance.core.jcs import parse_json, split_items
from provenance.core.signing import did_of, sign
from provenance.core.timefmt import format_time, now_micros

from .config import CsvConfig, DockConfig, DS18B20Config, HttpConfig

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often a blocked source looks at its stop event
READ_CHUNK = 65_536
MAX_LINE = 65_536
MAX_LINES_PER_PUT = 500
HTTP_TIMEOUT_S = 10.0  # a slow client cannot hold a request thread longer
HTTP_MAX_CONCURRENT = 16
HTTP_BUSY_WAIT_S = 1.0  # when all request threads are busy, a new connection waits this long


# --- signing and queueing ------------------------------------------------------------------


class GatewaySigner:
    """A private key with its persistent seq counter (`devices.sdk.SeqCounter`): how the
    gateway signs, as itself and as its site, with no ledger in reach."""

    def __init__(self, key: Ed25519PrivateKey, counter: Any):
        self.key = key
        self.did = did_of(key)
        self.counter = counter

    def sign(
        self, kind: str, data: dict[str, Any], time_us: int, batches: Sequence[str] | None = None
    ) -> Envelope:
        """Validate and sign; ValidationError (naming the field) for what the
        protocol refuses. A seq is taken only once the time is known to be good."""
        try:
            time = format_time(time_us)
        except (OverflowError, OSError, ValueError):
            raise ValidationError(
                "time", f"{time_us} µs is not a time the protocol can carry"
            ) from None
        return sign(
            self.key,
            kind=kind,
            seq=self.counter.next(),
            time=time,
            data=data,
            batches=list(batches) if batches is not None else None,
        )


@dataclass
class Counters:
    """What the sources did since start (for the status line and tests)."""

    signed: int = 0
    passed_through: int = 0
    refused: int = 0
    by_source: dict[str, int] = field(default_factory=dict)

    def count(self, source: str, n: int) -> None:
        self.by_source[source] = self.by_source.get(source, 0) + n


class Intake:
    """Signs or checks what the sources produce and puts it in the outbox.

    Thread-safe. One lock covers seq allocation and the outbox put, so for
    every signer the outbox order is the seq order."""

    def __init__(
        self,
        outbox: Outbox,
        topic: str,
        gateway: GatewaySigner,
        *,
        clock: Callable[[], int] = now_micros,
    ):
        self.outbox = outbox
        self.topic = topic
        self.gateway = gateway
        self.clock = clock
        self.counters = Counters()
        self._lock = threading.Lock()

    def readings(self, measurements: Sequence[Any], source: str = "") -> list[Envelope]:
        """Sign each Measurement as a reading of the gateway's key; all or nothing.

        Raises ValidationError (naming the item) if one cannot be signed."""
        with self._lock:
            envelopes = []
            for index, measurement in enumerate(measurements):
                data = {**measurement.data, "sensor": measurement.sensor}
                when = measurement.time_us if measurement.time_us is not None else self.clock()
                try:
                    envelopes.append(self.gateway.sign("reading", data, when))
                except ValidationError as exc:
                    self.counters.refused += 1
                    many = len(measurements) > 1
                    raise ValidationError(
                        _item_field(index if many else None, exc.field), exc.rule
                    ) from None
            self._put(envelopes)
            self.counters.signed += len(envelopes)
            self.counters.count(source, len(envelopes))
        return envelopes

    def signed(
        self, signer: GatewaySigner, kind: str, batches: Sequence[str], data: dict[str, Any]
    ) -> Envelope:
        """Sign one event now as *signer* (the site party, for dock events) and queue it."""
        with self._lock:
            envelope = signer.sign(kind, data, self.clock(), batches)
            self._put([envelope])
            self.counters.signed += 1
        return envelope

    def envelopes(self, items: Sequence[Any], source: str = "") -> list[Envelope]:
        """Check envelopes signed at the source and queue them as they are; all or
        nothing. Raises ValidationError or SignatureError naming the item."""
        many = len(items) > 1
        checked = [
            check_envelope(item, index if many else None) for index, item in enumerate(items)
        ]
        return self.forward(checked, source)

    def forward(self, envelopes: Sequence[Envelope], source: str = "") -> list[Envelope]:
        """Queue envelopes that `check_envelope` already accepted, unchanged."""
        with self._lock:
            self._put(envelopes)
            self.counters.passed_through += len(envelopes)
            self.counters.count(source, len(envelopes))
        return list(envelopes)

    def _put(self, envelopes: Sequence[Envelope]) -> None:
        self.outbox.put_many([(self.topic, envelope.canonical_bytes()) for envelope in envelopes])


def check_envelope(item: Any, index: int | None = None) -> Envelope:
    """Parse strictly and verify the signature of an envelope signed at the source.
    With *index*, errors name the item: ``[3].data.temperature_c``."""
    try:
        envelope = Envelope.from_json(item)
    except ValidationError as exc:
        raise ValidationError(_item_field(index, exc.field), exc.rule) from None
    try:
        envelope.verify_signature()
    except VerificationError as exc:
        where = "" if index is None else f"[{index}]: "
        raise VerificationError(f"{where}{exc}") from None
    return envelope


def _item_field(index: int | None, field: str) -> str:
    if index is None:
        return field
    return f"[{index}].{field}" if field else f"[{index}]"


def split_envelopes(body: bytes) -> list[Any]:
    """A JSON envelope, a JSON array of them, or JSON lines → list of items.

    A single object comes back as its raw bytes, so `Envelope.from_json`
    applies its size limit to exactly what was sent."""
    return split_items(body)


def looks_signed(body: bytes) -> bool:
    """Whether a JSON body holds a signed envelope (or an array starting with one)."""
    try:
        value = parse_json(body)
    except ValidationError:
        return False  # the readings parser reports what is wrong with it
    if isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, dict) and "sig" in value and "signer" in value


# --- the source protocol -------------------------------------------------------------------


class Source:
    """Base of all sources: `run(stop)` blocks until *stop* is set (or the input
    ends for good) and must return within about `POLL_S` after that."""

    name = "source"

    def run(self, stop: threading.Event) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the constructor took (sockets); called once after run."""


# --- a small local HTTP server, shared by the HTTP source and the dock form ----------------

App = Callable[[str, str, bytes, Mapping[str, str]], tuple[HTTPStatus, str, bytes]]


class LocalServer:
    """A stdlib HTTP server for one `App`, bound at construction (so a busy port
    fails at start, and port 0 picks a free one). Bounded: at most
    `HTTP_MAX_CONCURRENT` requests at once, `HTTP_TIMEOUT_S` per request, bodies
    up to *max_body* bytes with a Content-Length."""

    def __init__(self, host: str, port: int, app: App, *, name: str, max_body: int):
        self.name = name
        self.app = app
        self.max_body = max_body
        self._slots = threading.BoundedSemaphore(HTTP_MAX_CONCURRENT)
        try:
            self.server = _Server((host, port), _handler_class(self))
        except OSError as exc:
            raise ProvenanceError(f"{name}: cannot listen on {host}:{port} ({exc})") from None
        self.server.slots = self._slots
        self.server.timeout = POLL_S
        address = self.server.server_address
        self.host, self.port = str(address[0]), int(address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self, stop: threading.Event) -> None:
        log.info("%s: listening on %s", self.name, self.url)
        while not stop.is_set():
            self.server.handle_request()  # returns after POLL_S without a request

    def close(self) -> None:
        self.server.server_close()  # joins request threads (each bounded by HTTP_TIMEOUT_S)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True
    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(timeout=HTTP_BUSY_WAIT_S):
            log.warning("too many concurrent requests; dropping one from %s", client_address)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def _handler_class(owner: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = HTTP_TIMEOUT_S
        server_version = "provenance-gateway"
        sys_version = ""

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            body = b""
            if method == "POST":
                length = self.headers.get("Content-Length")
                if length is None or not length.isdigit():
                    self._send(HTTPStatus.LENGTH_REQUIRED, _json_error("send a Content-Length"))
                    return
                if int(length) > owner.max_body:
                    self._send(
                        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        _json_error(f"body larger than {owner.max_body} bytes"),
                    )
                    self.close_connection = True
                    return
                try:
                    body = self.rfile.read(int(length))
                except (OSError, TimeoutError):
                    self.close_connection = True
                    return
            try:
                status, content_type, payload = owner.app(
                    method, self.path, body, {k.lower(): v for k, v in self.headers.items()}
                )
            except Exception:
                log.exception("%s: request %s %s failed", owner.name, method, self.path)
                status, content_type, payload = (
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    "application/json",
                    json.dumps({"error": "internal error; see the gateway log"}).encode(),
                )
            self._send(status, payload, content_type)

        def _send(
            self, status: HTTPStatus, payload: bytes, content_type: str = "application/json"
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s: %s " + format, owner.name, self.address_string(), *args)

    return Handler


def _json_error(message: str, **extra: Any) -> bytes:
    return json.dumps({"error": message, **extra}, ensure_ascii=False).encode()


# --- line input: files, FIFOs, serial ports, stdin ------------------------------------------


class LineStream:
    """A ``readline``-able byte stream over a regular file, a FIFO, a serial
    device (raw 8N1 at *baud*) or stdin (``-``) that never blocks longer than
    `POLL_S`: like a serial port opened with a read timeout, it returns ``b""``
    when no complete line is there yet. It hands out only complete lines (the
    last, unterminated line of an input that ended gets a newline added), so
    `consumed` is always a line boundary.

    Regular files are followed as they grow (with *follow*), and with an
    *offset_file* the position survives restarts: after `commit()` a restarted
    gateway resumes there instead of sending the file again. A replaced or
    truncated file is read from its start."""

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        follow: bool = True,
        baud: int | None = None,
        offset_file: Path | None = None,
    ):
        self.path = path
        self.name = name
        self.follow = follow
        self.offset_file = offset_file
        self.regular = False
        self.ended = False  # the input is finished for good (EOF of stdin, a file without follow)
        self.consumed = 0  # bytes of whole lines handed out, from the start of the file
        self._buffer = b""
        self._identity: tuple[int, int] | None = None
        self.fd = self._open(baud)

    def _open(self, baud: int | None) -> int:
        if str(self.path) == "-":
            return os.dup(0)
        st = os.stat(self.path)
        if stat.S_ISFIFO(st.st_mode):
            # Read-write: we count as a writer, so the FIFO never reports EOF when
            # the real writer goes away and select() waits instead of spinning.
            return os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        if stat.S_ISREG(st.st_mode):
            self.regular = True
            self._identity = (st.st_dev, st.st_ino)
            self.consumed = self._saved_offset(st)
            os.lseek(fd, self.consumed, os.SEEK_SET)
        elif stat.S_ISCHR(st.st_mode) and baud:
            _serial_raw(fd, baud)
        return fd

    def _saved_offset(self, st: os.stat_result) -> int:
        if self.offset_file is None or not self.offset_file.exists():
            return 0
        try:
            device, inode, offset = (int(x) for x in self.offset_file.read_text().split())
        except (OSError, ValueError):
            log.warning("%s: unreadable %s; reading from the start", self.name, self.offset_file)
            return 0
        if (device, inode) != (st.st_dev, st.st_ino) or offset > st.st_size:
            log.info(
                "%s: %s was replaced or truncated; reading from the start", self.name, self.path
            )
            return 0
        if offset:
            log.info("%s: resuming %s at byte %d", self.name, self.path, offset)
        return offset

    def commit(self) -> None:
        """Record that every line handed out so far is safely queued."""
        if not (self.regular and self.offset_file and self._identity):
            return
        device, inode = self._identity
        temporary = self.offset_file.with_name(self.offset_file.name + ".tmp")
        temporary.write_text(f"{device} {inode} {self.consumed}\n")
        os.replace(temporary, self.offset_file)

    def readline(self, limit: int = -1) -> bytes:
        """One complete line, or ``b""`` if none arrived within `POLL_S`. A line
        longer than *limit* comes out in pieces of *limit* bytes."""
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0 and 0 < limit <= len(self._buffer):
                cut = limit - 1
            if cut >= 0:
                line, self._buffer = self._buffer[: cut + 1], self._buffer[cut + 1 :]
                self.consumed += len(line)
                return line
            if self.ended:
                return self._rest()
            if not self._fill():
                return b""

    def _rest(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        self.consumed += len(rest)
        return rest + b"\n" if rest else b""

    def _fill(self) -> bool:
        """Read what is there (waiting at most POLL_S); False if nothing came."""
        if not self.regular:
            ready, _, _ = select.select([self.fd], [], [], POLL_S)
            if not ready:
                return False
        try:
            chunk = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return False
        if chunk:
            self._buffer += chunk
            return True
        if self.regular and self.follow:
            self._check_replaced()
            return False
        self.ended = True  # stdin or a device closed, or a whole file read without follow
        return True

    def _check_replaced(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        position = self.consumed + len(self._buffer)
        if self._identity != (st.st_dev, st.st_ino) or st.st_size < position:
            log.info(
                "%s: %s was rotated or truncated; reading it from the start", self.name, self.path
            )
            os.close(self.fd)
            self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self._identity = (st.st_dev, st.st_ino)
            self._buffer = b""
            self.consumed = 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _serial_raw(fd: int, baud: int) -> None:
    """Raw 8N1 at *baud*: no echo, no line editing, no CR/LF translation."""
    speed = getattr(termios, f"B{baud}")
    attrs = termios.tcgetattr(fd)
    attrs[0] = termios.IGNPAR  # iflag
    attrs[1] = 0  # oflag
    attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL  # cflag
    attrs[3] = 0  # lflag
    attrs[4] = attrs[5] = speed
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _offset_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"offset-{name}"


# --- the sources ------------------------------------------------------------------------------


class DS18B20Source(Source):
    """Every `interval_s`, reads every DS18B20 under the sysfs root (found anew
    each round, so a probe plugged in later is picked up) and signs one reading
    per probe. A failing probe is logged when it fails and when it recovers."""

    def __init__(self, config: DS18B20Config, intake: Intake):
        self.config = config
        self.name = config.name
        self.intake = intake
        self._failing: dict[str, str] = {}
        self._warned_missing = False

    def run(self, stop: threading.Event) -> None:
        due = time.monotonic()
        while not stop.is_set():
            self.poll()
            due = max(due + self.config.interval_s, time.monotonic())
            if stop.wait(due - time.monotonic()):
                return

    def poll(self) -> list[Envelope]:
        """One round: read every probe, sign and queue the readings."""
        config = self.config
        found = drivers.discover(config.root)
        if not self._warned_missing:
            self._warned_missing = True
            missing = set(config.sensors) - {sensor.sensor_id for sensor in found}
            for sensor_id in sorted(missing):
                log.warning("%s: configured probe %s is not on the bus", self.name, sensor_id)
        measurements = []
        for sensor in found:
            probe = config.sensors.get(sensor.sensor_id)
            if probe is None and config.only_named:
                continue
            try:
                measurement = sensor.read()
            except (drivers.SensorError, ValidationError) as exc:
                if self._failing.get(sensor.sensor_id) != str(exc):
                    log.warning("%s: %s", self.name, exc)
                self._failing[sensor.sensor_id] = str(exc)
                continue
            if self._failing.pop(sensor.sensor_id, None) is not None:
                log.info("%s: %s reads again", self.name, sensor.sensor_id)
            measurements.append(
                Measurement(probe or sensor.sensor_id, measurement.data, self.intake.clock())
            )
        if not measurements:
            return []
        return self.intake.readings(measurements, self.name)


class LineSource(Source):
    """A data logger's lines (`csv` format: ``devices.drivers.parse_csv_line``;
    `envelopes`: JSON lines signed at the source; `auto`: ``{`` starts an
    envelope) from a file, FIFO, serial port or stdin. Bad lines are logged and
    skipped. Lines that are read together are queued together."""

    def __init__(self, config: CsvConfig, intake: Intake, state_dir: Path):
        self.config = config
        self.name = config.name
        self.intake = intake
        self.offset_file = _offset_file(state_dir, config.name)
        self.reader: drivers.LineReader | None = None

    def _parse(self, text: str) -> Any:
        fmt = self.config.format
        if fmt == "envelopes" or (fmt == "auto" and text.lstrip().startswith("{")):
            try:
                return check_envelope(text)
            except VerificationError as exc:  # the line reader skips ValidationErrors
                raise ValidationError("sig", str(exc)) from None
        return drivers.parse_csv_line(text)

    def run(self, stop: threading.Event) -> None:
        config = self.config
        stream = LineStream(
            config.path,
            name=self.name,
            follow=config.follow,
            baud=config.baud,
            offset_file=self.offset_file,
        )
        limit = drivers.MAX_LINE_CHARS if config.format == "csv" else MAX_LINE
        self.reader = drivers.LineReader(
            stream, parse=self._parse, name=self.name, max_line_chars=limit, follow=True
        )
        try:
            while not stop.is_set():
                batch = self.reader.poll(MAX_LINES_PER_PUT)
                if batch:
                    self._queue(batch)
                    stream.commit()
                elif stream.ended:
                    stream.commit()
                    log.info("%s: %s ended", self.name, config.path)
                    return
                elif stream.regular:
                    stop.wait(POLL_S)  # a followed file: look again shortly
        finally:
            stream.close()

    def _queue(self, batch: list[Any]) -> None:
        """Queue runs of readings and envelopes in their order; a run that is
        refused as a whole is retried item by item so one bad line costs one."""
        run: list[Any] = []
        for item in [*batch, None]:
            if run and (item is None or isinstance(item, Envelope) != isinstance(run[0], Envelope)):
                self._queue_run(run)
                run = []
            if item is not None:
                run.append(item)

    def _queue_run(self, run: list[Any]) -> None:
        submit = self.intake.forward if isinstance(run[0], Envelope) else self.intake.readings
        try:
            submit(run, self.name)
            return
        except OutboxFull:
            raise  # back off and read these lines again later; never drop them
        except (ProvenanceError, ValueError):
            pass
        for item in run:
            try:
                submit([item], self.name)
            except OutboxFull:
                raise
            except (ProvenanceError, ValueError) as exc:
                log.warning("%s: line refused: %s", self.name, exc)


class HttpSource(Source):
    """LAN sensors POST here (see docs/gateway.md):

    - ``POST /readings``: JSON (one object or an array) or form data, parsed by
      ``devices.drivers.parse_http_reading``; signed with the gateway's key.
      A body that holds signed envelopes is passed through as ``/envelopes``.
    - ``POST /envelopes``: envelopes signed at the source — one object, an array
      or JSON lines — checked and queued unchanged.
    - ``GET /health``: ``{"ok": true, "queued": N}``.

    All or nothing per request: ``202 {"queued": n, "events": [ids]}`` once the
    envelopes are on disk, or ``400 {"error": …, "field": …}`` with nothing queued."""

    def __init__(self, config: HttpConfig, intake: Intake):
        self.config = config
        self.name = config.name
        self.intake = intake
        self.server = LocalServer(
            config.host, config.port, self.app, name=config.name, max_body=config.max_body
        )

    @property
    def url(self) -> str:
        return self.server.url

    def run(self, stop: threading.Event) -> None:
        self.server.run(stop)

    def close(self) -> None:
        self.server.close()

    def app(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[HTTPStatus, str, bytes]:
        route = urlsplit(path).path
        if self.config.token is not None:
            given = headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {self.config.token}".encode()):
                return _reply(HTTPStatus.UNAUTHORIZED, error="send Authorization: Bearer TOKEN")
        if route == "/health":
            return _reply(HTTPStatus.OK, ok=True, queued=len(self.intake.outbox))
        if route not in ("/readings", "/envelopes"):
            return _reply(HTTPStatus.NOT_FOUND, error="POST /readings or /envelopes")
        if method != "POST":
            return _reply(HTTPStatus.METHOD_NOT_ALLOWED, error="use POST")
        content_type = headers.get("content-type", "")
        signed = route == "/envelopes" or (
            content_type.split(";")[0].strip().lower() == "application/json" and looks_signed(body)
        )
        try:
            if signed:
                if not self.config.accept_envelopes:
                    return _reply(
                        HTTPStatus.FORBIDDEN, error="this gateway does not accept envelopes"
                    )
                envelopes = self.intake.envelopes(split_envelopes(body), self.name)
            else:
                measurements = drivers.parse_http_reading(body, content_type)
                envelopes = self.intake.readings(measurements, self.name)
        except ValidationError as exc:
            return _reply(HTTPStatus.BAD_REQUEST, error=str(exc), field=exc.field)
        except VerificationError as exc:
            return _reply(HTTPStatus.BAD_REQUEST, error=str(exc), reason="bad-signature")
        except OutboxFull as exc:
            log.error("%s: %s", self.name, exc)
            return _reply(HTTPStatus.SERVICE_UNAVAILABLE, error=str(exc))
        return _reply(
            HTTPStatus.ACCEPTED,
            queued=len(envelopes),
            events=[envelope.event_id for envelope in envelopes],
        )


def _reply(status: HTTPStatus, **body: Any) -> tuple[HTTPStatus, str, bytes]:
    return status, "application/json", json.dumps(body, ensure_ascii=False).encode()


class DockScannerSource(Source):
    """A barcode scanner (serial, FIFO, file or stdin): one scan per line into a
    `gateway.dock.DockSession`. A file's read position is kept, so a restart
    never signs the same scans twice."""

    def __init__(self, config: DockConfig, session: Any, state_dir: Path):
        self.config = config
        self.name = config.name
        self.session = session
        self.offset_file = _offset_file(state_dir, config.name)
        self.results: list[Any] = []  # the last few results, newest last (for people and tests)

    def run(self, stop: threading.Event) -> None:
        assert self.config.input is not None
        stream = LineStream(
            self.config.input,
            name=self.name,
            follow=True,
            baud=self.config.baud,
            offset_file=self.offset_file,
        )
        try:
            while not stop.is_set():
                raw = stream.readline(MAX_LINE)
                if raw:
                    self.handle(raw.decode("utf-8", "replace").rstrip("\r\n"))
                    stream.commit()
                elif stream.ended:
                    return
                elif stream.regular:
                    stop.wait(POLL_S)
        finally:
            stream.close()

    def handle(self, line: str) -> Any:
        result = self.session.handle(line)
        self.results = [*self.results[-19:], result]
        return result


class DockFormSource(Source):
    """The dock's local HTML form (`gateway.dock.DockForm`) on its own port."""

    def __init__(self, config: DockConfig, form: Any):
        self.config = config
        self.name = f"{config.name}-form"
        self.form = form
        assert config.form_port is not None
        self.server = LocalServer(
            config.form_host, config.form_port, form.handle_request, name=self.name, max_body=65_536
        )

    @property
    def url(self) -> str:
        return self.server.url

    def run(self, stop: threading.Event) -> None:
        self.server.run(stop)

    def close(self) -> None:
        self.server.close()
