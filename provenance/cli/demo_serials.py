"""The demo's serials step (docs/protocol.md §19, docs/labels.md): the farm issues serial
numbers for the fine kale lot, prints a sheet of pack labels (QR and GS1 DataMatrix, one
serial each), and a serial issued twice is refused. Called once from
`provenance.cli.demo_story.narrate`."""

from __future__ import annotations

from pathlib import Path

from provenance.cli.demo_story import FARM, FINE_URI, Demo


def serial_labels(demo: Demo, directory: Path, base: str) -> None:
    """Serials for FINE_URI, a label sheet in *directory*, the scan links on *base*."""
    demo.say(
        "11e. The farm issues serial numbers for the packs of the fine lot (a signed `serials` "
        "event: random, so a copied label reveals no other) and prints one label per pack, "
        "QR code and GS1 DataMatrix side by side"
    )
    issued = demo.run("serial", "issue", FINE_URI, "--count", "6", "--as", FARM).split()
    sheet = directory / "kale-packs.pdf"
    demo.run("serial", "sheet", FINE_URI, "--out", str(sheet), "--base-url", base)
    demo.run("serial", "issue", FINE_URI, "--serial", issued[0], "--as", FARM, expect=1)
    pack = FINE_URI.replace("https://id.gs1.org", base.rstrip("/"))
    print(f"  a real pack:  {pack}/21/{issued[0]}")
    print(f"  a fake pack:  {pack}/21/FAKE0001   (the page warns: never issued)")
