"""`provenance place add|list|show` and `party add --pgln/--street…` (docs/cli.md)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from provenance.cli.main import main

GLN = "9506000000008"
PGLN = "9506000000015"


@pytest.fixture
def cli(tmp_path):
    runner = CliRunner()
    db, keys = str(tmp_path / "p.db"), str(tmp_path / "keys")

    def run(*args: str, code: int = 0):
        result = runner.invoke(main, ["--db", db, "--keys", keys, *args])
        assert result.exit_code == code, (args, result.output, result.exception)
        return result

    run("init")
    run(
        "party", "add", "Packer", "--role", "processor", "--prefix", "9506000",
        "--pgln", PGLN, "--street", "1 Mill Lane", "--city", "Nakuru", "--country", "ke",
    )  # fmt: skip
    run("party", "add", "Depot", "--role", "distributor")
    return run


def test_place_add_list_show(cli):
    out = cli(
        "place", "add", "950-6000-000008", "--name", "Riverside packhouse", "--as", "Packer",
        "--city", "Nakuru", "--country", "KE", "--lat", "-0.3", "--lon", "36.1",
        "--type", "packhouse",
    ).output  # fmt: skip
    assert f"place {GLN} (Riverside packhouse) registered" in out
    assert cli("place", "list").output.split("\t")[:3] == [GLN, "Riverside packhouse", "Packer"]
    assert "Nakuru, KE" in cli("place", "list", "--party", "Packer").output
    assert cli("place", "list", "--party", "Depot").output == ""
    shown = json.loads(cli("place", "show", GLN).output)
    assert shown["party"]["name"] == "Packer"
    assert (shown["address"], shown["type"], shown["lat"]) == (
        {"city": "Nakuru", "country": "KE"},
        "packhouse",
        -0.3,
    )
    listed = json.loads(cli("place", "list", "--json").output.splitlines()[0])
    assert listed["gln"] == GLN


def test_bad_input_gets_a_clear_error(cli):
    bad = cli("place", "add", "9506000000001", "--name", "X", "--as", "Packer", code=1).output
    assert bad.startswith("Error: GLN: is not a GLN: its check digit is 1, expected 8"), bad
    assert "Traceback" not in bad
    short = cli("place", "add", "950600", "--name", "X", "--as", "Packer", code=1).output
    assert "must be a 13-digit GLN" in short
    pgln = cli("party", "add", "Mill", "--role", "retailer", "--pgln", "9506000000011", code=1)
    assert "Error: --pgln: is not a GLN" in pgln.output and "expected 5" in pgln.output
    country = cli("party", "add", "Shop", "--role", "retailer", "--country", "Kenya", code=1)
    assert country.output == "Error: address.country: must be at most 2 characters, got 5\n"
    half = cli("place", "add", GLN, "--name", "X", "--as", "Packer", "--lat", "1", code=2)
    assert "give both --lat and --lon" in half.output
    cli("place", "add", GLN, "--name", "Packhouse", "--as", "Packer")
    taken = cli("place", "add", GLN, "--name", "Mine now", "--as", "Depot", code=1).output
    assert taken.startswith("Error: conflict: GLN 9506000000008 is registered by 'Packer'")
    missing = cli("place", "show", "9506000000022", code=1).output
    assert "no place with GLN 9506000000022 is registered" in missing
    nobody = cli("place", "list", "--party", "Nobody", code=1).output
    assert "no party named 'Nobody'" in nobody
