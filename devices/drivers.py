"""Sensor drivers: pure parsing plus thin file and stream readers.

Every driver yields `Measurement`s: a sensor name, the reading's `data`
(protocol v1 `reading` measures: temperature_c, humidity_pct, lat, lon,
shock_g, door_open, battery_pct) and, when the sensor stamped it, a time.
Values are checked with the protocol's own rules (`provenance.core.envelope`), so
what a driver accepts the ledger accepts. docs/devices.md has the formats.

- `DS18B20`: 1-Wire thermometers through the Linux w1-therm sysfs files.
- `parse_csv_line` and `LineReader`: CSV loggers on a serial port or a file.
- `parse_http_reading`: LAN sensors POSTing JSON or form data.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TextIO
from urllib.parse import parse_qsl

from provenance.core.envelope import VERSION, parse_unsigned
from provenance.core.errors import ProvenanceError, ValidationError
from provenance.core.identity import did_from_public_key
from provenance.core.jcs import parse_json
from provenance.core.timefmt import parse_time

log = logging.getLogger(__name__)

MEASURES = (
    "temperature_c",
    "humidity_pct",
    "lat",
    "lon",
    "shock_g",
    "door_open",
    "battery_pct",
)


class SensorError(ProvenanceError):
    """A sensor is missing or gave a value that cannot be trusted."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One reading of one sensor. `data` holds protocol `reading` measures;
    `time_us` is the sensor's own timestamp (µs since the epoch) or None when
    the collector should stamp it."""

    sensor: str
    data: dict[str, Any]
    time_us: int | None = None


# --- shared checks ------------------------------------------------------------------------

# parse_unsigned needs a signer; this is a syntactically valid did:key that signs nothing.
_PROBE_SIGNER = did_from_public_key(bytes(32))
_EPOCH_TEXT = "1970-01-01T00:00:00Z"


def check_reading(sensor: str, data: dict[str, Any], where: str = "") -> None:
    """Raise ValidationError unless *data* (with ``sensor``) is valid `reading`
    data under protocol v1, using the protocol's own validator (no copy of the
    bounds). *where* prefixes the field in the message (e.g. ``[3].``)."""
    try:
        parse_unsigned(
            {
                "v": VERSION,
                "kind": "reading",
                "signer": _PROBE_SIGNER,
                "seq": 0,
                "time": _EPOCH_TEXT,
                "data": {**data, "sensor": sensor},
            }
        )
    except ValidationError as exc:
        field = exc.field.removeprefix("data").removeprefix(".")
        raise ValidationError(f"{where}{field}".rstrip(".") or "reading", exc.rule) from None


_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_sensor_time(text: Any, field: str = "time") -> int:
    """RFC 3339 with ``Z`` or a numeric offset → µs since the epoch (UTC).
    A time without a zone is refused: a logger's local clock is ambiguous."""
    if not isinstance(text, str) or not _ISO_TIME.fullmatch(text):
        raise ValidationError(
            field,
            f"{text!r} is not an RFC 3339 time with a zone, e.g. 2026-11-22T10:15:00Z or "
            "2026-11-22T12:15:00+02:00",
        )
    if text.endswith("Z"):
        return parse_time(text, field)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValidationError(field, f"{text!r} is not a real time: {exc}") from None
    return (moment - _EPOCH) // timedelta(microseconds=1)


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _number(text: str, field: str) -> float:
    if not _NUMBER.fullmatch(text):
        raise ValidationError(field, f"{text[:40]!r} is not a number (use a dot for decimals)")
    value = float(text)
    if not math.isfinite(value):
        raise ValidationError(field, f"{text[:40]!r} is out of range")
    return value


def _boolean(text: str, field: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "open"):
        return True
    if lowered in ("false", "0", "no", "closed"):
        return False
    raise ValidationError(field, f"{text[:40]!r} is not true/false (or 1/0)")


# --- DS18B20 over 1-Wire --------------------------------------------------------------------

W1_ROOT = Path("/sys/bus/w1/devices")
DS18B20_ID = re.compile(r"28-[0-9a-f]{12}")
POWER_ON_RESET_MILLI_C = 85_000  # what the chip reports before its first conversion
DS18B20_RANGE_MILLI_C = (-55_000, 125_000)
_W1_TEMP = re.compile(r"\bt=(-?\d+)\s*\Z")


def parse_w1_slave(text: str, sensor: str = "DS18B20") -> float:
    """°C from the two-line w1_slave format of the Linux w1-therm driver::

        72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
        72 01 4b 46 7f ff 0e 10 57 t=23125

    A failed CRC (``NO``), the 85 °C power-on value, a value outside the
    chip's −55…125 °C range or a garbled file raise SensorError.
    """
    lines = text.strip().splitlines()
    if len(lines) != 2:
        raise SensorError(
            f"{sensor}: w1_slave has {len(lines)} lines, expected 2 (CRC line, t= line)"
        )
    crc_line, value_line = (line.strip() for line in lines)
    if crc_line.endswith("NO"):
        raise SensorError(
            f"{sensor}: CRC check failed (NO): noise on the 1-Wire bus or a loose contact; "
            "the value is not trustworthy, read again"
        )
    if not crc_line.endswith("YES") or "crc=" not in crc_line:
        raise SensorError(f"{sensor}: unreadable CRC line {crc_line[:80]!r}")
    match = _W1_TEMP.search(value_line)
    if not match:
        raise SensorError(f"{sensor}: no t= value in {value_line[:80]!r}")
    milli = int(match.group(1))
    if milli == POWER_ON_RESET_MILLI_C:
        raise SensorError(
            f"{sensor}: 85 °C is the DS18B20's power-on value: it was read before it "
            "converted (power glitch or parasite power too weak)"
        )
    low, high = DS18B20_RANGE_MILLI_C
    if not low <= milli <= high:
        raise SensorError(f"{sensor}: {milli / 1000} °C is outside the DS18B20's −55…125 °C")
    return milli / 1000


class DS18B20:
    """One DS18B20 thermometer at ``{root}/{sensor_id}/w1_slave``."""

    def __init__(self, sensor_id: str, root: str | Path = W1_ROOT):
        if not isinstance(sensor_id, str) or not DS18B20_ID.fullmatch(sensor_id):
            raise ValidationError(
                "sensor_id", f"{sensor_id!r} is not a DS18B20 id (28- and 12 lowercase hex)"
            )
        self.sensor_id = sensor_id
        self.root = Path(root)

    @property
    def path(self) -> Path:
        return self.root / self.sensor_id / "w1_slave"

    def read(self) -> Measurement:
        """One reading (blocks ~750 ms on real hardware while the chip converts)."""
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise SensorError(
                f"{self.sensor_id}: {self.path} not found: the sensor is unplugged, or the "
                "w1-gpio and w1-therm kernel modules are not loaded"
            ) from None
        except UnicodeDecodeError:
            raise SensorError(f"{self.sensor_id}: {self.path} is not text") from None
        except OSError as exc:  # the kernel answers EIO when the bus read fails
            raise SensorError(f"{self.sensor_id}: reading {self.path} failed: {exc}") from None
        return Measurement(self.sensor_id, {"temperature_c": parse_w1_slave(text, self.sensor_id)})

    def __repr__(self) -> str:
        return f"<DS18B20 {self.sensor_id} at {self.root}>"


def discover(root: str | Path = W1_ROOT) -> list[DS18B20]:
    """Every DS18B20 under *root* (sorted by id); empty when there is no 1-Wire bus."""
    base = Path(root)
    if not base.is_dir():
        log.info("no 1-Wire bus at %s (w1-gpio not loaded?)", base)
        return []
    return [
        DS18B20(entry.name, base)
        for entry in sorted(base.iterdir(), key=lambda item: item.name)
        if DS18B20_ID.fullmatch(entry.name)
    ]


# --- CSV / serial loggers -------------------------------------------------------------------

CSV_COLUMNS = ("temperature_c", "humidity_pct", "battery_pct")
CSV_HEADER_FIRST = ("sensor_id", "sensor", "time")
MAX_LINE_CHARS = 1024
_LEADING_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T")


def parse_csv_line(line: str | bytes) -> Measurement:
    """``[time,]sensor_id,temperature_c[,humidity_pct[,battery_pct]]``

    - *time* (optional first column): RFC 3339 with ``Z`` or an offset;
    - *sensor_id*: letters, digits and ``. _ : -``, at most 64;
    - numbers with a dot for decimals; humidity and battery may be empty.

    Raises ValidationError naming the column.
    """
    if isinstance(line, (bytes, bytearray)):
        try:
            line = bytes(line).decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("line", "is not UTF-8") from None
    text = line.strip()
    if not text:
        raise ValidationError("line", "is empty")
    if len(text) > MAX_LINE_CHARS:
        raise ValidationError("line", f"longer than {MAX_LINE_CHARS} characters")
    fields = [field.strip() for field in text.split(",")]
    time_us = None
    if _LEADING_TIME.match(fields[0]):
        time_us = parse_sensor_time(fields[0], "time")
        fields = fields[1:]
    if not 2 <= len(fields) <= 1 + len(CSV_COLUMNS):
        expected = "sensor_id,temperature_c[,humidity_pct[,battery_pct]]"
        raise ValidationError(
            "line", f"has {len(fields)} columns after the optional time; expected {expected}"
        )
    sensor, values = fields[0], fields[1:]
    if not sensor:
        raise ValidationError("sensor_id", "is empty")
    if not values[0]:
        raise ValidationError("temperature_c", "is empty (it is the one required value)")
    data = {
        name: _number(value, name)
        for name, value in zip(CSV_COLUMNS, values, strict=False)
        if value
    }
    check_reading(sensor, data)
    return Measurement(sensor, data, time_us)


Parser = Callable[[str], Measurement]


class LineReader:
    """Lines from a file-like object (a CSV file, or a serial port opened with
    a read timeout) parsed into Measurements. Bad lines are logged, counted in
    `bad` and skipped; `good` counts the rest. Blank lines, ``#`` comments and
    a header line are skipped silently.

    *follow*: keep reading after an empty read (a serial port's timeout, a
    growing file) instead of treating it as the end.
    """

    POLL_IDLE_S = 0.2  # pause after an empty read in follow mode (bounded by stop)
    MAX_DISCARD_CHUNKS = 1024  # an over-long line is skipped at most this far

    def __init__(
        self,
        stream: BinaryIO | TextIO,
        *,
        parse: Parser = parse_csv_line,
        name: str = "lines",
        max_line_chars: int = MAX_LINE_CHARS,
        follow: bool = False,
    ):
        self.stream = stream
        self.parse = parse
        self.name = name
        self.max_line_chars = max_line_chars
        self.follow = follow
        self.good = 0
        self.bad = 0
        self.last_error: str | None = None
        self.at_end = False
        self._partial = ""

    def poll(self, max_lines: int = 100) -> list[Measurement]:
        """Read at most *max_lines* lines; returns early at an empty read."""
        out: list[Measurement] = []
        for _ in range(max_lines):
            raw = self.stream.readline(self.max_line_chars + 1)
            if not raw:
                self.at_end = True
                if self._partial and not self.follow:  # last line without a newline
                    line, self._partial = self._partial, ""
                    self._handle(line, out)
                break
            self.at_end = False
            text = self._decode(raw)
            if text is None:
                continue
            if not text.endswith("\n"):
                if len(self._partial) + len(text) > self.max_line_chars:
                    self._too_long(text)
                    continue
                self._partial += text  # a read timeout cut the line; the rest comes next
                continue
            line, self._partial = self._partial + text, ""
            if len(line) > self.max_line_chars + 2:
                self._reject(line, f"longer than {self.max_line_chars} characters")
                continue
            self._handle(line, out)
        return out

    def run(
        self,
        sink: Callable[[Measurement], None],
        stop: threading.Event,
        *,
        max_lines: int | None = None,
    ) -> int:
        """Give each measurement to *sink* until *stop* is set, the input ends
        (unless *follow*) or *max_lines* lines were read. Returns how many
        measurements went to the sink."""
        sent = 0
        read_budget = max_lines
        while not stop.is_set() and (read_budget is None or read_budget > 0):
            chunk = 100 if read_budget is None else min(100, read_budget)
            before = self.good + self.bad
            batch = self.poll(chunk)
            if read_budget is not None:
                read_budget -= max(1, self.good + self.bad - before)
            for measurement in batch:
                sink(measurement)
                sent += 1
            if self.at_end and not batch:
                if not self.follow:
                    break
                stop.wait(self.POLL_IDLE_S)
        return sent

    def _decode(self, raw: str | bytes) -> str | None:
        if isinstance(raw, str):
            return raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self._reject(repr(raw[:60]), "not UTF-8 (wrong baud rate?)")
            if not raw.endswith(b"\n"):
                self._skip_rest_of_line()
            return None

    def _too_long(self, text: str) -> None:
        self._partial = ""
        self._reject(text[:60], f"longer than {self.max_line_chars} characters")
        self._skip_rest_of_line()

    def _skip_rest_of_line(self) -> None:
        for _ in range(self.MAX_DISCARD_CHUNKS):
            rest = self.stream.readline(self.max_line_chars + 1)
            if not rest or rest.endswith(b"\n" if isinstance(rest, bytes) else "\n"):
                return

    def _handle(self, line: str, out: list[Measurement]) -> None:
        text = line.strip()
        if not text or text.startswith("#"):
            return
        if text.split(",", 1)[0].strip().lower() in CSV_HEADER_FIRST:
            return
        try:
            out.append(self.parse(text))
        except (ValidationError, SensorError) as exc:
            self._reject(text, str(exc))
            return
        self.good += 1

    def _reject(self, text: str, reason: str) -> None:
        self.bad += 1
        self.last_error = reason
        log.warning("%s: line skipped (%s): %r", self.name, reason, text[:120])


# --- HTTP POST from LAN sensors -------------------------------------------------------------

MAX_HTTP_BODY = 64 * 1024
MAX_HTTP_READINGS = 500
HTTP_FIELDS = frozenset({"sensor", "time", *MEASURES})
JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded",)


def parse_http_reading(body: bytes, content_type: str | None) -> list[Measurement]:
    """Readings POSTed by a LAN sensor.

    JSON (``application/json``): one object or an array of up to 500, each
    ``{"sensor": "fridge-2", "temperature_c": 4.1, "humidity_pct": 61,
    "time": "2026-11-22T10:15:00Z"}`` — numbers as JSON numbers, ``door_open``
    as true/false, ``time`` optional. Form (``application/x-www-form-urlencoded``):
    one reading, the same field names, values as text. Unknown fields, wrong
    types and out-of-range values raise ValidationError naming the field
    (``[2].temperature_c: …`` for the third item of an array).
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not isinstance(body, (bytes, bytearray)):
        raise ValidationError("body", "must be bytes")
    if len(body) > MAX_HTTP_BODY:
        raise ValidationError("body", f"{len(body)} bytes is more than {MAX_HTTP_BODY}")
    if media in JSON_TYPES:
        value = parse_json(bytes(body))
        if isinstance(value, list):
            if not 1 <= len(value) <= MAX_HTTP_READINGS:
                raise ValidationError(
                    "body", f"must hold 1 to {MAX_HTTP_READINGS} readings, got {len(value)}"
                )
            return [_from_json(item, f"[{index}].") for index, item in enumerate(value)]
        return [_from_json(value, "")]
    if media in FORM_TYPES:
        return [_from_form(bytes(body))]
    raise ValidationError(
        "content-type",
        f"{media or 'missing'}: send application/json or application/x-www-form-urlencoded",
    )


def _check_names(names: list[str], where: str) -> None:
    for name in names:
        if name not in HTTP_FIELDS:
            raise ValidationError(
                f"{where}{name}",
                f"is not a known field (allowed: {', '.join(sorted(HTTP_FIELDS))})",
            )


def _from_json(item: Any, where: str) -> Measurement:
    if not isinstance(item, dict):
        raise ValidationError(where.rstrip(".") or "body", "a reading must be a JSON object")
    _check_names(list(item), where)
    sensor = item.get("sensor")
    if not isinstance(sensor, str):
        raise ValidationError(f"{where}sensor", "is required: the sensor's name (a string)")
    time_us = parse_sensor_time(item["time"], f"{where}time") if "time" in item else None
    data = {name: value for name, value in item.items() if name in MEASURES}
    check_reading(sensor, data, where)
    return Measurement(sensor, data, time_us)


def _from_form(body: bytes) -> Measurement:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=len(HTTP_FIELDS),
        )
    except UnicodeDecodeError:
        raise ValidationError("body", "form data is not UTF-8") from None
    except ValueError as exc:
        raise ValidationError("body", f"malformed form data: {exc}") from None
    names = [name for name, _ in pairs]
    _check_names(names, "")
    if len(set(names)) != len(names):
        raise ValidationError("body", "a field appears twice")
    fields = dict(pairs)
    sensor = fields.get("sensor")
    if not sensor:
        raise ValidationError("sensor", "is required: the sensor's name")
    time_us = parse_sensor_time(fields["time"], "time") if fields.get("time") else None
    data: dict[str, Any] = {}
    for name in MEASURES:
        value = fields.get(name, "")
        if value == "":
            continue
        data[name] = _boolean(value, name) if name == "door_open" else _number(value, name)
    check_reading(sensor, data)
    return Measurement(sensor, data, time_us)
