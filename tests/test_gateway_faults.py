"""The gateway under faults, on a real broker: kill -9 mid-stream, the broker
restarted mid-stream, and days offline. Nothing acknowledged to a sensor is
ever lost; order is kept; a seq is never reused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.broker import Broker, free_port
from support.gateway import DEADLINE, Running, Subscriber, make_config, post

from devices.outbox import Outbox
from gateway.config import load_config
from gateway.service import Gateway
from provenance.core.signing import did_of, sign
from provenance.core.timefmt import format_time, now_micros

ROOT = Path(__file__).resolve().parent.parent
RUNNER = """\
import sys
from provenance.cli.main import main
main(["gateway", *sys.argv[1:]], prog_name="provenance")
"""


class PersistentBroker(Broker):
    """Mosquitto that keeps its sessions across a restart even when the tests
    run as root: by default it drops to the `mosquitto` user, which cannot write
    its persistence file into pytest's root-only temporary folders, so every
    session would be forgotten on restart (see the note in docs/gateway.md)."""

    def _command(self) -> list[str]:
        command = super()._command()
        if self.kind == "mosquitto" and os.geteuid() == 0:
            config = self.directory / "mosquitto.conf"
            if "\nuser " not in config.read_text():
                config.write_text(config.read_text() + "user root\n")
        return command


@pytest.fixture
def persistent_broker(tmp_path):
    """A broker whose persistent sessions survive `restart()`, `stop()`/`start()`."""
    running = PersistentBroker(tmp_path / "broker")
    if running.kind != "mosquitto":
        pytest.skip("needs Mosquitto: the amqtt fallback forgets sessions on restart")
    running.start()
    yield running
    running.kill()


def readings(first: int, count: int) -> bytes:
    """*count* readings, each from its own sensor name so it can be found again."""
    return json.dumps(
        [
            {"sensor": f"s-{n}", "temperature_c": 4 + (n % 40) / 10}
            for n in range(first, first + count)
        ]
    ).encode()


def wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    """Poll /health until the gateway answers (bounded; the process may still be importing)."""
    deadline = now_micros() + int(DEADLINE * 1e6)
    pause = threading.Event()
    while now_micros() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gateway exited {process.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pause.wait(0.05)  # the port is not open yet
    raise AssertionError(f"gateway did not serve within {DEADLINE}s: {log.read_text()[-3000:]}")


class GatewayProcess:
    """`provenance gateway` in a subprocess, through the real CLI entry point."""

    def __init__(self, directory: Path, config: Path, url: str):
        runner = directory / "runner.py"
        runner.write_text(RUNNER)
        self.log = directory / "gateway.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                [sys.executable, str(runner), "--config", str(config), "--log-level", "debug"],
                stdout=handle,
                stderr=handle,
                env=env,
                cwd=directory,
                start_new_session=True,
            )
        wait_until_serving(url, self.process, self.log)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(DEADLINE)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(DEADLINE + 10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(DEADLINE)
            raise AssertionError(f"no exit after SIGTERM: {self.log.read_text()[-3000:]}") from None


def by_sensor(envelopes):
    return Counter(envelope.data.get("sensor") for envelope in envelopes)


@pytest.mark.slow
def test_kill_9_mid_stream_then_the_outbox_delivers_the_rest(tmp_path, broker):
    port = free_port()
    directory = tmp_path / "gw"
    # A narrow window (2 messages of up to 10 envelopes in flight) keeps a backlog
    # in the outbox, so the kill lands while envelopes wait undelivered.
    config = make_config(
        directory,
        f"[sources.http]\nport = {port}\n",
        broker_url=broker.url,
        extra="max_inflight = 2\nbatch_max = 10\n",
    )
    url = f"http://127.0.0.1:{port}"
    subscriber = Subscriber(broker.url)
    gateway = GatewayProcess(directory, config, url)
    acknowledged = 0
    try:
        status, reply = post(url + "/readings", readings(0, 300))
        assert status == 202 and reply["queued"] == 300
        acknowledged += 300
        assert subscriber.wait_for(lambda got: len(got) > 0, 60), "nothing was delivered"
        # Mid-stream for certain, however fast the machine: the broker is paused
        # (it takes no more PUBLISHes and sends no PUBACKs), so what the sensor
        # is told "queued" next is still in the outbox, some of it in flight,
        # when the gateway dies.
        os.kill(broker.process.pid, signal.SIGSTOP)
        try:
            status, reply = post(url + "/readings", readings(300, 300))
            assert status == 202 and reply["queued"] == 300
            acknowledged += 300
            gateway.kill()  # right after the sensor was told "queued"
        finally:
            os.kill(broker.process.pid, signal.SIGCONT)
        with Outbox(load_config(config).outbox) as outbox:
            left = len(outbox)
        assert left > 0, "the kill came too late to be mid-stream"
        seen_before_restart = len(subscriber.distinct())
        assert seen_before_restart < acknowledged

        gateway = GatewayProcess(directory, config, url)
        for first in range(600, 800, 100):
            assert post(url + "/readings", readings(first, 100))[0] == 202
            acknowledged += 100
        assert subscriber.wait_for(lambda got: len(by_sensor(got)) >= acknowledged, 60)
        assert gateway.terminate() == 0
    finally:
        if gateway.process.poll() is None:
            gateway.kill()
        subscriber.close()

    distinct = subscriber.distinct()
    counts = by_sensor(distinct)
    assert set(counts) == {f"s-{n}" for n in range(acknowledged)}  # nothing lost
    assert set(counts.values()) == {1}  # each reading signed once, never re-signed
    duplicates = len(subscriber.envelopes) - len(distinct)
    assert duplicates <= 2 * 10  # only what was in flight (unacknowledged) at the kill
    seqs = [envelope.seq for envelope in distinct]
    assert len(set(seqs)) == len(seqs)  # no seq reused across the restart
    assert seqs == sorted(seqs)  # and delivered in order
    with Outbox(load_config(config).outbox) as outbox:
        assert len(outbox) == 0
    assert "stopped" in gateway.log.read_text()


def test_broker_restarted_mid_stream_everything_arrives(tmp_path, persistent_broker):
    broker = persistent_broker
    config = make_config(tmp_path / "gw", "[sources.http]\nport = 0\n", broker_url=broker.url)
    subscriber = Subscriber(broker.url, client_id="restart-sub", persistent=True)
    gateway = Gateway(load_config(config))
    running = Running(gateway)
    url = gateway.urls["http"]
    try:
        for batch in range(10):
            if batch == 5:
                assert subscriber.wait_for(lambda got: len(got) >= 100)
                broker.restart()  # sensors keep posting while it is down and coming back
            assert post(url + "/readings", readings(batch * 50, 50))[0] == 202
        assert subscriber.wait_for(lambda got: len(by_sensor(got)) >= 500, 60)
    finally:
        running.stop()
        subscriber.close()
    distinct = subscriber.distinct()
    assert set(by_sensor(distinct)) == {f"s-{n}" for n in range(500)}
    seqs = [envelope.seq for envelope in distinct]
    assert seqs == sorted(seqs)
    assert gateway.uplink.connects >= 2


def test_offline_for_thousands_of_readings_then_all_delivered_in_order(tmp_path, persistent_broker):
    broker = persistent_broker
    # The subscriber's persistent session outlives the outage, so nothing the
    # gateway sends after the broker comes back can slip past it.
    subscriber = Subscriber(broker.url, client_id="offline-sub", persistent=True)
    broker.stop()
    config = make_config(tmp_path / "gw", "[sources.http]\nport = 0\n", broker_url=broker.url)
    gateway = Gateway(load_config(config))
    running = Running(gateway)
    url = gateway.urls["http"]
    logger = Ed25519PrivateKey.generate()  # a logger with its own key, forwarded by the gateway
    expected: list[str] = []
    try:
        for batch in range(6):
            status, reply = post(url + "/readings", readings(batch * 500, 500))
            assert status == 202
            expected += reply["events"]
            presigned = [
                sign(
                    logger,
                    kind="reading",
                    seq=batch * 40 + n,
                    time=format_time(now_micros()),
                    data={"temperature_c": 5},
                ).to_json()
                for n in range(40)
            ]
            status, reply = post(url + "/envelopes", json.dumps(presigned).encode())
            assert status == 202
            expected += reply["events"]
        assert len(gateway.outbox) == len(expected) == 3240
        assert not gateway.uplink.connected.is_set()
        broker.start()
        assert subscriber.wait_for(lambda got: len({e.event_id for e in got}) >= 3240, 60)
    finally:
        running.stop()
        subscriber.close()
    distinct = subscriber.distinct()
    assert [envelope.event_id for envelope in distinct] == expected  # all, in outbox order
    for signer in (gateway.gateway.did, did_of(logger)):
        seqs = [envelope.seq for envelope in distinct if envelope.signer == signer]
        assert seqs == sorted(seqs) and len(seqs) in (3000, 240)
    assert gateway.status()["queued"] == 0
    assert subscriber.messages < 3240  # several envelopes per MQTT message after the outage


def test_sigterm_while_offline_exits_0_and_the_next_start_delivers(tmp_path, broker):
    broker.stop()
    port = free_port()
    directory = tmp_path / "gw"
    config = make_config(directory, f"[sources.http]\nport = {port}\n", broker_url=broker.url)
    url = f"http://127.0.0.1:{port}"
    gateway = GatewayProcess(directory, config, url)
    try:
        assert post(url + "/readings", readings(0, 200))[0] == 202
    finally:
        assert gateway.terminate() == 0
    log = gateway.log.read_text()
    assert "200 envelopes not delivered yet; they stay in" in log
    assert "status: queued 200, delivered 0, connected False" in log

    broker.start()
    subscriber = Subscriber(broker.url)
    restarted = Gateway(load_config(config))
    running = Running(restarted)
    try:
        assert subscriber.wait_for(lambda got: len(by_sensor(got)) >= 200)
    finally:
        running.stop()
        subscriber.close()
    assert set(by_sensor(subscriber.distinct())) == {f"s-{n}" for n in range(200)}
