"""The demo's pallet step (provenance/cli/demo_pallets.py) through the real CLI:
two lots packed on a pallet, the pallet shipped and received, its scan URL."""

from __future__ import annotations

import pytest

from provenance.cli.demo_pallets import ship_a_pallet
from provenance.cli.demo_story import CARRIER, FARM, PREFIX, Demo
from provenance.ledger.pallet_view import pallet_view
from provenance.store.db import Store

pytestmark = pytest.mark.external  # starts the `provenance` command as a process


def test_the_demo_ships_a_pallet_and_prints_its_scan_url(tmp_path, capsys):
    demo = Demo(tmp_path)
    demo.run("init")
    demo.run("party", "add", FARM, "--role", "producer", "--prefix", PREFIX)
    demo.run("party", "add", CARRIER, "--role", "carrier")
    url = ship_a_pallet(demo, tmp_path, "http://127.0.0.1:8000/")
    sscc = url.rsplit("/", 1)[1]
    assert url == f"http://127.0.0.1:8000/00/{sscc}"
    assert f"Scan the pallet's label: {url}" in capsys.readouterr().out
    store = Store(tmp_path / "provenance.db", create=False, readonly=True)
    try:
        view = pallet_view(store, sscc)
    finally:
        store.close()
    assert view["where"] == {"state": "held", "holder": view["where"]["holder"]}
    assert view["where"]["holder"]["name"] == CARRIER
    assert [item["quantity"]["value"] for item in view["contents"]] == [120, 80]
