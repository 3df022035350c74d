"""devices.sdk (sequence numbers, signing logger, keygen) and devices.drivers
(DS18B20 over a fake sysfs tree, CSV/serial lines, HTTP bodies)."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.children import read_lines
from support.paths import ROOT

from devices.drivers import (
    DS18B20,
    LineReader,
    Measurement,
    SensorError,
    check_reading,
    discover,
    parse_csv_line,
    parse_http_reading,
    parse_sensor_time,
    parse_w1_slave,
)
from devices.outbox import Outbox
from devices.sdk import DeviceLogger, SeqCounter, SeqStateError, keygen, load_key, main
from provenance.core.envelope import Envelope
from provenance.core.errors import KeyFileError, ValidationError
from provenance.core.signing import did_of
from provenance.core.timefmt import format_time, parse_time

URI = "https://id.gs1.org/01/09506000134352/10/LOT42"
T0 = parse_time("2026-11-22T10:15:00Z")


# --- SeqCounter ----------------------------------------------------------------------------


def test_seq_counter_reserves_blocks_and_never_repeats(tmp_path):
    path = tmp_path / "state" / "seq"
    with SeqCounter(path, block=10) as counter:
        assert [counter.next() for _ in range(3)] == [0, 1, 2]
        assert path.read_text() == "10\n" and counter.reserved_until == 10
        assert list(counter.take(12)) == list(range(3, 15))  # beyond the block: reserves more
        assert int(path.read_text()) >= 15
        assert counter.peek() == 15
    with SeqCounter(path, block=10) as counter:  # restart: continue from the durable mark
        assert counter.next() >= 15
    seen: set[int] = set()
    for _ in range(5):
        with SeqCounter(path, block=3) as counter:
            for _ in range(4):
                value = counter.next()
                assert value not in seen
                seen.add(value)
    assert sorted(seen) == list(seen)


def test_seq_counter_refuses_corruption_and_a_second_writer(tmp_path):
    path = tmp_path / "seq"
    first = SeqCounter(path)
    with pytest.raises(SeqStateError, match="in use by another counter"):
        SeqCounter(path)
    first.next()
    first.close()
    with pytest.raises(SeqStateError, match="closed"):
        first.next()
    path.write_text("garbage\n")
    with pytest.raises(SeqStateError, match=r"corrupt .* refusing to guess"):
        SeqCounter(path)
    path.write_text(str(2**53 - 1) + "\n")
    with SeqCounter(path) as counter, pytest.raises(SeqStateError, match="used up"):
        counter.next()
    with pytest.raises(ValidationError, match="block"):
        SeqCounter(tmp_path / "other", block=0)


@pytest.mark.external
def test_seq_counter_survives_kill_9_without_reuse(tmp_path):
    path = tmp_path / "seq"
    child = (
        "import sys\n"
        "from devices.sdk import SeqCounter\n"
        "counter = SeqCounter(sys.argv[1], block=16)\n"
        "for _ in range(10_000_000):\n"
        "    sys.stdout.write(f'{counter.next()}\\n')\n"
        "    sys.stdout.flush()\n"
    )
    handed_out: list[int] = []
    for _ in range(3):  # killed three times mid-stream
        with subprocess.Popen(
            [sys.executable, "-c", child, str(path)], cwd=ROOT, stdout=subprocess.PIPE
        ) as proc:
            try:
                lines = read_lines(proc, 200, timeout=30)
            finally:
                proc.kill()
                proc.wait(timeout=10)
            lines += read_lines(proc, sys.maxsize, timeout=10)
        assert proc.returncode == -9
        handed_out += [int(line) for line in lines]
    assert len(handed_out) == len(set(handed_out)) >= 600
    with SeqCounter(path) as counter:
        assert counter.next() > max(handed_out)


# --- DeviceLogger and keygen -----------------------------------------------------------------


def test_logger_signs_verifiable_readings_into_the_outbox(tmp_path):
    key = Ed25519PrivateKey.generate()
    with DeviceLogger(key, tmp_path / "state", "probe-1", clock=lambda: T0) as logger:
        assert logger.did == did_of(key)
        first = logger.reading({"temperature_c": 4.5, "humidity_pct": 80})
        second = logger.reading(
            {"temperature_c": -18.25}, time="2026-11-22T09:00:00.5Z", batches=[URI]
        )
        assert first.time == "2026-11-22T10:15:00.000Z"  # now, in the protocol's form
        assert second.time == "2026-11-22T09:00:00.5Z" and second.lots == (URI,)
        assert second.seq > first.seq
        with pytest.raises(ValidationError, match=r"data.temperature_c: must be between -100"):
            logger.reading({"temperature_c": 500})
        with pytest.raises(ValidationError, match="at least one of"):
            logger.reading({"sensor": "probe"})
        queued = logger.outbox.peek(10)
    assert [entry.topic for entry in queued] == ["provenance/v1/devices/probe-1/events"] * 2
    for entry, envelope in zip(queued, [first, second], strict=True):
        parsed = Envelope.from_json(entry.payload)
        parsed.verify_signature()
        assert entry.payload == envelope.canonical_bytes() and parsed == envelope
        assert parsed.signer == did_of(key) and parsed.kind == "reading"
    # a restart continues the sequence, never reusing one
    with DeviceLogger(key, tmp_path / "state", "probe-1") as logger:
        assert len(logger.outbox) == 2
        assert logger.reading({"door_open": True}).seq > second.seq


def test_logger_with_a_shared_outbox_and_bad_ids(tmp_path):
    box = Outbox(None)
    key = Ed25519PrivateKey.generate()
    logger = DeviceLogger(key, tmp_path, "fridge-2", outbox=box)
    envelopes = [logger.reading({"temperature_c": 5}) for _ in range(3)]
    logger.close()
    assert len(box) == 3 and [e.seq for e in envelopes] == [0, 1, 2]
    box.put("x/y", b"still open")  # the logger does not close an outbox it was given
    with pytest.raises(ValidationError, match="cannot be a topic level"):
        DeviceLogger(key, tmp_path, "bad/id", outbox=box)


def test_keygen_writes_a_0600_key_and_returns_its_did(tmp_path):
    did = keygen(tmp_path / "keys" / "probe-7.pem")
    path = tmp_path / "keys" / "probe-7.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert did.startswith("did:key:z6Mk") and did_of(load_key(path)) == did
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        keygen(path)
    assert keygen(tmp_path / "keys" / "probe-8").startswith("did:key:")  # .pem added
    assert (tmp_path / "keys" / "probe-8.pem").exists()


def test_keygen_command_prints_the_enrolment(tmp_path):
    result = CliRunner().invoke(
        main,
        ["keygen", str(tmp_path / "p.pem"), "--device-id", "probe-9", "--owner", "Cold Express"],
    )
    assert result.exit_code == 0, result.output
    did = result.stdout.splitlines()[0]
    assert did == did_of(load_key(tmp_path / "p.pem"))
    assert f"provenance device add probe-9 --owner 'Cold Express' --public-key {did}" in (
        result.stderr
    )
    again = CliRunner().invoke(main, ["keygen", str(tmp_path / "p.pem")])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output


# --- DS18B20 on a fake sysfs tree ------------------------------------------------------------

GOOD = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
NEGATIVE = "ec ff 4b 46 7f ff 0c 10 d1 : crc=d1 YES\nec ff 4b 46 7f ff 0c 10 d1 t=-1250\n"
CRC_NO = "ff ff ff ff ff ff ff ff ff : crc=c9 NO\nff ff ff ff ff ff ff ff ff t=-62\n"
POWER_ON = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"


def fake_w1(root: Path, sensors: dict[str, str | None]) -> Path:
    for sensor_id, content in sensors.items():
        folder = root / sensor_id
        folder.mkdir(parents=True)
        if content is not None:
            (folder / "w1_slave").write_text(content)
    (root / "w1_bus_master1").mkdir(parents=True, exist_ok=True)  # not a thermometer
    return root


def test_ds18b20_reads_a_fake_sysfs_tree(tmp_path):
    root = fake_w1(
        tmp_path / "w1",
        {
            "28-0316a2794fff": GOOD,
            "28-000005e2fdc3": NEGATIVE,
            "28-0000aaaa0001": CRC_NO,
            "28-0000aaaa0002": POWER_ON,
            "28-0000aaaa0003": None,  # unplugged: the folder lingers, the file is gone
        },
    )
    sensors = discover(root)
    assert [sensor.sensor_id for sensor in sensors] == sorted(
        name for name in os.listdir(root) if name.startswith("28-")
    )
    assert len(sensors) == 5
    assert DS18B20("28-0316a2794fff", root).read() == Measurement(
        "28-0316a2794fff", {"temperature_c": 23.125}
    )
    assert DS18B20("28-000005e2fdc3", root).read().data == {"temperature_c": -1.25}
    with pytest.raises(SensorError, match="CRC check failed"):
        DS18B20("28-0000aaaa0001", root).read()
    with pytest.raises(SensorError, match="power-on value"):
        DS18B20("28-0000aaaa0002", root).read()
    with pytest.raises(SensorError, match="not found: the sensor is unplugged"):
        DS18B20("28-0000aaaa0003", root).read()
    assert discover(tmp_path / "no-bus") == []
    with pytest.raises(ValidationError, match="not a DS18B20 id"):
        DS18B20("10-0316a2794fff", root)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "0 lines"),
        (GOOD.splitlines()[0], "1 lines"),
        ("72 01 : crc=57 MAYBE\n72 01 t=23125\n", "unreadable CRC line"),
        ("72 01 : crc=57 YES\n72 01 t=\n", "no t= value"),
        ("72 01 : crc=57 YES\n72 01 t=126000\n", "outside"),
        ("72 01 : crc=57 YES\n72 01 t=-56000\n", "outside"),
    ],
)
def test_w1_slave_garbage(text, message):
    with pytest.raises(SensorError, match=message):
        parse_w1_slave(text)


def test_w1_slave_extremes():
    assert parse_w1_slave("x : crc=00 YES\nx t=-55000\n") == -55.0
    assert parse_w1_slave("x : crc=00 YES\nx t=0\n") == 0.0
    assert parse_w1_slave("x : crc=00 YES\nx t=125000") == 125.0


# --- CSV / serial lines ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("probe-1,4.5", Measurement("probe-1", {"temperature_c": 4.5})),
        (
            "probe-1,4.5,81.5,97",
            Measurement("probe-1", {"temperature_c": 4.5, "humidity_pct": 81.5, "battery_pct": 97}),
        ),
        ("probe-1,-18,,50\r\n", Measurement("probe-1", {"temperature_c": -18, "battery_pct": 50})),
        (
            " probe-1 , 4.5 , 80 ",
            Measurement("probe-1", {"temperature_c": 4.5, "humidity_pct": 80}),
        ),
        ("2026-11-22T10:15:00Z,probe-1,4.5", Measurement("probe-1", {"temperature_c": 4.5}, T0)),
        (
            "2026-11-22T12:15:00.250+02:00,28-0316a2794fff,3",
            Measurement("28-0316a2794fff", {"temperature_c": 3}, T0 + 250_000),
        ),
        (b"probe-1,1e1", Measurement("probe-1", {"temperature_c": 10})),
    ],
)
def test_csv_lines(line, expected):
    assert parse_csv_line(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "line: is empty"),
        ("probe-1", "has 1 columns"),
        ("probe-1,4.5,80,97,1", "has 5 columns"),
        ("probe-1,", "temperature_c: is empty"),
        (",4.5", "sensor_id: is empty"),
        ("probe-1,4,5", None),  # a decimal comma reads as humidity 5: valid, if surprising
        ("probe-1,abc", "temperature_c: 'abc' is not a number"),
        ("probe-1,nan", "temperature_c: 'nan' is not a number"),
        ("probe-1,1_000", "is not a number"),
        ("probe-1,500", "temperature_c: must be between -100 and 150"),
        ("probe-1,4.5,101", "humidity_pct: must be between 0 and 100"),
        ("probe-1,4.5,50,-1", "battery_pct: must be between 0 and 100"),
        ("probe 1,4.5", "sensor: letters, digits"),
        ("2026-11-22T10:15:00,probe-1,4.5", "time: .* not an RFC 3339 time with a zone"),
        ("2026-13-22T10:15:00Z,probe-1,4.5", "time: .* not a real date"),
        (b"probe-1,\xff", "line: is not UTF-8"),
        ("p," + "1" * 2000, "longer than 1024"),
    ],
)
def test_bad_csv_lines(line, message):
    if message is None:
        assert parse_csv_line(line).data == {"temperature_c": 4, "humidity_pct": 5}
        return
    with pytest.raises(ValidationError, match=message):
        parse_csv_line(line)


def test_line_source_skips_bad_lines_and_keeps_going(caplog):
    stream = io.BytesIO(
        b"sensor_id,temperature_c,humidity_pct\n"
        b"# logger 7, firmware 1.2\n"
        b"probe-1,4.5,80\n"
        b"\n"
        b"probe-1,500\n"
        b"\xff\xfe garbage\n" + b"x" * 5000 + b"\n"
        b"probe-2,5.5\n"
        b"probe-3,6.5"  # last line without a newline
    )
    source = LineReader(stream, name="serial0")
    got = source.poll(100)
    assert [(m.sensor, m.data["temperature_c"]) for m in got] == [
        ("probe-1", 4.5),
        ("probe-2", 5.5),
        ("probe-3", 6.5),
    ]
    assert (source.good, source.bad) == (3, 3) and source.at_end
    assert "serial0: line skipped" in caplog.text and "between -100 and 150" in caplog.text


class SerialLike:
    """A serial port with a read timeout: readline() returns what has arrived,
    possibly half a line, or b"" when nothing came in time."""

    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks

    def readline(self, _limit: int = -1) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def test_line_source_follows_a_serial_port_until_stopped():
    port = SerialLike(
        [b"probe-1,4.", b"5\n", b"", b"probe-1,5.5\nprobe-2,1\n"[:12], b"probe-2,1\n"]
    )
    source = LineReader(port, follow=True)
    stop = threading.Event()
    seen: list[Measurement] = []

    def sink(measurement: Measurement) -> None:
        seen.append(measurement)
        if len(seen) == 3:
            stop.set()

    assert source.run(sink, stop) == 3
    assert [m.data["temperature_c"] for m in seen] == [4.5, 5.5, 1]


def test_line_source_run_is_bounded():
    source = LineReader(io.StringIO("probe-1,1\n" * 50))
    seen: list[Measurement] = []
    assert source.run(seen.append, threading.Event(), max_lines=10) == 10
    assert source.run(seen.append, threading.Event()) == 40  # then the end of the file
    assert len(seen) == 50


# --- HTTP bodies -----------------------------------------------------------------------------


def test_http_json_and_form_readings():
    body = json.dumps(
        [
            {"sensor": "fridge-2", "temperature_c": 4.1, "time": "2026-11-22T10:15:00Z"},
            {"sensor": "door-1", "door_open": True, "battery_pct": 88},
        ]
    ).encode()
    assert parse_http_reading(body, "application/json; charset=utf-8") == [
        Measurement("fridge-2", {"temperature_c": 4.1}, T0),
        Measurement("door-1", {"door_open": True, "battery_pct": 88}),
    ]
    assert parse_http_reading(b'{"sensor":"s1","shock_g":2.5}', "application/json") == [
        Measurement("s1", {"shock_g": 2.5})
    ]
    form = (
        b"sensor=fridge-2&temperature_c=4.1&humidity_pct=61&door_open=false"
        b"&time=2026-11-22T10%3A15%3A00Z"
    )
    assert parse_http_reading(form, "application/x-www-form-urlencoded") == [
        Measurement("fridge-2", {"temperature_c": 4.1, "humidity_pct": 61, "door_open": False}, T0)
    ]
    gps = b"sensor=truck-gps&lat=-1.2921&lon=36.8219&battery_pct="
    assert parse_http_reading(gps, "application/x-www-form-urlencoded")[0].data == {
        "lat": -1.2921,
        "lon": 36.8219,
    }


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"sensor":"s","temperature_c":4}', "text/plain", "content-type: text/plain: send"),
        (b'{"sensor":"s","temperature_c":4}', None, "content-type: missing"),
        (b"{not json", JSON, "malformed JSON"),
        (b'{"sensor":"s","sensor":"t","temperature_c":4}', JSON, "duplicate key"),
        (b'{"sensor":"s","temperature_c":NaN}', JSON, "NaN is not valid JSON"),
        (b'{"sensor":"s","temperature_c":"4.5"}', JSON, "temperature_c: must be a number"),
        (b'{"sensor":"s","temperature_c":151}', JSON, "temperature_c: must be between -100"),
        (b'{"sensor":"s","door_open":"yes"}', JSON, "door_open: must be true or false"),
        (b'{"sensor":"s","lat":91}', JSON, "lat: must be between -90 and 90"),
        (b'{"sensor":"s","temperature_c":4,"pressure":1}', JSON, "pressure: is not a known"),
        (b'{"sensor":"s"}', JSON, "reading: a reading needs at least one of"),
        (b'{"temperature_c":4}', JSON, "sensor: is required"),
        (b'{"sensor":"a b","temperature_c":4}', JSON, "sensor: letters, digits"),
        (b'{"sensor":"s","temperature_c":4,"time":"yesterday"}', JSON, "time: 'yesterday'"),
        (
            b'[{"sensor":"s","temperature_c":4},{"sensor":"s","humidity_pct":-1}]',
            JSON,
            r"\[1\]\.humidity_pct",
        ),
        (b"[1]", JSON, r"\[0\]: a reading must be a JSON object"),
        (b"[]", JSON, "must hold 1 to 500 readings"),
        (b'"text"', JSON, "body: a reading must be a JSON object"),
        (b"x" * (64 * 1024 + 1), JSON, "more than 65536"),
        (b"sensor=s&temperature_c=warm", FORM, "temperature_c: 'warm' is not a number"),
        (b"sensor=s&temperature_c=4&temperature_c=5", FORM, "a field appears twice"),
        (b"sensor=s&door_open=maybe", FORM, "door_open: 'maybe' is not true/false"),
        (b"sensor=s&colour=red", FORM, "colour: is not a known field"),
        (b"temperature_c=4", FORM, "sensor: is required"),
        (b"sensor=s&temperature_c=inf", FORM, "'inf' is not a number"),
        (b"sensor=s&temperature_c=%FF", FORM, "not UTF-8"),
        (b"sensor=s&&&&", FORM, "malformed form data"),
    ],
)
def test_bad_http_bodies(body, content_type, message):
    with pytest.raises(ValidationError, match=message):
        parse_http_reading(body, content_type)


def test_sensor_times_and_reading_checks():
    assert parse_sensor_time("2026-11-22T10:15:00.123456789Z") == T0 + 123_456
    assert parse_sensor_time("2026-11-22T05:15:00-05:00") == T0
    assert format_time(parse_sensor_time("2026-11-22T10:15:00.5Z")) == "2026-11-22T10:15:00.500Z"
    with pytest.raises(ValidationError, match="with a zone"):
        parse_sensor_time("2026-11-22 10:15:00Z")
    check_reading("probe-1", {"temperature_c": -100, "humidity_pct": 100, "shock_g": 0})
    with pytest.raises(ValidationError, match=r"^\[3\]\.shock_g: must be between 0 and 1000"):
        check_reading("probe-1", {"shock_g": 1001}, "[3].")
