"""The demo's step on private fields (可用不可见, docs/protocol.md §14): the
farm registers a lot keeping its farm's coordinates private; the public scan
page says "kept private by the producer" and never shows them, while the
regulator sees them "verified against the signed digest", in the ledger and
offline against the lot's public proof bundle."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provenance.cli.demo_story import Demo

PRIVATE_LOT = "KALE-2614"
PLOT = "Green Valley, plot 7"
KEPT_PRIVATE = "kept private by the producer"


def private_fields(demo: Demo, directory: Path, at: Any) -> None:
    """Step 11b: a field kept private on the public page while the regulator's
    view verifies it; prints both views' lines."""
    from provenance.cli.demo_story import FARM, GTIN, REGULATOR  # it calls this step

    private_uri = f"https://id.gs1.org/01/{GTIN}/10/{PRIVATE_LOT}"
    demo.say(
        f"11b. Kept private (可用不可见): the farm registers {PRIVATE_LOT} keeping its plot's "
        "coordinates private; the envelope signs a salted digest of them (wire protocol v2)"
    )
    demo.run(
        "lot", "register", "--gtin", GTIN, "--lot", PRIVATE_LOT, "--product", "Curly kale 250 g",
        "--as", FARM, "--category", "food", "--profile", "chilled", "--produced", at(-0.3),
        "--origin", PLOT, "--origin-at", "-0.61,36.52", "--private", "origin",
    )  # fmt: skip
    page = _public_page(directory / "provenance.db", private_uri)
    print("  The public scan page says:")
    for line in page:
        print(f"    {line}")
    if PLOT in " ".join(page) or not any(KEPT_PRIVATE in line for line in page):
        raise SystemExit("demo step failed: the public page shows the private field")
    demo.run("disclosure", "show", "--batch", private_uri)  # anyone: kept private
    demo.run("disclosure", "show", "--batch", private_uri, "--as", REGULATOR)  # verified
    print("  (the regulator checks it offline too, against the lot's public proof bundle)")
    bundle, disclosures = directory / "private.bundle.json", directory / "private.disclosures.json"
    bundle.write_text(demo.run("export", "proof", private_uri, show=0))
    demo.run(
        "disclosure", "export", "--batch", private_uri, "--as", REGULATOR, "--out", str(disclosures)
    )
    log_key = demo.run("log", "key", show=0).strip()
    demo.run(
        "verify", "--bundle", str(bundle), "--log-key", log_key, "--disclosures", str(disclosures)
    )


def _public_page(database: Path, lot_uri: str) -> list[str]:
    """What the lot's public scan page says of each journey step that keeps a
    field private (the step, then the note), as the web app renders it for anyone."""
    from provenance.core import gs1
    from provenance.web import create_app

    app = create_app({"DATABASE": str(database), "TESTING": True})
    body = app.test_client().get(lot_uri.removeprefix(gs1.DEFAULT_BASE)).get_data(as_text=True)
    lines = []
    for step in re.findall(r'<li class="step[^"]*">(.*?)</li>', body, re.S):
        note = re.search(r'<p class="note private">(.*?)</p>', step, re.S)
        what = re.search(r'<p class="what">(.*?)</p>', step, re.S)
        if note and what:
            lines.append(f"{_text(what.group(1))}: {_text(note.group(1))}")
    return lines


def _text(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))).strip()
