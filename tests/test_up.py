"""`provenance up`: one site's stack started, supervised and stopped together
(provenance/infra/supervisor.py, provenance/cli/up.py; docs/deploy.md).

Real processes throughout: Mosquitto (or the amqtt fallback, as
provenance.infra.localbroker picks), the ingest service, the web app, the
rules service and the notifier, fed by the fleet simulator."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from support.children import Family, assert_nothing_left
from support.ingest_process import wait_until

from provenance.infra.supervisor import Service, Supervisor

pytestmark = pytest.mark.external
START = 90.0  # seconds for the whole stack to come up on a loaded machine


def _ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _provenance(site: Path, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "provenance", "--db", str(site / "provenance.db")]
    return subprocess.run(
        [*command, "--keys", str(site / "keys"), *args],
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", 120),
        cwd=site,
        **kw,
    )


def _status(site: Path) -> dict:
    try:
        return json.loads((site / "stack" / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _services(site: Path) -> dict[str, dict]:
    return {s["name"]: s for s in _status(site).get("services", [])}


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
        return json.loads(response.read())


class Up:
    """`provenance up` in the background in *site*, reaped by a thread."""

    def __init__(self, site: Path, *args: str):
        web, broker, metrics = _ports(3)
        self.site, self.web, self.broker = site, web, broker
        command = [sys.executable, "-m", "provenance", "--db", str(site / "provenance.db")]
        command += ["--keys", str(site / "keys"), "up", "--port", str(web)]
        command += ["--broker-port", str(broker), "--metrics-port", str(metrics), *args]
        self.output = site / "up.out"
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=out, cwd=site)
        self.family = Family(self.process.pid)
        self.code: int | None = None
        self._reaper = threading.Thread(target=self._reap, daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        self.code = self.process.wait()

    def wait(self, timeout: float) -> int:
        self._reaper.join(timeout)
        assert self.code is not None, f"provenance up still runs: {self.text()}"
        return self.code

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self._reaper.join(30)


def test_the_stack_runs_restarts_a_killed_service_and_stops_clean(tmp_path):
    up = Up(tmp_path)
    try:

        def running() -> bool:
            up.family.look()
            services = _services(tmp_path)
            assert up.process.poll() is None, up.text()
            return bool(services) and all(s["state"] == "running" for s in services.values())

        wait_until(running, START, "every service of the stack running")
        names = set(_services(tmp_path))
        assert names == {"broker", "ingest", "serve", "rules", "notify"}, up.text()
        local = f"http://127.0.0.1:{up.web}"
        assert _get(local + "/healthz") == {"status": "ok"}
        before = _get(local + "/readyz")["log_size"]

        # Data flows: the fleet publishes through the stack's broker; the
        # stack's ingest commits it; the stack's web app sees it.
        fleet = _provenance(
            tmp_path, "simulate", "--broker", f"mqtt://127.0.0.1:{up.broker}",
            "--gateways", "1", "--devices", "2", "--rate", "50", "--duration", "2",
        )  # fmt: skip
        assert fleet.returncode == 0, fleet.stderr
        wait_until(lambda: _get(local + "/readyz")["log_size"] > before + 10, 60, "commits")

        # A second `up` in the same folder is refused, naming the first.
        again = _provenance(tmp_path, "up", "--port", str(_ports(1)[0]))
        assert again.returncode == 1 and "already running" in again.stderr, again.stderr
        assert "Traceback" not in again.stderr

        # kill -9 of the ingest service: started again, the stack keeps serving.
        killed = _services(tmp_path)["ingest"]["pid"]
        os.kill(killed, signal.SIGKILL)

        def restarted() -> bool:
            up.family.look()
            ingest = _services(tmp_path)["ingest"]
            return ingest["restarts"] == 1 and ingest["state"] == "running"

        wait_until(restarted, START, "the ingest service started again")
        assert _services(tmp_path)["ingest"]["pid"] != killed
        status = _provenance(tmp_path, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "ingest      running" in status.stdout and "1 restarts" in status.stdout

        # `down` stops it all: every process gone, nothing holds the ledger.
        up.family.look()
        down = _provenance(tmp_path, "down")
        assert down.returncode == 0 and "stopped provenance up" in down.stdout, down.stderr
        assert up.wait(60) == 0, up.text()
        assert_nothing_left(up.family, 30, ledger=tmp_path / "provenance.db")
        stopped = _provenance(tmp_path, "status")
        assert stopped.returncode == 1 and "not running" in stopped.stdout
    finally:
        up.stop()


def test_kill_9_of_up_takes_the_whole_stack_with_it(tmp_path):
    up = Up(tmp_path)
    try:
        wait_until(
            lambda: (
                bool(up.family.look())
                and _services(tmp_path).get("notify", {}).get("state") == "running"
            ),
            START,
            "the stack running",
        )
        up.family.look()
        up.process.kill()
        up.wait(30)
        assert_nothing_left(up.family, 30, ledger=tmp_path / "provenance.db")
    finally:
        up.stop()


def test_a_service_that_falls_over_at_start_stops_the_stack_with_its_log(tmp_path):
    bad = tmp_path / "rules.toml"
    bad.write_text("version = 1\n[[rules]]\nname = 'x'\n")  # no condition, no actions
    up = Up(tmp_path, "--rules", str(bad))
    try:
        code = up.wait(START)
        text = up.text()
        assert code == 1, text
        assert "Error: rules exited at start" in text and "rules.log" in text, text
        assert "Traceback" not in text.split("Error:")[-1]
        assert_nothing_left(up.family, 30, ledger=tmp_path / "provenance.db")
        assert _services(tmp_path)["broker"]["state"] == "stopped"
    finally:
        up.stop()


def test_a_service_that_keeps_failing_stops_the_supervisor(tmp_path):
    """Exits after it started (past the start grace): started again with a
    back-off, then the stack gives up and says which service and where its log is."""
    flapping = Service(
        "flapping",
        [sys.executable, "-c", "import time, sys; time.sleep(1.3); sys.exit(3)"],
        tmp_path / "flapping.log",
    )
    steady = Service(
        "steady", [sys.executable, "-c", "import time; time.sleep(120)"], tmp_path / "steady.log"
    )
    supervisor = Supervisor([steady, flapping], tmp_path / "status.json", max_restarts=1)
    supervisor.start()
    stop = threading.Event()
    timer = threading.Timer(60, stop.set)  # bound: the test fails below if this fires
    timer.start()
    try:
        code = supervisor.run(stop)
    finally:
        timer.cancel()
    assert code == 1 and not stop.is_set()
    assert supervisor.failure.startswith("flapping exited 2 times within 300 s (last exit 3)")
    assert str(tmp_path / "flapping.log") in supervisor.failure
    status = json.loads((tmp_path / "status.json").read_text())
    assert {s["name"]: s["state"] for s in status["services"]} == {
        "steady": "stopped",
        "flapping": "failed",
    }
    assert flapping.restarts == 1
    assert steady.process.poll() is not None  # stopped with the stack
    assert "starting again in 1 s" in (tmp_path / "flapping.log").read_text()
