"""The demo's narrated steps: a fresh ledger told as a story through the real CLI.

`Demo` runs each step as the actual `provenance` command in a subprocess
against the demo folder's ledger and prints the command and what it said.
`narrate` is steps 1 to 11: parties and a cold-chain probe, a lot of kale and
its journey, a second lot that is simply fine, bad input refused, a failed
inspection and a checkpoint kept outside, an offline proof bundle, tampering
with copies of the database caught by `provenance verify`, and a recall that
cascades to the salad made from the kale. The names of the story (its lots,
parties and URIs) live here; the running system's side is in
provenance.cli.demo_stack.
"""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

from provenance.cli import demo_pallets, demo_recall_acks
from provenance.cli.demo_capture import epcis_partner
from provenance.cli.demo_disclosure import private_fields
from provenance.cli.demo_quantities import split_lot
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


def narrate(demo: Demo, directory: Path, base: str) -> None:
    """Steps 1 to 11 against the fresh ledger in *directory*; *base* is the
    web app's base URL, printed on the salad's label."""
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
        "lot",
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
        "3b. The farm signs the kale's stability profile: 10 days at 0-5 °C, 6 h at 5-15 °C "
        "(the scan page counts its budget down from the readings)"
    )
    demo.run(
        "product", "stability", "--gtin", GTIN, "--as", FARM,
        "--band", "0..5=10d", "--band", "5..15=6h", "--source", "Green Valley shelf-life study",
    )  # fmt: skip

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
            # from the attach on, so every leg (the farm, the truck, the carrier) was watched
            {"kind": "reading", "data": {"temperature_c": t}, "time": at(i / 4)}
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
        "lot",
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
        "lot",
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

    split_lot(demo, at, append)
    cascade(demo, directory, base, carrier, at, append)
    private_fields(demo, directory, at)
    demo_pallets.ship_a_pallet(demo, directory, base)
    demo_recall_acks.acknowledge(demo, directory, base, carrier, at, append)
    from provenance.cli.demo_serials import serial_labels  # late: it imports this module

    serial_labels(demo, directory, base)
    epcis_partner(demo, directory, at)


def fine_lot(demo: Demo, at, append, start: int, carrier: str) -> None:  # type: ignore[no-untyped-def]
    """A second lot of the same kale whose journey is simply fine."""
    demo.say(
        f"5b. Meanwhile a second lot, {FINE}, travels as it should: commissioned, shipped, "
        "received, every reading in range, never recalled (something normal to compare with)"
    )
    demo.run(
        "lot", "register", "--gtin", GTIN, "--lot", FINE, "--product", "Curly kale 250 g",
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
            # from the attach on, so every leg (the farm, the truck, the carrier) was watched
            {"kind": "reading", "data": {"temperature_c": t}, "time": at(i / 4)}
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


def _copy_db(source: Path, target: Path) -> None:
    store = Store(source, create=False, readonly=True)
    try:
        store.backup(target)
    finally:
        store.close()
