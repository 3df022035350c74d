"""The edge gateway (gateway/): configuration, sources, dock scans, and the
whole path through a real broker into a ledger that accepts what it sent."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.gateway import DEADLINE, Running, Subscriber, make_config, post

from devices.outbox import Outbox
from devices.sdk import SeqCounter
from gateway import config as gwconfig
from gateway.cli import command
from gateway.config import ConfigError, load_config, parse_config
from gateway.dock import DockForm, DockSession, parse_lot_scan
from gateway.intake import GatewaySigner, Intake
from gateway.linestream import LineStream
from gateway.service import Gateway
from gateway.sources import DS18B20Source, HttpSource, LineSource
from provenance.core.envelope import Envelope
from provenance.core.jcs import canonicalize
from provenance.core.signing import did_of, sign
from provenance.core.timefmt import format_time, now_micros

ROOT = Path(__file__).resolve().parent.parent
GTIN = "09506000134352"
LOT = f"https://id.gs1.org/01/{GTIN}/10/LOT42"
LOT7 = f"https://id.gs1.org/01/{GTIN}/10/LOT7"
W1_OK = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t={milli}\n"
W1_BAD_CRC = "72 01 4b 46 7f ff 0e 10 57 : crc=57 NO\n72 01 4b 46 7f ff 0e 10 57 t=4000\n"


def fake_w1(root: Path, sensors: dict[str, str]) -> Path:
    """A fake /sys/bus/w1/devices: {sensor id: w1_slave text}."""
    for sensor_id, text in sensors.items():
        (root / sensor_id).mkdir(parents=True, exist_ok=True)
        (root / sensor_id / "w1_slave").write_text(text)
    (root / "w1_bus_master1").mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def intake(tmp_path):
    """An Intake over a file outbox, with the gateway's and the site's signers."""
    outbox = Outbox(tmp_path / "outbox.db")
    gateway_key, site_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    gateway = GatewaySigner(gateway_key, SeqCounter(tmp_path / "seq-gw"))
    intake = Intake(outbox, "provenance/v1/gateways/gw1/events", gateway)
    intake.site = GatewaySigner(site_key, SeqCounter(tmp_path / "seq-site"))
    yield intake
    gateway.counter.close()
    intake.site.counter.close()
    outbox.close()


def queued(outbox: Outbox) -> list[Envelope]:
    return [Envelope.from_json(entry.payload) for entry in outbox.peek(100_000)]


def run_until(source: Any, predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Run a source in a thread until *predicate* holds (checked on a short
    bounded wait) or the source returns; then stop it."""
    stop = threading.Event()
    done = threading.Event()

    def target() -> None:
        try:
            source.run(stop)
        finally:
            done.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = now_micros() + int(timeout * 1e6)
    while not predicate() and not done.is_set() and now_micros() < deadline:
        done.wait(0.02)  # bounded poll of outbox state; the source signals nothing else
    stop.set()
    thread.join(DEADLINE)
    assert not thread.is_alive()
    source.close()


# --- configuration --------------------------------------------------------------------------

BASE = {
    "gateway": {"id": "gw1", "key_file": "k.pem"},
    "site": {"party": "farm", "key_file": "s.pem"},
    "broker": {"url": "mqtt://127.0.0.1:1883"},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    document = json.loads(json.dumps(BASE))
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return document


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "key", "words"),
    [
        ("gateway.id", _DELETE, "gateway.id", "required"),
        ("gateway.id", "gw/1", "gateway.id", "topic level"),
        ("gateway.key_file", 7, "gateway.key_file", "must be a string"),
        ("gateway.colour", "red", "gateway.colour", "unknown key"),
        ("gateway.status_interval_s", -1, "gateway.status_interval_s", "from 0.1"),
        ("site.party", _DELETE, "site.party", "required"),
        ("site.location", {"lat": 1}, "site.location.name", "required"),
        ("site.location", {"name": "x", "country": "ke"}, "site.location.country", "ISO"),
        ("broker.url", "http://x:1", "broker.url", "mqtt://"),
        ("broker.url", "mqtt://user:pw@x:1", "broker.url", "credentials"),
        ("broker.password", "pw", "broker.username", "required when a password"),
        ("broker.password_env", "NOPE_NOT_SET", "broker.password_env", "not set"),
        ("broker.max_inflight", 0, "broker.max_inflight", "from 1"),
        ("broker.backoff_max", 0.1, "broker.backoff_max", "at least backoff_min"),
        ("parties", {"Cold Express": "did:key:nope"}, 'parties."Cold Express"', "did:key"),
        ("sources.serial", {}, "sources.serial", "unknown key"),
        ("sources.ds18b20", {"interval_s": "often"}, "sources.ds18b20.interval_s", "number"),
        (
            "sources.ds18b20",
            {"sensors": {"28-01": "bad name!"}},
            "ds18b20.sensors.28-01",
            "probe",
        ),
        ("sources.csv", {"format": "csv"}, "sources.csv.path", "required"),
        ("sources.csv", {"path": "x", "format": "xml"}, "sources.csv.format", "one of"),
        ("sources.csv", [{"path": "x", "baud": 1234}], "sources.csv[0].baud", "9600"),
        ("sources.http", {"port": 70000}, "sources.http.port", "65535"),
        ("sources.http", {"token": "a", "token_env": "B"}, "sources.http.token_env", "not both"),
        ("sources.dock", {}, "sources.dock.input", "needs an input"),
        ("sources.dock", {"input": "-", "form_port": True}, "sources.dock.form_port", "integer"),
        ("sources.csv", [{"path": "a"}, {"path": "b", "name": "csv"}], "csv[1].name", "already"),
        ("sources", {"http": [{"port": 9000}, {"port": 9000}]}, "http[1].port", "also used"),
        ("sources", {"csv": {"path": "-"}, "dock": {"input": "-"}}, "dock.input", "also read"),
    ],
)
def test_config_errors_name_the_key(tmp_path, path, value, key, words):
    with pytest.raises(ConfigError) as caught:
        parse_config(_with(path, value), base=tmp_path, environ={})
    assert key in str(caught.value)
    assert words in str(caught.value)


def test_config_file_errors_name_the_file(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text("[gateway\nid = 1")
    with pytest.raises(ConfigError, match=r"gw\.toml: is not valid TOML"):
        load_config(path)
    path.write_text('[gateway]\nid = "gw1"\n')
    with pytest.raises(ConfigError, match=r"gw\.toml: gateway\.key_file: is required"):
        load_config(path)


def test_config_defaults_paths_and_overrides(tmp_path):
    document = _with("broker.password_env", "GW_PW")
    document["broker"]["username"] = "gw1"
    document["sources"] = {"csv": [{"path": "logs/a.csv"}, {"path": "-", "format": "auto"}]}
    config = parse_config(
        document,
        base=tmp_path,
        broker_url="mqtts://broker.example:8883",
        environ={"GW_PW": "hunter2"},
    )
    assert config.broker.url == "mqtts://broker.example:8883"
    assert config.broker.password == "hunter2"
    assert "hunter2" not in repr(config.broker)
    assert config.key_file == tmp_path / "k.pem"
    assert config.outbox == tmp_path / "state" / "outbox.db"
    assert [c.name for c in config.csv] == ["csv", "csv-2"]
    assert config.csv[0].path == tmp_path / "logs" / "a.csv"
    assert str(config.csv[1].path) == "-"
    assert config.topic == "provenance/v1/gateways/gw1/events"
    assert config.http == ()


def test_example_config_loads_and_documents_every_key():
    example = ROOT / "gateway" / "example.toml"
    config = load_config(
        example, environ={"PROVENANCE_GATEWAY_PASSWORD": "x", "PROVENANCE_SENSOR_TOKEN": "y"}
    )
    assert config.ds18b20 and config.csv and config.http and config.dock
    text = example.read_text()
    documented = {line.split("=")[0].strip().lstrip("# ") for line in text.splitlines()}
    classes = [
        gwconfig.BrokerConfig,
        gwconfig.DS18B20Config,
        gwconfig.CsvConfig,
        gwconfig.HttpConfig,
        gwconfig.DockConfig,
    ]
    renamed = {
        "site_party": "party",
        "site_key_file": "key_file",
        "site_location": "location",
        "site_location_private": "location_private",
    }
    skipped = {"path", "parties", "devices", "ds18b20", "csv", "http", "dock", "broker"}
    for cls in [*classes, gwconfig.GatewayConfig]:
        for item in dataclasses.fields(cls):
            if item.name in skipped:
                continue
            assert renamed.get(item.name, item.name) in documented, (cls.__name__, item.name)
    for extra in ("password_env", "token_env"):
        assert extra in documented
    gateway_doc = (ROOT / "docs" / "gateway.md").read_text()
    for key in sorted(documented):
        if key and key.isidentifier() and key.islower() and f"{key} =" in text:
            assert f"`{key}`" in gateway_doc, key


# --- DS18B20 ----------------------------------------------------------------------------------


def test_ds18b20_fake_sysfs_gives_signed_readings_with_sensor_and_rising_seq(tmp_path, intake):
    root = fake_w1(
        tmp_path / "w1",
        {
            "28-0000075565a1": W1_OK.format(milli=4125),
            "28-00000756b3c2": W1_OK.format(milli=-18250),
            "28-00000756ffff": W1_BAD_CRC,
        },
    )
    config = gwconfig.DS18B20Config(
        name="cold", root=root, interval_s=0.05, sensors={"28-0000075565a1": "top"}
    )
    source = DS18B20Source(config, intake)
    first = source.poll()
    (root / "28-0000075565a1" / "w1_slave").write_text(W1_OK.format(milli=4250))
    second = source.poll()
    assert [(e.data["sensor"], e.data["temperature_c"]) for e in first] == [
        ("top", 4.125),
        ("28-00000756b3c2", -18.25),
    ]
    assert second[0].data == {"sensor": "top", "temperature_c": 4.25}
    envelopes = queued(intake.outbox)
    assert envelopes == [*first, *second]
    seqs = [e.seq for e in envelopes]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for envelope in envelopes:
        envelope.verify_signature()
        assert envelope.kind == "reading" and envelope.lots is None
        assert envelope.signer == intake.gateway.did

    only_named = DS18B20Source(dataclasses.replace(config, only_named=True), intake)
    assert [e.data["sensor"] for e in only_named.poll()] == ["top"]


def test_ds18b20_source_runs_on_its_interval_and_stops(tmp_path, intake):
    root = fake_w1(tmp_path / "w1", {"28-0000075565a1": W1_OK.format(milli=5000)})
    source = DS18B20Source(gwconfig.DS18B20Config(name="t", root=root, interval_s=0.02), intake)
    run_until(source, lambda: len(intake.outbox) >= 3)
    assert len(intake.outbox) >= 3


def test_seq_is_never_reused_across_restarts(tmp_path):
    config = make_config(
        tmp_path / "gw",
        '[sources.ds18b20]\nroot = "w1"\ninterval_s = 60\n',
        broker_url="mqtt://127.0.0.1:1",
    )
    fake_w1(tmp_path / "gw" / "w1", {"28-0000075565a1": W1_OK.format(milli=5000)})
    seqs = []
    for _ in range(2):
        gateway = Gateway(load_config(config))
        try:
            seqs += [e.seq for e in gateway.sources[0].poll()]
        finally:
            gateway.close()
    assert seqs[1] > seqs[0]
    assert seqs[0] >= now_micros() - 60_000_000  # a new counter starts at the time in µs


# --- CSV / line sources -------------------------------------------------------------------


def test_csv_file_source_signs_good_lines_skips_bad_and_resumes(tmp_path, intake):
    log = tmp_path / "logger.csv"
    log.write_text(
        "time,sensor_id,temperature_c,humidity_pct\n"
        "2026-11-22T10:00:00Z,fridge-1,4.5,61\n"
        "fridge-2,3.9\n"
        "fridge-3,hot\n"  # not a number: skipped
        "2026-11-22T12:00:00+02:00,fridge-1,4.7,\n"
    )
    config = gwconfig.CsvConfig(name="csv", path=log, follow=False)
    run_until(LineSource(config, intake, tmp_path), lambda: False)
    first = queued(intake.outbox)
    assert [(e.data["sensor"], e.data["temperature_c"]) for e in first] == [
        ("fridge-1", 4.5),
        ("fridge-2", 3.9),
        ("fridge-1", 4.7),
    ]
    assert first[0].time == "2026-11-22T10:00:00.000Z"
    assert first[0].data["humidity_pct"] == 61
    assert first[2].time == "2026-11-22T10:00:00.000Z"
    for envelope in first:
        envelope.verify_signature()

    with log.open("a") as handle:  # the logger appends; a restart resumes after what was sent
        handle.write("fridge-9,2.5\n")
    run_until(LineSource(config, intake, tmp_path), lambda: False)
    assert [e.data["sensor"] for e in queued(intake.outbox)[3:]] == ["fridge-9"]


def test_fifo_source_mixes_csv_and_presigned_envelopes_and_follows(tmp_path, intake):
    import os

    fifo = tmp_path / "serial"
    os.mkfifo(fifo)
    device = Ed25519PrivateKey.generate()
    presigned = sign(
        device, kind="reading", seq=7, time=format_time(now_micros()), data={"temperature_c": 2}
    )
    config = gwconfig.CsvConfig(name="serial", path=fifo, format="auto")
    source = LineSource(config, intake, tmp_path)
    writer = threading.Thread(
        target=lambda: fifo.write_bytes(
            b"probe-a,4.0\r\n"
            + json.dumps(presigned.to_json(), indent=None).encode()
            + b"\n{not json}\nprobe-b,5.0\n"
        ),
        daemon=True,
    )
    writer.start()
    run_until(source, lambda: len(intake.outbox) >= 3)
    writer.join(DEADLINE)
    envelopes = queued(intake.outbox)
    assert [e.signer for e in envelopes] == [intake.gateway.did, did_of(device), intake.gateway.did]
    assert envelopes[1].canonical_bytes() == presigned.canonical_bytes()


def test_line_stream_hands_out_whole_lines_only(tmp_path):
    path = tmp_path / "growing.log"
    path.write_bytes(b"a,1\nb,")
    stream = LineStream(path, name="t", follow=True, offset_file=tmp_path / "offset")
    assert stream.readline() == b"a,1\n"
    assert stream.readline() == b""  # "b," is not a line yet
    with path.open("ab") as handle:
        handle.write(b"2\n")
    assert stream.readline() == b"b,2\n"
    stream.commit()
    stream.close()
    assert (tmp_path / "offset").read_text().split()[2] == "8"


# --- HTTP -------------------------------------------------------------------------------------


@pytest.fixture
def http(intake):
    source = HttpSource(gwconfig.HttpConfig(name="http", port=0, token="s3cret"), intake)
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(stop,), daemon=True)
    thread.start()
    yield source
    stop.set()
    thread.join(DEADLINE)
    source.close()


AUTH = {"Authorization": "Bearer s3cret"}


def test_http_readings_are_signed_by_the_gateway(http, intake):
    body = json.dumps(
        [
            {"sensor": "fridge-2", "temperature_c": 4.1, "humidity_pct": 61},
            {"sensor": "door", "door_open": True, "time": "2026-11-22T10:15:00Z"},
        ]
    ).encode()
    status, reply = post(http.url + "/readings", body, **AUTH)
    assert status == 202 and reply["queued"] == 2
    envelopes = queued(intake.outbox)
    assert [e.event_id for e in envelopes] == reply["events"]
    assert envelopes[1].data == {"sensor": "door", "door_open": True}
    assert envelopes[1].time == "2026-11-22T10:15:00.000Z"
    status, reply = post(
        http.url + "/readings",
        b"sensor=shelf&temperature_c=5.5",
        "application/x-www-form-urlencoded",
        **AUTH,
    )
    status, reply = post(
        http.url + "/readings", b'{"sensor": "sig", "temperature_c": 1}', **AUTH
    )  # a sensor named "sig" is still a reading
    assert status == 202 and queued(intake.outbox)[3].signer == intake.gateway.did
    assert status == 202 and queued(intake.outbox)[2].data == {
        "sensor": "shelf",
        "temperature_c": 5.5,
    }


def test_http_refusals_queue_nothing(http, intake):
    url = http.url + "/readings"
    good = json.dumps({"sensor": "a", "temperature_c": 4}).encode()
    assert post(url, good)[0] == 401  # no token
    assert post(url, good, Authorization="Bearer wrong")[0] == 401
    status, reply = post(
        url,
        json.dumps(
            [{"sensor": "a", "temperature_c": 4}, {"sensor": "b", "temperature_c": 500}]
        ).encode(),
        **AUTH,
    )
    assert status == 400 and reply["field"] == "[1].temperature_c"
    status, reply = post(url, b"{oops", **AUTH)
    assert status == 400
    assert post(url, good, "text/plain", **AUTH)[0] == 400
    assert post(http.url + "/nowhere", good, **AUTH)[0] == 404
    assert len(intake.outbox) == 0


def test_http_presigned_envelope_passes_through_byte_identical(http, intake):
    device = Ed25519PrivateKey.generate()
    envelope = sign(
        device,
        kind="reading",
        seq=41,
        time="2026-11-22T10:15:00.5Z",
        data={"temperature_c": 4.0, "sensor": "x", "ext": {"b": 1, "a": "é"}},
        lots=[LOT],
    )
    # Sent with other key order and whitespace: the signature covers the JCS bytes, so it holds.
    obj = envelope.to_json()
    sent = json.dumps(dict(reversed(list(obj.items()))), indent=2, ensure_ascii=True).encode()
    status, reply = post(http.url + "/envelopes", sent, **AUTH)
    assert status == 202 and reply["events"] == [envelope.event_id]
    payload = intake.outbox.peek(10)[0].payload
    assert payload == envelope.canonical_bytes() == canonicalize(json.loads(sent))
    assert json.loads(payload)["sig"] == envelope.sig  # not re-signed
    # A signed reading POSTed to /readings passes through too; arrays and JSON lines work.
    second = sign(device, kind="reading", seq=42, time="2026-11-22T10:16:00Z", data={"lat": 1.5})
    assert post(http.url + "/readings", json.dumps(second.to_json()).encode(), **AUTH)[0] == 202
    lines = b"\n".join(
        json.dumps(
            sign(
                device, kind="reading", seq=s, time="2026-11-22T10:17:00Z", data={"lon": 2}
            ).to_json()
        ).encode()
        for s in (43, 44)
    )
    assert post(http.url + "/envelopes", lines, **AUTH)[1]["queued"] == 2
    assert [e.seq for e in queued(intake.outbox)] == [41, 42, 43, 44]
    assert intake.counters.passed_through == 4 and intake.counters.signed == 0


def test_http_tampered_envelope_is_refused(http, intake):
    device = Ed25519PrivateKey.generate()
    obj = sign(
        device, kind="reading", seq=1, time="2026-11-22T10:15:00Z", data={"temperature_c": 4}
    ).to_json()
    obj["data"]["temperature_c"] = 9
    status, reply = post(http.url + "/envelopes", json.dumps(obj).encode(), **AUTH)
    assert status == 400 and reply["reason"] == "bad-signature"
    obj["colour"] = "red"
    status, reply = post(http.url + "/envelopes", json.dumps([obj]).encode(), **AUTH)
    assert status == 400 and reply["field"] == "colour"
    status, reply = post(http.url + "/envelopes", json.dumps([obj, obj]).encode(), **AUTH)
    assert status == 400 and reply["field"] == "[0].colour"
    assert len(intake.outbox) == 0


# --- dock scans -------------------------------------------------------------------------------

CARRIER = did_of(Ed25519PrivateKey.generate())
LOGGER = did_of(Ed25519PrivateKey.generate())
SHIPMENT = "ab" * 32


@pytest.fixture
def dock(intake):
    clock = {"now": 0.0}

    def emit(kind, lots, data):
        return intake.signed(intake.site, kind, lots, data)

    session = DockSession(
        emit,
        parties={"Cold Express": CARRIER},
        devices={"truck7-logger": LOGGER},
        gateway_did=intake.gateway.did,
        location={"name": "Dock 3"},
        timeout_s=300,
        clock=lambda: clock["now"],
    )
    session.test_clock = clock
    return session


GOOD_SCANS = [
    (
        ["(01)09506000134352(10)LOT42", "SHIP Cold Express"],
        "ship",
        [LOT],
        {"to": CARRIER, "location": {"name": "Dock 3"}},
    ),
    (
        [LOT, "https://id.gs1.org/01/09506000134352/10/LOT7", "CMD:SHIP", "PARTY:cold express"],
        "ship",
        [LOT, LOT7],
        {"to": CARRIER, "location": {"name": "Dock 3"}},
    ),
    (
        ["]d2010950600013435210LOT42", f"cmd:ship {CARRIER}"],
        "ship",
        [LOT],
        {"to": CARRIER, "location": {"name": "Dock 3"}},
    ),
    (
        [
            "http://example.com/01/9506000134352/10/LOT42?17=261231",
            f"RECEIVE {SHIPMENT} cold, intact",
        ],
        "receive",
        [LOT],
        {"shipment": SHIPMENT, "location": {"name": "Dock 3"}, "condition": "cold, intact"},
    ),
    (
        ["]C1010950600013435217261231\x1d10LOT42", "CMD:RECEIVE", f"SHIPMENT:{SHIPMENT.upper()}"],
        "receive",
        [LOT],
        {"shipment": SHIPMENT, "location": {"name": "Dock 3"}},
    ),
    ([LOT, LOT, "ATTACH GATEWAY"], "attach", [LOT], {"device": "GATEWAY"}),
    ([LOT, "CMD:ATTACH", "DEVICE:truck7-logger"], "attach", [LOT], {"device": LOGGER}),
    ([f"{LOT}/21/SERIAL9", f"detach {LOGGER}"], "detach", [LOT], {"device": LOGGER}),
    ([LOT7, "CMD:CLEAR", LOT, "  ", "DETACH truck7-logger"], "detach", [LOT], {"device": LOGGER}),
]


@pytest.mark.parametrize(("scans", "kind", "lots", "data"), GOOD_SCANS)
def test_dock_good_scans_make_the_right_envelopes(dock, intake, scans, kind, lots, data):
    results = [dock.handle(scan) for scan in scans]
    assert all(result.ok for result in results), [r.message for r in results]
    if data.get("device") == "GATEWAY":
        data = {"device": intake.gateway.did}
    [envelope] = queued(intake.outbox)
    assert (envelope.kind, list(envelope.lots), envelope.data) == (kind, lots, data)
    assert envelope.signer == intake.site.did
    envelope.verify_signature()
    assert results[-1].envelope == envelope and dock.lots == []


BAD_SCANS = [
    (["SHIP Cold Express"], "scan the lots first"),
    (["CMD:ATTACH"], "scan the lots first"),
    (["(01)09506000134353(10)LOT42"], "check digit is 3, expected 2"),
    (["(01)09506000134352"], "no batch/lot (10)"),
    (["https://id.gs1.org/01/09506000134352/21/SER1"], "not a lot identifier"),
    (["(01)09506000134352(10)THIS-LOT-NAME-IS-TOO-LONG"], "at most 20"),
    (["]C10109506000134352991234"], "not understood"),
    ([LOT, "SHIP Nobody Inc"], "unknown party 'Nobody Inc'"),
    ([LOT, "RECEIVE 1234"], "64 hex digits"),
    ([LOT, "ATTACH truck9"], "unknown device 'truck9'"),
    ([LOT, "CMD:SHIP", LOT7], "waiting for the receiving party"),
    ([LOT, "LAUNCH rockets"], "not a lot code or a command"),
    ([LOT, "SHIP\x07bell"], "control characters"),
    (["x" * 5000], "longer than"),
]


@pytest.mark.parametrize(("scans", "error"), BAD_SCANS)
def test_dock_bad_scans_say_why_and_queue_nothing(dock, intake, scans, error, caplog):
    results = [dock.handle(scan) for scan in scans]
    assert not results[-1].ok
    assert error in results[-1].message
    assert error in caplog.text  # logged as well as shown
    assert len(intake.outbox) == 0


def test_dock_lots_expire_when_left_idle(dock, intake):
    assert dock.handle(LOT).ok
    dock.test_clock["now"] = 301.0
    result = dock.handle("SHIP Cold Express")
    assert not result.ok and "scan the lots first" in result.message
    assert len(intake.outbox) == 0


def test_dock_refused_by_the_protocol_queues_nothing(intake):
    def emit(kind, lots, data):
        return intake.signed(intake.site, kind, lots, data)

    session = DockSession(emit, parties={"bad": "did:key:z6Mk"}, devices={})
    session.handle(LOT)
    result = session.handle("SHIP did:key:z6MkNotAKey")
    assert not result.ok
    assert len(intake.outbox) == 0


def test_dock_form(intake):
    def emit(kind, lots, data):
        return intake.signed(intake.site, kind, lots, data)

    form = DockForm(lambda: DockSession(emit, parties={"Cold Express": CARRIER}), "farm", "dock")
    status, ctype, page = form.handle_request("GET", "/", b"", {})
    assert status == 200 and ctype.startswith("text/html")
    assert form.token.encode() in page and b"Cold Express" in page
    assert b"://" not in page and b"<script" not in page  # no external assets, no JavaScript
    assert len(page) < 4096

    def submit(**fields):
        from urllib.parse import urlencode

        body = urlencode({"token": form.token, **fields}).encode()
        return form.handle_request("POST", "/", body, {})

    status, _, page = submit(
        lots=f"{LOT}\n(01)09506000134352(10)LOT7\n", action="ship", argument="Cold Express"
    )
    assert status == 200 and b"ship of 2 lots queued" in page
    [envelope] = queued(intake.outbox)
    assert envelope.kind == "ship" and list(envelope.lots) == [LOT, LOT7]
    status, _, page = submit(lots=f"{LOT}\n(01)123(10)X", action="ship", argument="Cold Express")
    assert status == 400 and b"line 2" in page and b"(01)123(10)X" in page  # kept for fixing
    status, _, page = submit(lots="<b>x</b>", action="ship", argument="Cold Express")
    assert status == 400 and b"<b>x</b>" not in page  # escaped
    status, _, _ = form.handle_request("POST", "/", b"lots=x&action=ship&argument=y&token=no", {})
    assert status == 403
    assert len(intake.outbox) == 1


def test_parse_lot_scan_normalises_to_the_canonical_uri():
    assert parse_lot_scan("HTTPS://id.gs1.org/01/9506000134352/10/LOT42") == LOT
    assert parse_lot_scan("(01)09506000134352(10)A\\(B") == f"https://id.gs1.org/01/{GTIN}/10/A%28B"


# --- the whole gateway through a real broker ---------------------------------------------


@pytest.fixture
def world_now():
    """The test World with its clock at the real time (readings are stamped now)."""
    from support.world import World

    world = World.create()
    world.now = now_micros() + 60_000_000
    return world


def test_end_to_end_through_the_broker_into_a_ledger(tmp_path, broker, world_now):
    world = world_now
    gateway_key = Ed25519PrivateKey.generate()
    world.keys["gw1"] = gateway_key
    world.ok(
        "registrar",
        "enrol",
        None,
        {
            "subject": did_of(gateway_key),
            "type": "device",
            "name": "gw1",
            "owner": world.did("farm"),
        },
    )
    world.ok(
        "farm",
        "attach",
        [LOT],
        {"device": did_of(gateway_key)},
        time=format_time(now_micros() - 3_600_000_000),
    )
    directory = tmp_path / "gw"
    fake_w1(directory / "w1", {"28-0000075565a1": W1_OK.format(milli=4125)})
    scans = directory / "scans"
    import os

    os.mkfifo(scans)
    config = make_config(
        directory,
        f"""
[parties]
carrier = "{world.did("carrier")}"

[sources.ds18b20]
root = "w1"
interval_s = 0.1
sensors = {{ "28-0000075565a1" = "coldroom-top" }}

[sources.http]
port = 0

[sources.dock]
input = "scans"
""",
        broker_url=broker.url,
        site_key=world.keys["farm"],
        gateway_key=gateway_key,
    )
    subscriber = Subscriber(broker.url)
    gateway = Gateway(load_config(config))
    running = Running(gateway)
    try:
        presigned = world.reading(2, 4.4)  # the probe signs for itself: passes through
        assert post(gateway.urls["http"] + "/envelopes", presigned.canonical_bytes())[0] == 202
        body = json.dumps(
            [{"sensor": f"shelf-{n}", "temperature_c": 3 + n / 10} for n in range(20)]
        )
        assert post(gateway.urls["http"] + "/readings", body.encode())[0] == 202
        with scans.open("w") as handle:
            handle.write(f"{LOT}\nSHIP carrier\n")
        assert subscriber.wait_for(
            lambda got: (
                sum(e.kind == "ship" for e in got) == 1
                and sum(e.data.get("sensor") == "coldroom-top" for e in got) >= 3
                and len(got) >= 25
            )
        )
    finally:
        running.stop()
        subscriber.close()
    received = subscriber.distinct()
    assert presigned.canonical_bytes() in [e.canonical_bytes() for e in received]
    results = world.ledger.append(received)
    assert [r.status for r in results] == ["accepted"] * len(received), [
        (r.reason, r.message) for r in results if r.status != "accepted"
    ]
    status = gateway.status()
    assert status["queued"] == 0 and status["delivered"] >= len(received)


def test_dock_attaches_the_gateway_and_the_ledger_accepts_its_readings(tmp_path, world_now):
    world = world_now
    gateway_key = Ed25519PrivateKey.generate()
    world.ok(
        "registrar",
        "enrol",
        None,
        {
            "subject": did_of(gateway_key),
            "type": "device",
            "name": "gw1",
            "owner": world.did("farm"),
        },
    )
    outbox = Outbox(None)
    gateway = GatewaySigner(gateway_key, SeqCounter(tmp_path / "seq-gw"))
    site = GatewaySigner(world.keys["farm"], SeqCounter(tmp_path / "seq-site"))
    site.counter.take(1_000)  # the farm signed seqs 0… with the CLI before (World did)
    intake = Intake(outbox, "provenance/v1/gateways/gw1/events", gateway)
    dock = DockSession(
        lambda kind, lots, data: intake.signed(site, kind, lots, data),
        gateway_did=gateway.did,
    )
    assert dock.handle("(01)09506000134352(10)LOT42").ok
    assert dock.handle("CMD:ATTACH").ok
    assert dock.handle("GATEWAY").ok
    root = fake_w1(tmp_path / "w1", {"28-0000075565a1": W1_OK.format(milli=4125)})
    probes = DS18B20Source(gwconfig.DS18B20Config(name="t", root=root), intake)
    probes.poll()
    probes.poll()
    assert dock.handle(LOT).ok and dock.handle("DETACH GATEWAY").ok
    envelopes = queued(outbox)
    assert [e.kind for e in envelopes] == ["attach", "reading", "reading", "detach"]
    results = world.ledger.append(envelopes)
    assert [r.status for r in results] == ["accepted"] * 4, [r.message for r in results]
    gateway.counter.close()
    site.counter.close()
    outbox.close()


def test_cli_identity_and_errors(tmp_path):
    config = make_config(tmp_path / "gw")
    (tmp_path / "gw" / "keys" / "gateway.pem").unlink()
    runner = CliRunner()
    result = runner.invoke(command, ["--config", str(config), "--identity"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("gateway gw1\tdid:key:z6Mk")
    assert lines[1].startswith("site farm\tdid:key:z6Mk")
    assert oct((tmp_path / "gw" / "keys" / "gateway.pem").stat().st_mode)[-3:] == "600"
    again = runner.invoke(command, ["--config", str(config), "--identity"])
    assert again.output == result.output  # never overwritten
    result = runner.invoke(command, ["--config", str(config), "--broker", "http://x"])
    assert result.exit_code == 1 and "--broker" in result.output
    (tmp_path / "gw" / "keys" / "site.pem").unlink()
    result = runner.invoke(command, ["--config", str(config)])
    assert result.exit_code == 1 and "site.key_file" in result.output
    result = runner.invoke(command, ["--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 1 and "cannot read" in result.output
