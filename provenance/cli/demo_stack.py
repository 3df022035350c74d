"""What the demo's running system is made of, started and stopped.

The witnesses (each its own `provenance witness serve` process) and the
witnessing service, a local MQTT broker, the ingest service fed by a
simulated fleet, and the web app with its scan pages checked; each started
in the background with its log in the demo folder and stopped, in reverse
order, by `Running` however the demo ends. `Listener` is where the web app
listens and the URLs that reach it (a free port, the LAN address when it
listens everywhere). Every wait here is bounded and fails with a pointer to
the log of what did not come up.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from provenance.cli.demo_story import FINE_URI, LOT_URI, REGULATOR, SALAD_URI, Demo
from provenance.store.db import Store

DEFAULT_HOST = "127.0.0.1"  # loopback: only this machine; --host 0.0.0.0 for a phone
DEFAULT_PORT = 8080  # when free, else any free port


class Running(contextlib.ExitStack):
    """What the demo started, stopped in reverse order however it ends."""

    serving = False  # set once everything is up: a stop from then on is the normal end


class Listener:
    """Where the web app listens and the URLs that reach it."""

    def __init__(self, host: str, port: int | None):
        self.host = host
        self.port = _free_port(DEFAULT_PORT, host) if port is None else _own_port(port, host)
        everywhere = host in ("0.0.0.0", "::", "")
        # the demo's own checks go through loopback when it listens everywhere
        loopback = "::1" if host == "::" else "127.0.0.1"
        self.local = f"http://{url_host(loopback if everywhere else host)}:{self.port}"
        shown = _lan_address() if everywhere else host
        self.base = os.environ.get("PROVENANCE_BASE_URL") or (
            f"http://{url_host(shown)}:{self.port}"
        )
        self.everywhere = everywhere

    def scan_url(self, uri: str) -> str:
        return self.base.rstrip("/") + uri.removeprefix("https://id.gs1.org")

    def local_url(self, uri: str) -> str:
        return self.local + uri.removeprefix("https://id.gs1.org")


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def live(demo: Demo, directory: Path, seconds: float, running: contextlib.ExitStack) -> str:
    """The running system: witnesses, broker, ingest service, simulated gateways.
    The witnesses, broker and ingest stay up (stopped with *running*); the
    broker's URL."""
    from provenance.infra.localbroker import Broker, describe

    demo.say(
        "12. The running system: two outside witnesses cosigning the log, a local MQTT "
        "broker, the ingest service, and a fleet of simulated gateways whose sensors and "
        "dock scanners feed the real gateway code"
    )
    witnesses(demo, directory, running)
    print(f"  {describe()}")
    broker = Broker(directory / "broker").start()
    running.callback(broker.stop)
    ready = directory / "ingest.ready"
    ingest = _background(
        demo, directory / "ingest.log", "ingest", "--broker", broker.url, "--ready-file", str(ready)
    )
    running.callback(_stop_ingest, ingest)
    # An MQTT broker drops what nobody has subscribed to yet: start the fleet
    # only once the ingest service says it holds its subscriptions.
    if not _wait_for_file(ready, ingest, 60):
        raise SystemExit(f"the ingest service did not subscribe; see {directory}/ingest.log")
    demo.stream(
        "simulate", "--broker", broker.url, "--scenario", "vaccine", "--gateways", "6",
        "--devices", "24", "--rate", "200", "--duration", str(seconds), "--accelerate", "7200",
        "--excursions", "0.5", "--offline", "0.3",
    )  # fmt: skip
    print(f"  the fleet is done; the ingest service keeps listening on {broker.url}")
    demo.run("stats")
    demo.run("verify")
    return broker.url


def _stop_ingest(ingest: subprocess.Popen[bytes]) -> None:
    code = _stop(ingest)
    print(f"  ingest stopped (exit {code}) after committing what was in flight", flush=True)


WITNESSES = (  # (name on the scan page, key name, folder)
    (REGULATOR, "witness.health-authority.example/1", "witness-regulator"),
    ("Consumers' Association", "witness.consumers.example/1", "witness-consumers"),
)
WITNESS_CADENCE_S = 1.0  # the demo's witnessing rounds (production: 10 s or more)


def witnesses(demo: Demo, directory: Path, running: contextlib.ExitStack) -> None:
    """The regulator's and a consumer association's witness, each its own process
    with its own folder and key (`provenance witness serve`), and the witnessing
    service that has them cosign the log's checkpoints; stopped with *running*."""
    log_key = demo.run("log", "key", "--note-key").strip()
    options, policy = [], [f"log {log_key}"]
    for name, key_name, folder in WITNESSES:
        where = str(directory / folder)
        vkey = demo.run("witness", "init", "--dir", where, "--name", key_name).strip()
        demo.run("witness", "add-log", "--dir", where, "--key", log_key)
        port = _free_port(0, host="127.0.0.1")
        url = f"http://127.0.0.1:{port}"
        process = _background(
            demo,
            directory / f"{folder}.log",
            "witness", "serve", "--dir", where, "--host", "127.0.0.1", "--port", str(port),
        )  # fmt: skip
        running.callback(_stop, process)
        _wait_for_port(port, process, 30)
        options += ["--witness", f"{name}={url}={vkey}"]
        policy.append(f"witness {folder} {vkey} {url}")
    policy += [f"group both all {' '.join(f for _, _, f in WITNESSES)}", "quorum both"]
    (directory / "witnesses.policy").write_text("\n".join(policy) + "\n")
    service = _background(
        demo,
        directory / "witnessing.log",
        "log", "witness", "--every", f"{WITNESS_CADENCE_S:g}", *options,
    )  # fmt: skip
    running.callback(_stop, service)
    print(f"  a policy requiring both witnesses: {directory / 'witnesses.policy'}")


def _background(demo: Demo, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`provenance ARGS` in the background, its log in *log*."""
    print("$ provenance " + " ".join(shlex.quote(a) for a in args) + f" &   (log: {log})")
    return subprocess.Popen(
        [sys.executable, "-m", "provenance", *args],
        env=demo.env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def _stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, and SIGKILL if it has not gone within 30 s; its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=10)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait (bounded) until something listens on loopback *port*; fail if *process* dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)  # still starting; bounded by the deadline
    raise SystemExit(f"a witness did not listen on port {port}; see its log in the demo folder")


def _wait_for_witnesses(directory: Path, timeout: float) -> tuple[int, tuple[str, ...]]:
    """Wait (bounded) until the ledger shows its newest checkpoint cosigned by the
    quorum; (size, cosigners) of the one shown then."""
    from provenance.store.cosignatures import shown_checkpoint

    deadline = time.monotonic() + timeout
    store = Store(directory / "provenance.db", create=False, readonly=True)
    try:
        while True:
            shown = shown_checkpoint(store)
            if shown is not None and shown.witnessed and shown.size == store.log_size():
                return shown.size, shown.cosigners
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"the witnesses did not cosign the newest checkpoint in {timeout:.0f} s; "
                    "see witnessing.log in the demo folder"
                )
            time.sleep(0.2)  # the next witnessing round; bounded by the deadline
    finally:
        store.close()


def _wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait (bounded) until `process` has written its ready file: one naming
    its own pid, not one a killed earlier run left behind (docs/ingest.md)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == process.pid:
                return True
        except (OSError, ValueError, AttributeError):
            pass  # not written yet (it is renamed into place whole)
        time.sleep(0.1)  # bounded by the deadline
    return False


def scan(
    demo: Demo, directory: Path, place: Listener, running: contextlib.ExitStack
) -> subprocess.Popen[bytes]:
    """The consumer's side: the web app, up and answering, its scan pages checked."""
    demo.say("13. Scan it: the resolver and the consumer pages of the kale and the salad")
    args = ["serve", "--host", place.host, "--port", str(place.port), "--base-url", place.base]
    server = _background(demo, directory / "serve.log", *args)
    running.callback(_stop, server)
    size, cosigners = _wait_for_witnesses(directory, 60)
    checkpoint = _fetch_when_up(f"{place.local}/log/v1/checkpoint", server, 30)
    lines = checkpoint.split("\n\n", 1)[1].splitlines()
    print(
        f"  GET /log/v1/checkpoint  ->  size {size}, signed by the log and cosigned by "
        f"{len(lines) - 1} witnesses: {', '.join(cosigners)}"
    )
    kept = directory / "cosigned.checkpoint"
    kept.write_text(checkpoint)
    policy = str(directory / "witnesses.policy")
    demo.run("verify", "--checkpoint", str(kept), "--policy", policy)
    # A shopper's offline check: the salad's proof bundle carries that cosigned
    # checkpoint, so the same policy (both witnesses) verifies it with no database.
    bundle = directory / "salad.bundle.json"
    bundle.write_text(demo.run("export", "proof", SALAD_URI, show=1))
    demo.run("verify", "--bundle", str(bundle), "--policy", policy)
    for uri in (LOT_URI, SALAD_URI, FINE_URI):
        local = place.local_url(uri)
        status = json.loads(_fetch_when_up(local, server, 30, accept="application/json"))
        print(f"  GET {local}  ->  state: {status['state']}")
        for record in status["recall"]["recalls"]:
            source = "" if record["direct"] else f" (made from {record['source']})"
            print(f"    recalled{source}: {record['reason']}")
    page = _fetch_when_up(place.local_url(SALAD_URI), server, 30, accept="text/html")
    found = re.search(r'<li class="witnesses">(.*?)</li>', page, re.S)
    shown = html.unescape(found.group(1)).strip() if found else "no witnesses named"
    print(f"  the salad's page, record check: {shown}")
    return server


def _own_port(port: int, host: str) -> int:
    """*port* when it is free on *host*; else a clear error."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port "
                "or leave it out to take a free one"
            ) from None
    return port


def _free_port(preferred: int, host: str = "0.0.0.0") -> int:
    """*preferred* when it is free, else any free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in (preferred, 0):
        with socket.socket(family) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise click.ClickException(f"no free TCP port on {host} for the web app; check --host")


def _lan_address() -> str:
    """This machine's address on its network, for a phone to reach; loopback if
    none. (Connecting a UDP socket sends nothing: it only picks a route.)"""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    return address if not address.startswith("0.") else "127.0.0.1"


def _fetch_when_up(
    url: str, process: subprocess.Popen[bytes], timeout: float, accept: str = "*/*"
) -> str:
    """GET *url* once the server answers (bounded); fail if it dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("provenance serve stopped; see serve.log in the demo folder")
        request = urllib.request.Request(url, headers={"Accept": accept})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # loopback only
                return response.read().decode("utf-8")
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)  # the server is still starting; bounded by the deadline
    raise SystemExit(f"provenance serve did not answer within {timeout:.0f} s")
