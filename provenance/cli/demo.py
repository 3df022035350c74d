"""`provenance demo`: a narrated end-to-end walkthrough of the real CLI.

Every step runs the actual `provenance` command in a subprocess against a
fresh ledger in the demo folder, prints the command and what it said. It
tampers with copies of the database and shows `provenance verify` catch each
change, runs the live system (broker, ingest, a simulated fleet), and ends by
serving the scan pages: it prints a lot's URL and QR code, so a phone on the
same network can scan it.
"""

from __future__ import annotations

import contextlib
import json
import os
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
HOUR = 3_600_000_000


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


def run(directory: Path, seconds: float = 20.0, serve: float | None = None) -> int:
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

    port = _free_port(8080)
    base = os.environ.get("PROVENANCE_BASE_URL") or f"http://{_lan_address()}:{port}"
    cascade(demo, directory, base, carrier, at, append)
    live(demo, directory, seconds)
    scan(demo, directory, port, base, serve)
    demo.say(f"Done: the ledger, keys, bundle and tampered copies are in {directory}")
    return 0


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


def scan(demo: Demo, directory: Path, port: int, base: str, serve: float | None) -> None:
    """The consumer's side: the scan page, served for a phone, and its QR code."""
    demo.say("13. Scan it: the resolver and the consumer pages of the kale and the salad")
    url = base.rstrip("/") + SALAD_URI.removeprefix("https://id.gs1.org")
    args = ["serve", "--host", "0.0.0.0", "--port", str(port), "--base-url", base]
    print("$ provenance " + " ".join(args) + f" &   (log: {directory / 'serve.log'})")
    server = subprocess.Popen(
        [sys.executable, "-m", "provenance", *args],
        env=demo.env,
        stdout=subprocess.DEVNULL,
        stderr=(directory / "serve.log").open("wb"),
    )
    try:
        for uri in (LOT_URI, SALAD_URI):
            local = f"http://127.0.0.1:{port}" + uri.removeprefix("https://id.gs1.org")
            status = json.loads(_fetch_when_up(local, server, 30, accept="application/json"))
            print(f"  GET {local}  ->  state: {status['state']}")
            for record in status["recall"]["recalls"]:
                source = "" if record["direct"] else f" (made from {record['source']})"
                print(f"    recalled{source}: {record['reason']}")
        print(f"\n  Scan with a phone on this network, or open:\n  {url}\n")
        _print_qr(url)
        if serve is None:
            serve = float("inf") if sys.stdin.isatty() else 0.0
        if serve > 0:
            forever = serve == float("inf")
            print(
                "  Serving until Ctrl-C" if forever else f"  Serving for {serve:.0f} s", flush=True
            )
            with contextlib.suppress(subprocess.TimeoutExpired, KeyboardInterrupt):
                server.wait(timeout=None if forever else serve)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _free_port(preferred: int) -> int:
    """*preferred* when it is free, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise SystemExit("no free TCP port for the web server")


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


def live(demo: Demo, directory: Path, seconds: float) -> None:
    """The running system: broker, ingest service, simulated gateways."""
    from provenance.infra.localbroker import Broker, describe

    demo.say(
        "12. The running system: a local MQTT broker, the ingest service, and a fleet of "
        "simulated gateways whose sensors and dock scanners feed the real gateway code"
    )
    print(f"  {describe()}")
    broker = Broker(directory / "broker").start()
    ready = directory / "ingest.ready"
    ingest = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provenance",
            "ingest",
            "--broker",
            broker.url,
            "--ready-file",
            str(ready),
        ],
        env=demo.env,
        stdout=subprocess.DEVNULL,
        stderr=(directory / "ingest.log").open("wb"),
    )
    print(
        f"$ provenance ingest --broker {broker.url} --ready-file {ready} &"
        f"   (log: {directory / 'ingest.log'})"
    )
    try:
        # An MQTT broker drops what nobody has subscribed to yet: start the fleet
        # only once the ingest service says it holds its subscriptions.
        if not _wait_for_file(ready, ingest, 60):
            raise SystemExit(f"the ingest service did not subscribe; see {directory}/ingest.log")
        demo.stream(
            "simulate",
            "--broker",
            broker.url,
            "--scenario",
            "vaccine",
            "--gateways",
            "6",
            "--devices",
            "24",
            "--rate",
            "200",
            "--duration",
            str(seconds),
            "--accelerate",
            "7200",
            "--excursions",
            "0.5",
            "--offline",
            "0.3",
        )
    finally:
        ingest.send_signal(signal.SIGTERM)
        try:
            code = ingest.wait(timeout=60)
        except subprocess.TimeoutExpired:
            ingest.kill()
            code = ingest.wait(timeout=10)
        broker.stop()
    print(f"  ingest stopped (exit {code}) after committing what was in flight")
    demo.run("stats")
    demo.run("verify")


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
