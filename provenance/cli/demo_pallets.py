"""The demo's pallet step (docs/protocol.md, "Pallets and cases"): the farm packs two lots of kale
on one pallet (SSCC), ships the pallet — everything on it moves with one
shipment — the carrier receives it, and the pallet's scan URL is printed.

One function, `ship_a_pallet`, called once near the end of
provenance.cli.demo_story.narrate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from provenance.core.gs1 import check_digit, lot_uri

if TYPE_CHECKING:
    from provenance.cli.demo_story import Demo

LOTS = ("KALE-2620", "KALE-2621")
SERIAL = 42


def pallet_sscc(prefix: str, serial: int = SERIAL) -> str:
    """An SSCC under the company prefix: extension digit 0, prefix, serial, check digit."""
    body = "0" + prefix + str(serial).rjust(16 - len(prefix), "0")
    return body + check_digit(body)


def ship_a_pallet(demo: Demo, _directory: Path, base: str) -> str:
    """Pack two new lots on a pallet, ship and receive it; returns its scan URL."""
    from provenance.cli.demo_story import CARRIER, FARM, GTIN, PREFIX  # it imports this module

    sscc = pallet_sscc(PREFIX)

    demo.say("11c. Pallets: the farm packs two lots on one pallet (SSCC) and ships the pallet")
    uris = []
    for lot in LOTS:
        uris.append(lot_uri(GTIN, lot))
        demo.run(
            "lot", "register", "--gtin", GTIN, "--lot", lot, "--product", "Curly kale 250 g",
            "--as", FARM, "--category", "food",
        )  # fmt: skip
    demo.run(
        "pallet", "pack", sscc, "--as", FARM,
        "--lot", f"{uris[0]}=120KGM", "--lot", f"{uris[1]}=80KGM",
    )  # fmt: skip
    shipment = demo.run("pallet", "ship", sscc, "--to", CARRIER, "--as", FARM).strip()
    receive = {
        "kind": "receive",
        "batches": uris,
        "data": {"shipment": shipment, "pallets": [sscc]},
    }
    demo.run("event", "append", "--as", CARRIER, stdin=json.dumps(receive))
    demo.run("pallet", "show", sscc)
    url = f"{base.rstrip('/')}/00/{sscc}"
    print(f"  Scan the pallet's label: {url}", flush=True)
    return url
