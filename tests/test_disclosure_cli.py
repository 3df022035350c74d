"""Private fields from the command line (docs/cli.md, docs/protocol.md §14): a
producer signs with --private; `disclosure show` shows each viewer what it may
see; a regulator exports the disclosures and `verify --bundle --disclosures`
checks them offline against the public bundle; changed ones fail."""

from __future__ import annotations

import base64
import json

import pytest
from click.testing import CliRunner

from provenance.cli.main import main

GTIN = "09506000134352"
URI = f"https://id.gs1.org/01/{GTIN}/10/L1"
FARM_PLACE = "Kinangop farm"


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"PROVENANCE_DB": str(tmp_path / "p.db"), "PROVENANCE_KEYS": str(tmp_path / "keys")}
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, list(args), env=env)
        assert result.exit_code == code, (args, result.output)
        assert "Traceback" not in result.output
        return result.output

    run("init")
    run("party", "add", "Farm", "--role", "producer", "--prefix", "9506000")
    regulator = run("key", "new", "--out", str(tmp_path / "reg.pem")).strip()
    run("party", "add", "Reg", "--role", "regulator", "--public-key", regulator)
    run("party", "add", "Shop", "--role", "retailer")
    return run


def shop_did(cli) -> str:
    rows = [json.loads(line) for line in cli("party", "list", "--json").splitlines()]
    return next(row["did"] for row in rows if row["name"] == "Shop")


def test_private_fields_from_signing_to_the_regulators_offline_check(cli, tmp_path):
    cli(
        "lot", "register", "--gtin", GTIN, "--lot", "L1", "--product", "Kale", "--as", "Farm",
        "--origin", FARM_PLACE, "--origin-at", "-0.6,36.5", "--private", "origin",
    )  # fmt: skip
    ship = {
        "kind": "ship",
        "batches": [URI],
        "data": {"to": shop_did(cli), "location": {"name": "Dock 3"}},
    }
    (tmp_path / "ship.json").write_text(json.dumps(ship))
    cli("event", "append", str(tmp_path / "ship.json"), "--as", "Farm", "--private", "location")

    public = cli("disclosure", "show", "--batch", URI)
    assert public.count("kept private by the producer") == 2 and FARM_PLACE not in public
    regulator = cli("disclosure", "show", "--batch", URI, "--as", "Reg")
    assert f'"name": "{FARM_PLACE}"' in regulator and '"Dock 3"' in regulator
    assert regulator.count("verified against the signed digest") == 2
    assert FARM_PLACE not in cli("disclosure", "show", "--batch", URI, "--as", "Shop")
    cli("disclosure", "grant", "--to", "Shop", "--as", "Farm")
    assert FARM_PLACE in cli("disclosure", "show", "--batch", URI, "--as", "Shop")
    cli("disclosure", "withdraw", "--to", "Shop", "--as", "Farm")
    assert FARM_PLACE not in cli("disclosure", "show", "--batch", URI, "--as", "Shop")
    assert "no grant" in cli("disclosure", "withdraw", "--to", "Shop", "--as", "Farm", code=1)

    bundle = tmp_path / "bundle.json"
    bundle.write_text(cli("export", "proof", URI))
    assert FARM_PLACE not in bundle.read_text() and "Dock 3" not in bundle.read_text()
    log_key = cli("log", "key").strip()
    exported = tmp_path / "d.json"
    cli("disclosure", "export", "--batch", URI, "--as", "Reg", "--out", str(exported))
    checked = cli(
        "verify", "--bundle", str(bundle), "--log-key", log_key, "--disclosures", str(exported)
    )
    assert checked.startswith("OK ") and checked.count("verified against the signed digest") == 2
    assert FARM_PLACE in checked

    changed = json.loads(exported.read_text())
    for event_id, disclosures in changed["events"].items():
        for position, encoded in enumerate(disclosures):
            array = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
            if array[1] == "location":
                array[2]["name"] = "Dock 4"
                changed["events"][event_id][position] = (
                    base64.urlsafe_b64encode(json.dumps(array).encode()).rstrip(b"=").decode()
                )
    exported.with_name("changed.json").write_text(json.dumps(changed))
    failed = cli(
        "verify", "--bundle", str(bundle), "--log-key", log_key,
        "--disclosures", str(exported.with_name("changed.json")), code=1,
    )  # fmt: skip
    assert "FAILED: disclosures" in failed and "not among the envelope's signed digests" in failed

    # the whole ledger verifies with v2 events in it; exports carry no private value
    assert cli("verify").startswith("OK ")
    for export in (("export", "epcis", "--batch", URI), ("export", "fsma204")):
        text = cli(*export)
        assert "Kale" in text or "EPCISDocument" in text
        assert FARM_PLACE not in text and "Dock 3" not in text


def test_a_field_the_ledger_needs_cannot_be_kept_private(cli, tmp_path):
    cli("lot", "register", "--gtin", GTIN, "--lot", "L1", "--product", "Kale", "--as", "Farm")
    ship = {"kind": "ship", "batches": [URI], "data": {"to": shop_did(cli)}}
    (tmp_path / "ship.json").write_text(json.dumps(ship))
    refused = cli(
        "event", "append", str(tmp_path / "ship.json"), "--as", "Farm", "--private", "to", code=1
    )
    assert refused.startswith("Error: ") and "the ledger needs it" in refused
    ship["private"] = ["to"]
    (tmp_path / "ship.json").write_text(json.dumps(ship))
    assert "the ledger needs it" in cli(
        "event", "append", str(tmp_path / "ship.json"), "--as", "Farm", code=1
    )
    no_origin = cli(
        "lot", "register", "--gtin", GTIN, "--lot", "L2", "--product", "Kale", "--as", "Farm",
        "--private", "origin", code=2,
    )  # fmt: skip
    assert "no origin to keep private" in no_origin
    assert "--disclosures is checked against a --bundle" in cli(
        "verify", "--disclosures", "x.json", code=2
    )
