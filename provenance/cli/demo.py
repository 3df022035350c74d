"""`provenance demo`: a narrated end-to-end walkthrough of the real CLI.

Every step runs the actual `provenance` command in a subprocess against a
fresh ledger in the demo folder, prints the command and what it said. It
tampers with copies of the database and shows `provenance verify` catch each
change, starts the live system (witnesses, broker, ingest, a simulated fleet)
and the web app, and then *is* the running system: it prints the scan pages'
URLs (a lot that is simply fine among them) and a QR code, and keeps
everything up until it is stopped (Ctrl-C, SIGTERM), with or without a
terminal. It only prints a URL once that URL answers.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from provenance.core.timefmt import format_time, now_micros
from provenance.infra import lifeline
from provenance.store.db import Store

GTIN = "09506000134352"
PREFIX = "9506000"  # its GS1 company prefix: what the farm is enrolled to commission under
COPYCAT = "Copycat Greens"  # another brand (prefix 9520123) trying the farm's GTIN
LOT = "KALE-2611"
LOT_URI = f"https://id.gs1.org/01/{GTIN}/10/{LOT}"
FARM, CARRIER, REGULATOR, PROBE = "Green Valley Farm", "Cold Express", "Health Authority", "truck7"
REGULATOR_KEY_FILE = "regulator-own-machine.pem"  # stands for the regulator's own machine
PROCESSOR = "Fresh Cuts"
SALAD = "SALAD-2611"
SALAD_URI = f"https://id.gs1.org/01/{GTIN}/10/{SALAD}"
FINE = "KALE-2612"  # a lot that is simply fine: something normal to compare with
FINE_URI = f"https://id.gs1.org/01/{GTIN}/10/{FINE}"
FINE_PROBE = "truck9"
HOUR = 3_600_000_000
DEFAULT_HOST = "127.0.0.1"  # loopback: only this machine; --host 0.0.0.0 for a phone
DEFAULT_PORT = 8080  # when free, else any free port
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """SIGTERM or SIGINT: shut everything down cleanly (not an Exception, so
    that no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, _frame: object) -> None:
    for each in STOP_SIGNALS:  # once: a second signal must not cut the shutdown short
        signal.signal(each, signal.SIG_IGN)
    raise Stopped(signum)


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
        self.local = f"http://{_url_host(loopback if everywhere else host)}:{self.port}"
        shown = _lan_address() if everywhere else host
        self.base = os.environ.get("PROVENANCE_BASE_URL") or (
            f"http://{_url_host(shown)}:{self.port}"
        )
        self.everywhere = everywhere

    def scan_url(self, uri: str) -> str:
        return self.base.rstrip("/") + uri.removeprefix("https://id.gs1.org")

    def local_url(self, uri: str) -> str:
        return self.local + uri.removeprefix("https://id.gs1.org")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Demo:
    def __init__(self, directory: Path):
        self.directory = directory.resolve()
        # Every command it starts (`python -m provenance …`) dies with the demo,
        # whatever ends it (provenance.infra.lifeline).
        self.env = lifeline.child_env(
            {
                **os.environ,
                "PROVENANCE_DB": str(self.directory / "provenance.db"),
                "PROVENANCE_KEYS": str(self.directory / "keys"),
            }
        )

    def say(self, text: str) -> None:
        print(f"\n== {text}", flush=True)

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        db: Path | None = None,
        expect: int = 0,
        show: int = 12,
    ) -> str:
        env = dict(self.env)
        if db is not None:
            env["PROVENANCE_DB"] = str(db)
        shown = "provenance " + " ".join(shlex.quote(a) for a in args)
        print(f"$ {shown}" + ("  <<< " + stdin.strip().replace("\n", "\n      ") if stdin else ""))
        done = subprocess.run(
            [sys.executable, "-m", "provenance", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        output = (done.stdout + done.stderr).rstrip()
        lines = output.splitlines()
        if len(lines) > show:
            lines = [*lines[:show], f"… ({len(lines) - show} more lines)"]
        if lines:
            print("  " + "\n  ".join(lines))
        if done.returncode != expect:
            raise SystemExit(
                f"demo step failed (exit {done.returncode}, expected {expect}): {shown}"
            )
        return done.stdout

    def stream(self, *args: str, timeout: float = 600) -> None:
        """Run a command and show its output as it comes (long-running steps)."""
        print("$ provenance " + " ".join(shlex.quote(a) for a in args), flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "provenance", *args],
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"demo step failed (exit {done.returncode}): provenance {args[0]}")


def run(
    directory: Path,
    seconds: float = 20.0,
    serve: float | None = None,
    host: str = DEFAULT_HOST,
    port: int | None = None,
) -> int:
    """The whole demo; with *serve* None (the default) it keeps serving until
    SIGTERM or SIGINT, then stops everything it started and returns 0."""
    previous = {each: signal.signal(each, _raise_stopped) for each in STOP_SIGNALS}
    running = Running()
    try:
        with running:
            return _run(directory, seconds, serve, Listener(host, port), running)
    except Stopped as stop:
        name = signal.Signals(stop.signum).name
        print(f"\n== Stopped ({name}): web app, ingest, broker and witnesses shut down", flush=True)
        return 0 if running.serving else 1
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


def _run(
    directory: Path, seconds: float, serve: float | None, place: Listener, running: Running
) -> int:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    demo = Demo(directory)
    start = now_micros() - 6 * HOUR  # the journey happened this morning

    def at(hours: float) -> str:
        return format_time(start + int(hours * HOUR))

    def append(who: str, item: dict | list, expect: int = 0) -> str:
        items = item if isinstance(item, list) else [item]
        text = "\n".join(json.dumps(one) for one in items)
        own_key = ["--key", regulator_key] if who == REGULATOR else []
        return demo.run("event", "append", "--as", who, *own_key, stdin=text, expect=expect)

    demo.say("1. A new ledger: database, log key (signs checkpoints), registrar key (enrols)")
    demo.run("init")

    demo.say("2. Parties and a cold-chain probe, each enrolled by a signed event in the log")
    demo.run("party", "add", FARM, "--role", "producer", "--prefix", PREFIX)
    carrier = demo.run("party", "add", CARRIER, "--role", "carrier").strip()
    # the regulator makes its own key on its own machine; the operator enrols only its did
    regulator_key = str(directory / REGULATOR_KEY_FILE)
    regulator = demo.run("key", "new", "--out", regulator_key).strip()
    demo.run("party", "add", REGULATOR, "--role", "regulator", "--public-key", regulator)
    probe = demo.run("device", "add", PROBE, "--owner", CARRIER).strip()

    demo.say("3. The farm registers a lot of kale; its ID is a GS1 Digital Link URI")
    demo.run(
        "batch",
        "register",
        "--gtin",
        GTIN,
        "--lot",
        LOT,
        "--product",
        "Curly kale 250 g",
        "--as",
        FARM,
        "--category",
        "food",
        "--profile",
        "chilled",
        "--expiry",
        format_time(start + 14 * 24 * HOUR)[:10],
        "--produced",  # registered now, packed this morning: its journey's times are earlier
        at(-0.5),
    )

    demo.say(
        "4. The farm attaches the truck's probe and ships to the carrier; the carrier receives"
    )
    append(FARM, {"kind": "attach", "batches": [LOT_URI], "data": {"device": probe}, "time": at(0)})
    location = {"name": "Green Valley packhouse", "country": "KE"}
    ship_id = append(
        FARM,
        {
            "kind": "ship",
            "batches": [LOT_URI],
            "data": {"to": carrier, "location": location},
            "time": at(0.1),
        },
    )
    append(
        CARRIER,
        {
            "kind": "receive",
            "batches": [LOT_URI],
            "data": {"shipment": ship_id.strip()},
            "time": at(0.3),
        },
    )

    demo.say("5. The probe signs its own readings with its own key (no lot named: it is attached)")
    temperatures = [3.1, 3.4, 3.9, 4.2, 6.8, 4.4, 3.8, 3.5]
    append(
        PROBE,
        [
            {"kind": "reading", "data": {"temperature_c": t}, "time": at(1 + i / 4)}
            for i, t in enumerate(temperatures)
        ],
    )

    fine_lot(demo, at, append, start, carrier)

    demo.say(
        "6. Bad input is refused with a reason, and nothing is stored: a carrier's recall, a "
        "wrong check digit, a competitor registering the farm's GTIN"
    )
    append(
        CARRIER,
        {"kind": "recall", "batches": [LOT_URI], "data": {"reason": "x", "class": "I"}},
        expect=1,
    )
    demo.run(
        "batch",
        "register",
        "--gtin",
        "09506000134353",
        "--lot",
        "X",
        "--product",
        "X",
        "--as",
        FARM,
        expect=1,
    )
    # A competitor may not register lot codes under the farm's GTINs (its GS1 prefix).
    demo.run("party", "add", COPYCAT, "--role", "producer", "--prefix", "9520123")
    demo.run(
        "batch",
        "register",
        "--gtin",
        GTIN,
        "--lot",
        "LOT43",
        "--product",
        "X",
        "--as",
        COPYCAT,
        expect=1,
    )
    demo.run("stats")

    demo.say("7. The regulator's inspection fails; a signed checkpoint is kept outside")
    _copy_db(directory / "provenance.db", directory / "backup-before-inspection.db")
    append(
        REGULATOR,
        {
            "kind": "inspect",
            "batches": [LOT_URI],
            "data": {"result": "fail", "notes": "probe log shows 6.8 °C"},
            "time": at(3),
        },
    )
    checkpoint = demo.run("log", "checkpoint")
    (directory / "kept.checkpoint").write_text(checkpoint)
    log_key = demo.run("log", "key").strip()
    demo.run("verify")
    demo.run("verify", "--batch", LOT_URI)

    demo.say("8. Anyone can check the lot offline with its proof bundle and the log key alone")
    bundle = demo.run("export", "proof", LOT_URI, show=6)
    (directory / "kale.bundle.json").write_text(bundle)
    demo.run("verify", "--bundle", str(directory / "kale.bundle.json"), "--log-key", log_key)

    demo.say("9. Tampering: edit a reading in a copy of the database (hide the 6.8 °C excursion)")
    edited = directory / "edited.db"
    _copy_db(directory / "provenance.db", edited)
    with sqlite3.connect(edited) as conn:
        conn.execute("UPDATE events SET data = replace(data, '6.8', '4.0') WHERE data LIKE '%6.8%'")
    demo.run("verify", db=edited, expect=1)
    demo.run("verify", "--batch", LOT_URI, db=edited, expect=1)

    demo.say("10. Tampering: restore the backup from before the failed inspection (a rollback)")
    rolled = directory / "backup-before-inspection.db"
    demo.run("verify", db=rolled)  # on its own, an older database looks intact…
    demo.run("verify", "--checkpoint", str(directory / "kept.checkpoint"), db=rolled, expect=1)

    cascade(demo, directory, place.base, carrier, at, append)
    broker_url = live(demo, directory, seconds, running)
    server = scan(demo, directory, place, running)
    return serving(directory, place, broker_url, server, serve, running)


def fine_lot(demo: Demo, at, append, start: int, carrier: str) -> None:  # type: ignore[no-untyped-def]
    """A second lot of the same kale whose journey is simply fine."""
    demo.say(
        f"5b. Meanwhile a second lot, {FINE}, travels as it should: commissioned, shipped, "
        "received, every reading in range, never recalled (something normal to compare with)"
    )
    demo.run(
        "batch", "register", "--gtin", GTIN, "--lot", FINE, "--product", "Curly kale 250 g",
        "--as", FARM, "--category", "food", "--profile", "chilled",
        "--expiry", format_time(start + 14 * 24 * HOUR)[:10], "--produced", at(-0.4),
    )  # fmt: skip
    probe = demo.run("device", "add", FINE_PROBE, "--owner", CARRIER).strip()
    append(
        FARM, {"kind": "attach", "batches": [FINE_URI], "data": {"device": probe}, "time": at(0)}
    )
    shipped = append(
        FARM,
        {
            "kind": "ship",
            "batches": [FINE_URI],
            "data": {
                "to": carrier,
                "location": {"name": "Green Valley packhouse", "country": "KE"},
            },
            "time": at(0.1),
        },
    )
    append(
        CARRIER,
        {
            "kind": "receive",
            "batches": [FINE_URI],
            "data": {"shipment": shipped.strip()},
            "time": at(0.3),
        },
    )
    append(
        FINE_PROBE,
        [
            {"kind": "reading", "data": {"temperature_c": t}, "time": at(1 + i / 4)}
            for i, t in enumerate([2.8, 3.0, 3.3, 3.6, 3.4, 3.1, 2.9, 3.2])
        ],
    )
    append(  # delivered: the carrier takes its probe off; the record is complete
        CARRIER,
        {"kind": "detach", "batches": [FINE_URI], "data": {"device": probe}, "time": at(3)},
    )


def cascade(demo: Demo, directory: Path, base: str, carrier: str, at, append) -> None:  # type: ignore[no-untyped-def]
    """Lineage and a recall that reaches what was made from the recalled lot."""
    demo.say(
        "11. A processor makes salad from the kale; then the regulator recalls the kale "
        "and the recall cascades to the salad"
    )
    processor = demo.run(
        "party", "add", PROCESSOR, "--role", "processor", "--prefix", PREFIX
    ).strip()
    shipped = append(
        CARRIER,
        {
            "kind": "ship",
            "batches": [LOT_URI],
            "data": {"to": processor, "location": {"name": "Nairobi hub", "country": "KE"}},
            "time": at(4),
        },
    )
    append(
        PROCESSOR,
        {
            "kind": "receive",
            "batches": [LOT_URI],
            "data": {"shipment": shipped.strip(), "location": {"name": "Fresh Cuts plant"}},
            "time": at(4.5),
        },
    )
    kilograms = {"value": 200, "unit": "KGM"}
    append(
        PROCESSOR,
        {
            "kind": "transform",
            "batches": [LOT_URI, SALAD_URI],
            "data": {
                "inputs": [{"batch": LOT_URI, "quantity": kilograms}],
                "outputs": [
                    {
                        "batch": SALAD_URI,
                        "quantity": {"value": 1600, "unit": "EA"},
                        "product": "Kale salad bowl 125 g",
                        "profile": "chilled",
                    }
                ],
                "location": {"name": "Fresh Cuts plant", "country": "KE"},
            },
            "time": at(5),
        },
    )
    print("  (the processor prints the salad's GS1 Digital Link labels, then traces it)")
    label = str(directory / "salad-label.png")
    demo.run("label", SALAD_URI, "--out", label, "--base-url", base)
    demo.run("trace", SALAD_URI, "--direction", "back")
    demo.run(
        "recall",
        LOT_URI,
        "--as",
        REGULATOR,
        "--key",
        str(directory / REGULATOR_KEY_FILE),
        "--reason",
        "Listeria monocytogenes found in a retained sample",
        "--class",
        "I",
        "--instructions",
        "Do not eat. Return it to the shop or throw it away.",
    )
    append(  # a recalled lot cannot be used any more
        PROCESSOR,
        {
            "kind": "ship",
            "batches": [SALAD_URI],
            "data": {"to": carrier},
            "time": at(6),
        },
        expect=1,
    )


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


def serving(
    directory: Path,
    place: Listener,
    broker_url: str,
    server: subprocess.Popen[bytes],
    serve: float | None,
    running: Running,
) -> int:
    """The closing summary; then keep everything up for *serve* seconds
    (None: until stopped). A URL is printed only while it is served."""
    demo_dir = directory
    print(f"\n== Done: the ledger, keys, bundle and tampered copies are in {demo_dir}")
    if serve is not None and serve <= 0:
        print(
            "  Not serving (--serve 0): everything is stopped now. To serve the scan pages "
            f"again: provenance --db {demo_dir / 'provenance.db'} serve",
            flush=True,
        )
        return 0
    print(
        f"  Running: the web app at {place.base} (listening on "
        f"{_url_host(place.host)}:{place.port}), the ingest service on {broker_url}, "
        "two witnesses"
    )
    print("  Scan pages:")
    for what, uri in (
        ("a lot that is simply fine", FINE_URI),
        ("the recalled kale", LOT_URI),
        ("the salad made from it, recalled too", SALAD_URI),
    ):
        print(f"    {what + ':':<38} {place.scan_url(uri)}")
    if place.everywhere:
        print("\n  Scan with a phone on this network, or open:")
    else:
        print(
            f"\n  Open it on this machine (a phone cannot reach {place.host}; "
            "`--host 0.0.0.0` serves the network):"
        )
    print(f"  {place.scan_url(SALAD_URI)}\n")
    _print_qr(place.scan_url(SALAD_URI))
    forever = serve is None
    how = "Ctrl-C" if sys.stdin.isatty() else "SIGTERM"
    print(
        f"  Serving until stopped ({how})" if forever else f"  Serving for {serve:.0f} s",
        flush=True,
    )
    running.serving = True
    deadline = None if forever else time.monotonic() + serve
    while deadline is None or time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = server.wait(timeout=1.0)
            print(f"  the web app stopped by itself (exit {code}); see {directory / 'serve.log'}")
            return 1
    print("  Done serving; stopping", flush=True)
    return 0


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


def _print_qr(url: str) -> None:
    import qrcode

    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    code.add_data(url)
    code.print_ascii(out=sys.stdout, invert=True)
    sys.stdout.flush()


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


def _copy_db(source: Path, target: Path) -> None:
    store = Store(source, create=False, readonly=True)
    try:
        store.backup(target)
    finally:
        store.close()


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default="demo",
    show_default=True,
    help="Where the demo ledger and keys go (replaced each run).",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=2),
    default=20.0,
    show_default=True,
    help="How long the simulated fleet runs in the live part.",
)
@click.option(
    "--serve",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds to keep the system up at the end (default: until stopped with "
    "Ctrl-C or SIGTERM, with or without a terminal; 0: stop at once, print no URL).",
)
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="The interface the web app listens on: 0.0.0.0 for every interface (a phone on "
    "the same network then opens the printed LAN URL).",
)
@click.option(
    "--port",
    type=click.IntRange(min=1, max=65535),
    default=None,
    help=f"The web app's port (default: {DEFAULT_PORT} when free, else any free port).",
)
def command(
    directory: str, seconds: float, serve: float | None, host: str, port: int | None
) -> None:
    """The main job: a narrated walkthrough (parties, lots, a journey, a
    checkpoint, tampering caught by `verify`, a recall), then the running
    system: two witnesses, a local broker, the ingest service fed by a
    simulated fleet, and the web app. It prints the scan pages' URLs (a lot
    that is simply fine among them) and a QR code once they answer, and keeps
    everything up until stopped.

    Example: provenance demo --host 0.0.0.0   (then open the printed URL on a phone)
    """
    sys.exit(run(Path(directory), seconds, serve, host, port))
