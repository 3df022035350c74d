"""Where the gateway's envelopes come from: one `Source` per configured input
(DS18B20 probes, a logger's lines, LAN sensors over HTTP, a dock's barcode
scanner and form). Each hands what it reads to `gateway.intake.Intake`, which
signs or checks it and puts it in the outbox.

Every source runs in its own thread through ``run(stop)`` and returns soon
after *stop* is set; a bad line, request or sensor is logged and skipped,
never fatal.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devices import drivers
from devices.drivers import Measurement
from devices.outbox import OutboxFull
from provenance.core.envelope import Envelope
from provenance.core.errors import ProvenanceError, ValidationError, VerificationError

from .config import CsvConfig, DockConfig, DS18B20Config, HttpConfig
from .intake import Intake, check_envelope, looks_signed, split_envelopes
from .linestream import POLL_S, LineStream
from .localserver import LocalServer

log = logging.getLogger(__name__)

MAX_LINE = 65_536
MAX_LINES_PER_PUT = 500


# --- the source protocol -------------------------------------------------------------------


class Source:
    """Base of all sources: `run(stop)` blocks until *stop* is set (or the input
    ends for good) and must return within about `POLL_S` after that."""

    name = "source"

    def run(self, stop: threading.Event) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the constructor took (sockets); called once after run."""


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
