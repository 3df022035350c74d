"""`provenance ingest` as a process in tests (test_ingest_faults,
test_orphans): a ledger on disk with its log key, the process with its output
watched line by line and its children tracked, a paced publisher thread, and a
poll with a deadline for another process's state."""

from __future__ import annotations

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
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from paho.mqtt.enums import CallbackAPIVersion

from provenance.core import topics
from provenance.infra.keystore import KeyStore
from provenance.store.db import Store
from support.children import Family, assert_nothing_left
from support.paths import ROOT
from support.world import World

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

    def __init__(
        self,
        ledger: Ledger,
        url: str,
        *extra: str,
        env: dict[str, str] | None = None,
        alone: bool = True,
    ):
        """*alone*: no other process writes the ledger, so once this one is
        gone nothing may hold it open (with several nodes, the others do)."""
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
        self.alone = alone
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
        assert_nothing_left(self.family, GONE, self.ledger.db if self.alone else None)
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


def wire(envelope: Any) -> bytes:
    return json.dumps(envelope.to_json()).encode()
