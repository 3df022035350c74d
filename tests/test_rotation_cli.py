"""`provenance party rotate`, `party rotate-approve` and `device rotate`
(docs/cli.md): the old key rotates, or the registrar with an approval the
regulator made on its own machine; every bad input is `Error: …` and what to
do, never a traceback."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def cli(two_lot_cli, tmp_path):
    """The two-lot ledger, with a regulator and a carrier that hold their own keys."""
    run = two_lot_cli
    for name in ("reg", "carrier", "carrier-new", "farm-new", "probe-new"):
        run("key", "new", "--out", str(tmp_path / f"{name}.pem"))
    did = {
        name: run("key", "new", "--out", str(tmp_path / f"{name}-x.pem")).output.strip()
        for name in ("spare",)
    }
    reg = run(
        "party", "add", "Agency", "--role", "regulator", "--public-key", _did(run, tmp_path, "reg")
    ).output.strip()
    carrier = run(
        "party",
        "add",
        "Cold Express",
        "--role",
        "carrier",
        "--public-key",
        _did(run, tmp_path, "carrier"),
    ).output.strip()
    run.dids = {"reg": reg, "carrier": carrier, **did}  # type: ignore[attr-defined]
    run.tmp = tmp_path  # type: ignore[attr-defined]
    return run


def _did(run, tmp_path, name: str) -> str:
    from provenance.core.signing import did_of
    from provenance.infra.keystore import load_private_key

    return did_of(load_private_key(tmp_path / f"{name}.pem"))


def _party(run, name: str) -> dict:
    rows = [json.loads(line) for line in run("party", "list", "--json").output.splitlines()]
    return next(row for row in rows if row["name"] == name)


def test_a_party_rotates_with_its_old_key(cli):
    tmp = cli.tmp
    new = _did(cli, tmp, "carrier-new")
    out = cli(
        "party",
        "rotate",
        "Cold Express",
        "--new-public-key",
        new,
        "--key",
        str(tmp / "carrier.pem"),
        "--reason",
        "yearly rotation",
    ).output.strip()
    assert out == new
    assert _party(cli, "Cold Express")["did"] == new
    # The old key again: refused, with the reason.
    again = cli(
        "party",
        "rotate",
        "Cold Express",
        "--new-public-key",
        cli.dids["spare"],
        "--key",
        str(tmp / "carrier.pem"),
        code=1,
    )
    assert "Error:" in again.output and "is not the key of Cold Express" in again.output


def test_a_custodial_party_rotates_to_a_key_of_its_own(cli):
    new = _did(cli, cli.tmp, "farm-new")
    cli("party", "rotate", "Farm", "--new-public-key", new)
    row = _party(cli, "Farm")
    assert (row["did"], row["custodial"]) == (new, False)


def test_recovery_with_the_regulators_approval_made_on_its_own_machine(cli):
    tmp = cli.tmp
    old, new = cli.dids["carrier"], _did(cli, tmp, "carrier-new")
    approval = tmp / "approval.json"
    cli(
        "party",
        "rotate-approve",
        "--subject",
        old,
        "--new-public-key",
        new,
        "--key",
        str(tmp / "reg.pem"),
        "--reason",
        "laptop stolen",
        "--out",
        str(approval),
    )
    assert cli("party", "rotate", "Cold Express", "--approval", str(approval)).output.strip() == new
    assert _party(cli, "Cold Express")["did"] == new


def test_recovery_refuses_a_forged_or_foreign_approval(cli):
    tmp = cli.tmp
    old, new = cli.dids["carrier"], _did(cli, tmp, "carrier-new")
    approval = tmp / "approval.json"
    # Signed by a key that is not a regulator's (the carrier's own, say).
    cli(
        "party",
        "rotate-approve",
        "--subject",
        old,
        "--new-public-key",
        new,
        "--key",
        str(tmp / "carrier.pem"),
        "--out",
        str(approval),
    )
    refused = cli("party", "rotate", "Cold Express", "--approval", str(approval), code=1)
    assert "Error: unauthorised" in refused.output and "not an enrolled regulator" in refused.output
    # A real approval whose new key was swapped afterwards.
    good = tmp / "good.json"
    cli(
        "party",
        "rotate-approve",
        "--subject",
        old,
        "--new-public-key",
        new,
        "--key",
        str(tmp / "reg.pem"),
        "--out",
        str(good),
    )
    terms = json.loads(good.read_text())
    terms["key"] = cli.dids["spare"]
    swapped = tmp / "swapped.json"
    swapped.write_text(json.dumps(terms))
    refused = cli("party", "rotate", "Cold Express", "--approval", str(swapped), code=1)
    assert "is not" in refused.output and "signature over this rotation" in refused.output
    # An approval of another party's rotation.
    refused = cli("party", "rotate", "Farm", "--approval", str(good), code=1)
    assert "approves a rotation of" in refused.output
    assert _party(cli, "Cold Express")["did"] == old


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["party", "rotate", "Nobody", "--new-public-key", "did:key:z6Mk"], "no party named"),
        (["party", "rotate", "Farm"], "give the new key"),
        (["party", "rotate", "Farm", "--new-public-key", "missing.pem"], "no such file"),
        (["party", "rotate", "Farm", "--approval", "missing.json"], "missing.json"),
        (["party", "rotate", "Farm", "--approval", "{tmp}/junk.json"], "not JSON"),
        (["party", "rotate", "Farm", "--approval", "{tmp}/other.json"], "not a rotation approval"),
        (["device", "rotate", "nope", "--new-public-key", "did:key:z6Mk"], "no device named"),
        (
            [
                "party",
                "rotate-approve",
                "--subject",
                "did:key:nope",
                "--new-public-key",
                "{spare}",
                "--key",
                "{tmp}/reg.pem",
                "--out",
                "{tmp}/a.json",
            ],
            "did:key",
        ),
        (
            [
                "party",
                "rotate-approve",
                "--subject",
                "{carrier}",
                "--new-public-key",
                "{carrier}",
                "--key",
                "{tmp}/reg.pem",
                "--out",
                "{tmp}/a.json",
            ],
            "new key",
        ),
        (
            [
                "party",
                "rotate-approve",
                "--subject",
                "{carrier}",
                "--new-public-key",
                "{spare}",
                "--key",
                "{tmp}/junk.json",
                "--out",
                "{tmp}/a.json",
            ],
            "junk.json",
        ),
    ],
)
def test_bad_input_is_an_error_with_what_to_do(cli, args, says):
    tmp = cli.tmp
    (tmp / "junk.json").write_text("{not json")
    (tmp / "other.json").write_text('{"format": "something-else"}')
    filled = [a.format(tmp=tmp, spare=cli.dids["spare"], carrier=cli.dids["carrier"]) for a in args]
    result = cli(*filled, code=1) if not says.startswith("Usage") else cli(*filled, code=2)
    assert result.output.startswith("Error: "), result.output
    assert says in result.output
    assert "Traceback" not in result.output


def test_key_and_approval_together_are_refused(cli):
    tmp = cli.tmp
    approval = tmp / "approval.json"
    cli(
        "party",
        "rotate-approve",
        "--subject",
        cli.dids["carrier"],
        "--new-public-key",
        _did(cli, tmp, "carrier-new"),
        "--key",
        str(tmp / "reg.pem"),
        "--out",
        str(approval),
    )
    refused = cli(
        "party",
        "rotate",
        "Cold Express",
        "--approval",
        str(approval),
        "--key",
        str(tmp / "carrier.pem"),
        code=1,
    )
    assert "give one" in refused.output


def test_a_device_rotates_and_keeps_its_attachments(cli):
    tmp = cli.tmp
    cli("device", "add", "probe1", "--owner", "Farm")
    new = _did(cli, tmp, "probe-new")
    assert cli("device", "rotate", "probe1", "--new-public-key", new).output.strip() == new
    rows = [json.loads(line) for line in cli("device", "list", "--json").output.splitlines()]
    current = [row for row in rows if row["name"] == "probe1" and row["revoked_from"] is None]
    assert [row["did"] for row in current] == [new]
