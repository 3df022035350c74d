"""`provenance ingest` as a real process under faults: kill -9 mid-stream,
broker restarts, SIGTERM, refused credentials. The ledger must end up with
exactly the published readings: 0 lost, 0 duplicated.

The service runs through a small runner script that registers the command on
`provenance.cli.main` (the owner registers it for real). Cross-process waits
poll the database or watch the service's log lines, always with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from children import Family, assert_nothing_left
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from paho.mqtt.enums import CallbackAPIVersion
from world import World

from provenance.core import topics
from provenance.infra.keystore import KeyStore
from provenance.ledger.audit import verify_ledger
from provenance.store.db import Store

ROOT = Path(__file__).resolve().parent.parent
RUNNER = """\
import sys
from provenance.cli.main import main
main(prog_name="provenance")
"""
READY = 20.0
SETTLE = 60.0
GONE = 10.0  # the processes an ingest started are gone this soon after it
TOPIC = topics.events_topic("gateways", "truck7")


class Ledger:
    """The test's ledger on disk: a world, its log key in a keys folder."""

    def __init__(self, directory: Path):
        world = World.create(directory)
        self.db = directory / "ledger.db"
        self.keys = directory / "keys"
        path = KeyStore(self.keys).path("log")
        self.keys.mkdir(mode=0o700)
        pem = world.log_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        self.runner = directory / "run_provenance.py"
        self.runner.write_text(RUNNER)
        self.world = world
        self.log_public_key = world.log_public_key

    def readings(self, count: int) -> list[Any]:
        return [self.world.reading(1 + i / 10_000, 4.0 + i % 5) for i in range(count)]

    def close_writer(self) -> None:
        """The ingest process writes from here on; we only read."""
        self.world.ledger.close()
        self.world.store.close()

    def stored(self) -> list[tuple[str, int]]:
        store = Store(self.db, readonly=True)
        try:
            return [
                (e.envelope.signer, e.envelope.seq)
                for e in store.events()
                if e.envelope.kind == "reading"
            ]
        finally:
            store.close()

    def count(self) -> int:
        store = Store(self.db, readonly=True)
        try:
            return store.stats()["events"].get("reading", 0)
        finally:
            store.close()


class Ingest:
    """One `provenance ingest` process; its output is watched line by line."""

    def __init__(self, ledger: Ledger, url: str, *extra: str, env: dict[str, str] | None = None):
        command = [sys.executable, str(ledger.runner), "--db", str(ledger.db)]
        command += ["--keys", str(ledger.keys), "ingest", "--broker", url]
        command += ["--client-id", "faults-ingest", *extra]
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        self.ledger = ledger
        self.family = Family(self.process.pid)  # what it started: none may outlive it
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip())
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<eof>")
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = READY) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self.lines):
                remaining = deadline - time.monotonic()
                assert remaining > 0 and "<eof>" not in self.lines, (
                    f"no {text!r} from ingest:\n{self.output}"
                )
                self._changed.wait(remaining)
        self.family.look()

    def kill9(self) -> None:
        """SIGKILL: nothing it started may be left, nor hold the ledger."""
        self.family.look()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(READY)
        self.assert_nothing_left()

    def terminate(self) -> int:
        self.family.look()
        self.process.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self, timeout: float = SETTLE) -> int:
        code = self.process.wait(timeout)
        self.assert_nothing_left()
        return code

    def assert_nothing_left(self) -> None:
        assert_nothing_left(self.family, GONE, self.ledger.db)
        self._reader.join(READY)  # EOF: no process of its is left holding its output
        assert not self._reader.is_alive(), "something still holds the ingest's output"

    def close(self) -> None:
        if self.process.poll() is None:
            self.family.look()
            self.process.kill()
            self.process.wait(READY)
        try:
            self.assert_nothing_left()
        finally:
            if self.process.stdout:
                self.process.stdout.close()


class Stream(threading.Thread):
    """Publishes payloads QoS 1 from its own thread, about `rate` a second,
    through a plain paho client that reconnects by itself;
    `wait_acknowledged` returns once the broker has acknowledged them all."""

    CHUNK = 25

    def __init__(self, broker: Any, payloads: list[bytes], rate: float = 800.0):
        super().__init__(name="stream-publisher", daemon=True)
        self.payloads = payloads
        self.interval = self.CHUNK / rate
        self._halt = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="stream",
            protocol=mqtt.MQTTv5 if broker.mqtt5 else mqtt.MQTTv311,
        )
        self.client.max_inflight_messages_set(50)
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.5)
        self.acknowledged = 0
        self._changed = threading.Condition()
        self.client.on_publish = self._on_publish
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_publish(self, *_args: Any) -> None:
        with self._changed:
            self.acknowledged += 1
            self._changed.notify_all()

    def run(self) -> None:
        for offset in range(0, len(self.payloads), self.CHUNK):
            for payload in self.payloads[offset : offset + self.CHUNK]:
                self.client.publish(TOPIC, payload, qos=1)
            if self._halt.wait(self.interval):  # pacing, so that faults land mid-stream
                return

    def wait_acknowledged(self, timeout: float = SETTLE) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.acknowledged < len(self.payloads):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{self.acknowledged} of {len(self.payloads)} acknowledged"
                self._changed.wait(remaining)

    def close(self) -> None:
        self._halt.set()
        self.join(READY)
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll another process's state (the database) until *predicate* holds."""
    tick = threading.Event()  # never set: its wait is the polling interval
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        tick.wait(0.05)


def needs_redelivery(broker: Any) -> None:
    if broker.kind != "mosquitto":
        pytest.skip(
            "amqtt (the fallback broker) resumes a session without redelivering its "
            "unacknowledged or queued messages, so nothing can be guaranteed across a restart"
        )


def wire(envelope: Any) -> bytes:
    return json.dumps(envelope.to_json()).encode()


@pytest.fixture
def ledger(tmp_path):
    made = Ledger(tmp_path)
    yield made


@pytest.fixture
def processes():
    """The ingest processes a test starts; at the end each is killed if it
    still runs, and none may have left a process of its own behind."""
    running: list[Ingest] = []
    yield running
    with contextlib.ExitStack() as closing:  # every one is closed, the first failure raised
        for ingest in running:
            closing.callback(ingest.close)


def start(processes: list[Ingest], ledger: Ledger, url: str, *extra: str, **kw: Any) -> Ingest:
    ingest = Ingest(ledger, url, *extra, **kw)
    processes.append(ingest)
    return ingest


def assert_exactly(ledger: Ledger, published: list[Any]) -> None:
    stored = ledger.stored()
    assert len(stored) == len(set(stored)), "a reading is stored twice"
    assert sorted(stored) == sorted((e.signer, e.seq) for e in published)
    store = Store(ledger.db, readonly=True)
    try:
        assert store.stats()["rejects"] == {}
        report = verify_ledger(store, ledger.log_public_key)
        assert report.ok, report.problems[:3]
    finally:
        store.close()


def stream_to_ingest(
    ledger: Ledger, broker: Any, processes: list[Ingest], count: int
) -> tuple[list[Any], Ingest, Stream]:
    """*count* readings, published paced (so that a fault lands mid-stream) to
    one ingest process that has subscribed; the test's writer is closed first."""
    published = ledger.readings(count)
    ledger.close_writer()
    ingest = start(processes, ledger, broker.url)
    ingest.wait_for_line("subscribed to")
    stream = Stream(broker, [wire(e) for e in published])
    stream.start()
    return published, ingest, stream


def assert_all_taken_in(
    ledger: Ledger, ingest: Ingest, stream: Stream, published: list[Any]
) -> None:
    """Once the broker has acknowledged the stream and *ingest* has committed
    every reading, *ingest* stops on SIGTERM with 0 and the ledger holds exactly
    the published readings."""
    stream.wait_acknowledged()
    wait_until(lambda: ledger.count() >= len(published), SETTLE, "every reading")
    # On a loaded machine the ingest killed last may have committed everything
    # already, and its successor may still be starting: a SIGTERM before its
    # handlers are in place would end it with -15, which proves nothing.
    ingest.wait_for_line("subscribed to")
    assert ingest.terminate() == 0, ingest.output
    stream.close()
    assert_exactly(ledger, published)


# --- the tests


@pytest.mark.slow
def test_kill_9_mid_stream_loses_and_duplicates_nothing(ledger, broker, processes):
    needs_redelivery(broker)
    published, ingest, stream = stream_to_ingest(ledger, broker, processes, 3000)
    for fraction in (0.15, 0.4, 0.65):
        wait_until(
            lambda f=fraction: ledger.count() >= f * len(published), SETTLE, f"{fraction:.0%}"
        )
        ingest.kill9()
        ingest = start(processes, ledger, broker.url)
    assert_all_taken_in(ledger, ingest, stream, published)


@pytest.mark.slow
def test_broker_restart_mid_stream_loses_and_duplicates_nothing(ledger, broker, processes):
    needs_redelivery(broker)
    published, ingest, stream = stream_to_ingest(ledger, broker, processes, 2500)
    wait_until(lambda: ledger.count() >= 0.3 * len(published), SETTLE, "30% committed")
    broker.restart()
    assert_all_taken_in(ledger, ingest, stream, published)
    assert "connection lost" in ingest.output


@pytest.mark.slow
def test_sigterm_commits_what_is_in_flight_and_exits_0(ledger, broker, processes):
    needs_redelivery(broker)
    published, ingest, stream = stream_to_ingest(ledger, broker, processes, 2000)
    wait_until(lambda: ledger.count() >= 0.3 * len(published), SETTLE, "30% committed")
    assert ingest.terminate() == 0, ingest.output
    output = ingest.output
    assert "SIGTERM: finishing what is in flight" in output
    assert " 0 in flight)" in output  # drained: nothing received was left uncommitted
    stream.wait_acknowledged()
    again = start(processes, ledger, broker.url)  # the broker kept the rest for our session
    again.wait_for_line("subscribed to")
    assert_all_taken_in(ledger, again, stream, published)


def test_refused_credentials_exit_3_quickly_with_a_clear_message(ledger, tmp_path, processes):
    from broker import Broker

    guarded = Broker(tmp_path / "auth-broker", users={"ingest": "s3cret"}).start()
    try:
        ledger.close_writer()
        for extra in (["--username", "ingest", "--password", "wrong"], []):
            started = time.monotonic()
            ingest = start(processes, ledger, guarded.url, *extra)
            assert ingest.wait(READY) == 3, ingest.output
            assert time.monotonic() - started < 15
            assert "refused" in ingest.output and "--password" in ingest.output
        good = start(
            processes,
            ledger,
            guarded.url,
            "--username",
            "ingest",
            env={"PROVENANCE_MQTT_PASSWORD": "s3cret"},
        )
        good.wait_for_line("subscribed to")
        assert good.terminate() == 0, good.output
    finally:
        guarded.kill()


def test_ready_file_is_written_once_subscribed_and_removed_on_exit(
    ledger, broker, processes, tmp_path
):
    ready = tmp_path / "run" / "ingest.ready"
    ready.parent.mkdir()
    ready.write_text("stale: a killed run left this")  # must not pass for ready
    ledger.close_writer()
    ingest = start(processes, ledger, broker.url, "--ready-file", str(ready))
    wait_until(lambda: _ready_content(ready) is not None, READY, "the ready file")
    content = _ready_content(ready)
    assert content == {
        "pid": ingest.process.pid,
        "broker": broker.url,
        "topics": list(topics.EVENT_FILTERS),
        "started": content["started"],
    }
    assert content["started"].endswith("Z") and "subscribed to" in ingest.output
    assert sorted(p.name for p in ready.parent.iterdir()) == ["ingest.ready"]  # no temp file
    assert ingest.terminate() == 0, ingest.output
    assert not ready.exists()


def _ready_content(path: Path) -> dict[str, Any] | None:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not there yet, or still the stale text
    return content if isinstance(content, dict) else None
