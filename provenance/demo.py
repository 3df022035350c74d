"""`provenance demo`: a narrated end-to-end walkthrough of the real CLI.

Every step runs the actual `provenance` command in a subprocess against a
fresh ledger in the demo folder, prints the command and what it said, and the
walkthrough ends by tampering with copies of the database and showing
`provenance verify` catch each change.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

GTIN = "09506000134352"
LOT = "KALE-2611"
LOT_URI = f"https://id.gs1.org/01/{GTIN}/10/{LOT}"


class Demo:
    def __init__(self, directory: Path):
        self.directory = directory.resolve()
        self.env = {
            **os.environ,
            "PROVENANCE_DB": str(self.directory / "provenance.db"),
            "PROVENANCE_KEYS": str(self.directory / "keys"),
        }

    def say(self, text: str) -> None:
        print(f"\n== {text}", flush=True)

    def run(
        self, *args: str, stdin: str | None = None, db: Path | None = None, expect: int = 0
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
        if output:
            print("  " + output.replace("\n", "\n  "))
        if done.returncode != expect:
            raise SystemExit(
                f"demo step failed (exit {done.returncode}, expected {expect}): {shown}"
            )
        return done.stdout


def run(directory: Path) -> int:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    demo = Demo(directory)
    demo.say("1. A new ledger: database, log key (signs checkpoints), registrar key (enrols)")
    demo.run("init")

    demo.say("2. Parties and a cold-chain probe, each enrolled by a signed event in the log")
    demo.run("party", "add", "Green Valley Farm", "--role", "producer")
    demo.run("party", "add", "Cold Express", "--role", "carrier")
    demo.run("party", "add", "Health Authority", "--role", "regulator")
    demo.run("device", "add", "truck7-probe", "--owner", "Cold Express")

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
        "Green Valley Farm",
        "--category",
        "food",
        "--profile",
        "chilled",
        "--expiry",
        "2026-12-06",
    )
    probe = demo.run("stats", "--json")  # a cheap way to show the counters move
    probe_did = _did_of_device(directory, "truck7-probe")

    demo.say(
        "4. The farm attaches the truck's probe and ships to the carrier; the carrier receives"
    )
    demo.run(
        "event",
        "append",
        "--as",
        "Green Valley Farm",
        stdin=json.dumps(
            {
                "kind": "attach",
                "batches": [LOT_URI],
                "data": {"device": probe_did},
                "time": "2026-11-22T06:00:00.000Z",
            }
        ),
    )
    carrier = _did_of_party(directory, "Cold Express")
    ship_id = demo.run(
        "event",
        "append",
        "--as",
        "Green Valley Farm",
        stdin=json.dumps(
            {
                "kind": "ship",
                "batches": [LOT_URI],
                "data": {
                    "to": carrier,
                    "location": {"name": "Green Valley packhouse", "country": "KE"},
                },
                "time": "2026-11-22T06:05:00.000Z",
            }
        ),
    ).strip()
    demo.run(
        "event",
        "append",
        "--as",
        "Cold Express",
        stdin=json.dumps(
            {
                "kind": "receive",
                "batches": [LOT_URI],
                "data": {"shipment": ship_id},
                "time": "2026-11-22T06:20:00.000Z",
            }
        ),
    )

    demo.say("5. The probe signs its own readings with its own key (no lot named: it is attached)")
    readings = "\n".join(
        json.dumps(
            {
                "kind": "reading",
                "data": {"temperature_c": t},
                "time": f"2026-11-22T{7 + i // 4:02d}:{(i % 4) * 15:02d}:00.000Z",
            }
        )
        for i, t in enumerate([3.1, 3.4, 3.9, 4.2, 6.8, 4.4, 3.8, 3.5])
    )
    demo.run("event", "append", "--as", "truck7-probe", stdin=readings)

    demo.say("6. Bad input is refused with a reason, and nothing is stored")
    demo.run(
        "event",
        "append",
        "--as",
        "Cold Express",
        stdin=json.dumps(
            {"kind": "recall", "batches": [LOT_URI], "data": {"reason": "x", "class": "I"}}
        ),
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
        "Green Valley Farm",
        expect=1,
    )

    demo.say("7. A signed checkpoint; keep it somewhere the database's owner cannot reach")
    checkpoint = demo.run("log", "checkpoint")
    (directory / "kept.checkpoint").write_text(checkpoint)
    log_key = demo.run("log", "key").strip()
    demo.run("verify")
    demo.run("verify", "--batch", LOT_URI)

    demo.say("8. Anyone can check the lot offline with its proof bundle and the log key alone")
    bundle = demo.run("export", "proof", LOT_URI)
    (directory / "kale.bundle.json").write_text(bundle)
    demo.run("verify", "--bundle", str(directory / "kale.bundle.json"), "--log-key", log_key)

    demo.say("9. Tampering: edit a reading in a copy of the database (hide the 6.8 °C excursion)")
    edited = directory / "edited.db"
    _copy_db(directory / "provenance.db", edited)
    with sqlite3.connect(edited) as conn:
        conn.execute("UPDATE events SET data = replace(data, '6.8', '4.0') WHERE data LIKE '%6.8%'")
    demo.run("verify", db=edited, expect=1)
    demo.run("verify", "--batch", LOT_URI, db=edited, expect=1)

    demo.say("10. Tampering: roll the database back by deleting the newest events")
    rolled = directory / "rolled-back.db"
    _copy_db(directory / "provenance.db", rolled)
    with sqlite3.connect(rolled) as conn:
        size = conn.execute("SELECT max(size) FROM checkpoints").fetchone()[0]
        conn.execute("DELETE FROM events WHERE idx >= ?", (size - 3,))
        conn.execute("DELETE FROM checkpoints WHERE size > ?", (size - 3,))
    demo.run("verify", "--checkpoint", str(directory / "kept.checkpoint"), db=rolled, expect=1)

    demo.say("Done: the ledger, keys and tampered copies are in " + str(directory))
    del probe
    return 0


def _copy_db(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def _did_of(directory: Path, type_: str, name: str) -> str:
    with sqlite3.connect(directory / "provenance.db") as conn:
        row = conn.execute(
            "SELECT did FROM identities WHERE type = ? AND name = ?", (type_, name)
        ).fetchone()
    return row[0]


def _did_of_device(directory: Path, name: str) -> str:
    return _did_of(directory, "device", name)


def _did_of_party(directory: Path, name: str) -> str:
    return _did_of(directory, "party", name)
