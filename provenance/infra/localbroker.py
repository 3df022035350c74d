"""A local MQTT broker on a free loopback port, for the demo, benchmarks and
tests, and the one-site broker of `provenance up` (Mosquitto on a fixed port,
persistent and durable; docs/deploy.md). Past one site, run a real,
configured broker or cluster (docs/ingest.md and docs/deploy.md say what to set).

Mosquitto when it is installed (`./run tests` installs the Debian package when
it is missing and it runs as root); otherwise the embedded amqtt broker (MQTT
3.1.1 only, no persistence across restarts). `PROVENANCE_TEST_BROKER=amqtt`
forces the fallback.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from provenance.infra import lifeline

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
START_DEADLINE = 15.0


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((path for path in MOSQUITTO_PATHS if os.access(path, os.X_OK)), None)


def broker_kind() -> str:
    forced = os.environ.get("PROVENANCE_TEST_BROKER")
    if forced:
        return forced
    return "mosquitto" if mosquitto_binary() else "amqtt"


def describe() -> str:
    kind = broker_kind()
    if kind == "mosquitto":
        binary = mosquitto_binary()
        version = subprocess.run(
            [binary, "-h"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.splitlines()[:1]
        return f"broker: {version[0] if version else 'mosquitto'} ({binary})"
    return "broker: amqtt (embedded fallback: mosquitto is not installed; MQTT 3.1.1 only)"


class BrokerUnavailable(RuntimeError):
    """This machine cannot run the broker asked for."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """One broker process. `url` is mqtt://127.0.0.1:PORT; stop/kill/start keep
    the port and (for Mosquitto) the persistence file, so sessions survive."""

    def __init__(
        self,
        directory: Path,
        *,
        users: dict[str, str] | None = None,
        durable: bool = False,
        host: str = "127.0.0.1",
        port: int | None = None,
    ):
        """*durable*: Mosquitto saves its state after every change (a queued
        message, a subscription), not once a second, so a kill -9 of the broker
        loses nothing it acknowledged; it costs a write per message, so the
        demo and the benchmarks leave it off (docs/ingest.md, "Broker")."""
        self.kind = broker_kind()
        self.durable = durable
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = free_port() if port is None else port
        self.users = users or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.directory / "broker.log"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def mqtt5(self) -> bool:
        return self.kind == "mosquitto"

    def command(self) -> list[str]:
        """The broker's command line (its configuration written into the folder)."""
        return self._command()

    def _command(self) -> list[str]:
        if self.kind == "mosquitto":
            config = self.directory / "mosquitto.conf"
            lines = [
                f"listener {self.port} {self.host}",
                "persistence true",
                f"persistence_location {self.directory}/",
                "autosave_interval 1",  # seconds; with durable: changes
                *(["autosave_on_changes true"] if self.durable else []),
                # An ack-after-commit subscriber needs a deep queue and window:
                # the defaults (1000 queued, 20 in flight) drop or throttle.
                "max_queued_messages 0",
                "max_inflight_messages 0",
                "max_packet_size 1048576",
                "set_tcp_nodelay true",  # else Nagle delays deliveries by 10+ ms
                f"log_dest file {self.log}",
                # As root, Mosquitto drops to the mosquitto user, which cannot write its
                # persistence file into pytest's root-only folders: stay root here.
                *(["user root"] if os.geteuid() == 0 else []),
                "log_type error",
                "log_type warning",
                "log_type notice",
            ]
            if self.users:
                passwords = self.directory / "passwords"
                passwords.write_text("")
                for user, password in self.users.items():
                    subprocess.run(
                        ["mosquitto_passwd", "-b", str(passwords), user, password],
                        check=True,
                        capture_output=True,
                        timeout=10,
                    )
                lines += ["allow_anonymous false", f"password_file {passwords}"]
            else:
                lines.append("allow_anonymous true")
            config.write_text("\n".join(lines) + "\n")
            return [mosquitto_binary() or "mosquitto", "-c", str(config)]
        config = self.directory / "amqtt.yaml"
        config.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: {self.host}:{self.port}\n"
            "auth:\n  allow-anonymous: true\n  plugins: ['auth_anonymous']\n"
        )
        return [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(config)]

    def start(self) -> Broker:
        if self.kind == "amqtt" and self.users:
            raise BrokerUnavailable("password checks need Mosquitto (amqtt fallback in use)")
        # Stopped (SIGTERM) when we go, whatever ends us (provenance.infra.lifeline): the
        # thread that starts it must outlive it, as the demo's and a test's main thread do.
        command = lifeline.command(self._command())
        with self.log.open("ab") as handle:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                command, stdout=handle, stderr=handle, start_new_session=True
            )
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited at start: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.02)  # polling a port that is not open yet; bounded by the deadline
        self.kill()
        raise RuntimeError(f"{self.kind} did not listen on {self.port} within {START_DEADLINE}s")

    def stop(self) -> None:
        """Graceful stop (Mosquitto writes its persistence file)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
