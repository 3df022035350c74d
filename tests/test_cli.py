"""The CLI contract of docs/cli.md, run in-process with click's CliRunner."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from provenance.cli.log import EXPORT_COMMANDS, export
from provenance.cli.main import SERVICE_COMMANDS, main
from provenance.core.signing import did_of, sign

GTIN = "09506000134352"
URI = f"https://id.gs1.org/01/{GTIN}/10/LOT42"


class Cli:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.env = {"PROVENANCE_DB": str(tmp_path / "p.db"), "PROVENANCE_KEYS": str(tmp_path / "k")}
        self.runner = CliRunner()

    def __call__(self, *args, input=None, code=0):
        result = self.runner.invoke(main, list(args), input=input, env=self.env)
        assert result.exit_code == code, (args, result.output, result.exception)
        return result.output


@pytest.fixture
def cli(tmp_path):
    run = Cli(tmp_path)
    run("init")
    return run


@pytest.fixture
def chain(cli):
    """init + parties + device + a lot."""
    cli.farm = cli(
        "party", "add", "Green Valley Farm", "--role", "producer", "--prefix", "9506000"
    ).strip()
    cli.carrier = cli("party", "add", "Cold Express", "--role", "carrier").strip()
    # the regulator makes its key on its own machine; the operator enrols the public key
    cli.authority_key = str(cli.tmp / "authority.pem")
    authority = cli("key", "new", "--out", cli.authority_key).strip()
    cli("party", "add", "Authority", "--role", "regulator", "--public-key", authority)
    cli.probe = cli("device", "add", "probe-1", "--owner", "Cold Express").strip()
    assert (
        cli(
            "lot",
            "register",
            "--gtin",
            GTIN,
            "--lot",
            "LOT42",
            "--product",
            "Kale",
            "--as",
            "Green Valley Farm",
            "--category",
            "food",
        ).strip()
        == URI
    )
    return cli


def test_init_is_idempotent_and_keys_are_private(cli, tmp_path):
    keys = sorted(p.name for p in (tmp_path / "k").iterdir())
    assert keys == ["log.pem", "registrar.pem"]
    before = (tmp_path / "k" / "log.pem").read_bytes()
    cli("init")
    assert (tmp_path / "k" / "log.pem").read_bytes() == before
    for path in (tmp_path / "k").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert json.loads(cli("stats", "--json"))["log_size"] == 1


def test_party_add_prints_a_did_and_makes_a_0600_key(chain, tmp_path):
    assert chain.farm.startswith("did:key:z6Mk")
    party_keys = list((tmp_path / "k" / "parties").iterdir())
    assert len(party_keys) == 2  # farm and carrier: the regulator's key is not on this machine
    assert not any(p.name.startswith("Authority") for p in party_keys)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in party_keys)
    out = chain("party", "add", "Green Valley Farm", "--role", "producer", code=1)
    assert "already enrolled" in out
    assert "Invalid value for '--role'" in chain("party", "add", "X", "--role", "wizard", code=2)


def test_device_add_with_public_key_only(chain, tmp_path):
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "probe.pub").write_bytes(pem)
    did = chain(
        "device",
        "add",
        "probe-2",
        "--owner",
        "Cold Express",
        "--public-key",
        str(tmp_path / "probe.pub"),
    ).strip()
    assert did == did_of(key)
    other = Ed25519PrivateKey.generate()
    assert chain(
        "device", "add", "probe-3", "--owner", "Cold Express", "--public-key", did_of(other)
    ).strip() == did_of(other)
    assert len(list((tmp_path / "k" / "devices").iterdir())) == 1  # only probe-1's
    assert "no party named" in chain("device", "add", "p4", "--owner", "Nobody", code=1)


def test_lot_register_refuses_a_bad_check_digit(chain):
    out = chain(
        "lot",
        "register",
        "--gtin",
        "09506000134353",
        "--lot",
        "L",
        "--product",
        "P",
        "--as",
        "Green Valley Farm",
        code=1,
    )
    assert "check digit" in out
    assert json.loads(chain("stats", "--json"))["lots"] == 1


def test_batch_register_is_a_hidden_alias_of_lot_register(chain):
    """The hidden alias `provenance batch register` (the old name) behaves as
    `lot register` (docs/cli.md) and is not listed in --help."""
    old = "batch"  # the alias, spelled apart so tools/rename_lots.py leaves it
    args = ["--gtin", GTIN, "--lot", "LOT7", "--product", "Kale", "--as", "Green Valley Farm"]
    assert chain(old, "register", *args).strip() == URI.replace("LOT42", "LOT7")
    refused = chain(old, "register", *args, code=1)  # the same command, the same refusal
    assert "already" in refused
    assert refused == chain("lot", "register", *args, code=1)
    usage, _, help_text = chain(old, "register", "--help").partition("\n")
    assert f" {old} register " in usage
    assert help_text == chain("lot", "register", "--help").partition("\n")[2]
    listed = chain("--help")
    assert "  lot " in listed
    assert f"  {old} " not in listed


def test_event_append_signs_unsigned_items_and_accepts_json_lines(chain):
    attach = {"kind": "attach", "batches": [URI], "data": {"device": chain.probe}}
    ids = chain("event", "append", "--as", "Green Valley Farm", input=json.dumps(attach)).split()
    assert len(ids) == 1 and len(ids[0]) == 64
    lines = "\n".join(
        json.dumps({"kind": "reading", "data": {"temperature_c": t}}) for t in (3.0, 4.0, 5.0)
    )
    ids = chain("event", "append", "--as", "probe-1", input=lines).split()
    assert len(ids) == 3
    array = json.dumps([{"kind": "inspect", "batches": [URI], "data": {"result": "pass"}}] * 2)
    assert (
        len(
            chain(
                "event", "append", "--as", "Authority", "--key", chain.authority_key, input=array
            ).split()
        )
        == 2
    )
    assert json.loads(chain("stats", "--json"))["events"]["reading"] == 3


def test_event_append_passes_signed_envelopes_through(chain, tmp_path):
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "d.pub").write_bytes(pem)
    chain(
        "device",
        "add",
        "logger-9",
        "--owner",
        "Green Valley Farm",
        "--public-key",
        str(tmp_path / "d.pub"),
    )
    chain(
        "event",
        "append",
        "--as",
        "Green Valley Farm",
        input=json.dumps({"kind": "attach", "batches": [URI], "data": {"device": did_of(key)}}),
    )
    from provenance.core.timefmt import format_time, now_micros

    envelope = sign(
        key, kind="reading", seq=7, time=format_time(now_micros()), data={"temperature_c": 2.5}
    )
    envelope_file = tmp_path / "e.json"
    envelope_file.write_text(json.dumps(envelope.to_json()))
    assert chain("event", "append", str(envelope_file)).strip() == envelope.event_id


@pytest.mark.parametrize(
    ("payload", "as_", "needle"),
    [
        ("{not json", "Green Valley Farm", "malformed JSON"),
        (
            '{"kind":"recall","batches":["' + URI + '"],"data":{"reason":"x","class":"I"}}',
            "Cold Express",
            "unauthorised: a carrier may not sign recall",
        ),
        (
            '{"kind":"reading","data":{"temperature_c":"warm"}}',
            "probe-1",
            "data.temperature_c: must be a number",
        ),
        (
            '{"kind":"inspect","batches":["' + URI + '"],"data":{"result":"pass"},"seq":3}',
            "Authority",
            "unsigned items carry only",
        ),
        (
            '{"kind":"inspect","batches":["' + URI + '"],"data":{"result":"pass"}}',
            None,
            "pass --as NAME",
        ),
        (
            '{"kind":"inspect","batches":["' + URI + '"],"data":{"result":"pass"}}',
            "Nobody",
            "no party or device named",
        ),
    ],
)
def test_event_append_refusals_exit_1_and_store_nothing(chain, payload, as_, needle):
    before = json.loads(chain("stats", "--json"))["log_size"]
    args = ["event", "append"] + (["--as", as_] if as_ else [])
    args += ["--key", chain.authority_key] if as_ == "Authority" else []
    assert needle in chain(*args, input=payload, code=1)
    assert json.loads(chain("stats", "--json"))["log_size"] == before


def test_event_append_is_all_or_nothing(chain):
    items = [
        {"kind": "inspect", "batches": [URI], "data": {"result": "pass"}},
        {"kind": "recall", "batches": [URI], "data": {"reason": "x", "class": "I"}},
    ]
    before = json.loads(chain("stats", "--json"))
    out = chain("event", "append", "--as", "Green Valley Farm", input=json.dumps(items), code=1)
    assert "item 1: rejected: unauthorised" in out
    after = json.loads(chain("stats", "--json"))
    assert after["log_size"] == before["log_size"]
    assert after["rejects"] == {"unauthorised": 1}


def test_verify_exit_codes(chain, tmp_path):
    assert chain("verify").startswith("OK")
    assert chain("verify", "--batch", URI).startswith("OK")
    assert "FAILED" in chain("verify", "--batch", URI.replace("LOT42", "NOPE"), code=1)
    assert "--bundle needs --log-key" in chain("verify", "--bundle", __file__, code=2)
    assert "No such option" in chain("verify", "--frobnicate", code=2)
    import sqlite3

    with sqlite3.connect(tmp_path / "p.db") as conn:
        conn.execute("UPDATE events SET data = replace(data, 'Kale', 'Kalo')")
    out = chain("verify", code=1)
    assert "BROKEN event" in out and "FAILED" in out


def test_checkpoint_kept_outside_catches_a_rollback(chain, tmp_path):
    kept = tmp_path / "kept.checkpoint"
    kept.write_text(chain("log", "checkpoint"))
    import sqlite3

    with sqlite3.connect(tmp_path / "p.db") as live, sqlite3.connect(tmp_path / "old.db") as old:
        live.backup(old)  # a consistent copy, WAL included
    chain(
        "event",
        "append",
        "--as",
        "Authority",
        "--key",
        chain.authority_key,
        input=json.dumps({"kind": "inspect", "batches": [URI], "data": {"result": "fail"}}),
    )
    assert chain("verify", "--checkpoint", str(kept)).startswith("OK")
    chain.env["PROVENANCE_DB"] = str(tmp_path / "old.db")
    later = tmp_path / "later.checkpoint"
    chain.env["PROVENANCE_DB"] = str(tmp_path / "p.db")
    later.write_text(chain("log", "checkpoint"))
    chain.env["PROVENANCE_DB"] = str(tmp_path / "old.db")
    out = chain("verify", "--checkpoint", str(later), code=1)
    assert "rolled back" in out


def test_a_bundle_is_judged_as_of_the_checkpoint_given(chain, tmp_path):
    """Issue 9: a bundle exported before a recall must not verify next to a checkpoint
    from after it; a fresh bundle exported --since an older checkpoint must."""
    log_key = chain("log", "key").strip()
    before, old_bundle = tmp_path / "before.checkpoint", tmp_path / "old.json"
    before.write_text(chain("log", "checkpoint"))
    old_bundle.write_text(chain("export", "proof", URI))
    recall = {"kind": "recall", "batches": [URI], "data": {"reason": "Listeria", "class": "I"}}
    chain(
        "event",
        "append",
        "--as",
        "Authority",
        "--key",
        chain.authority_key,
        input=json.dumps(recall),
    )
    after = tmp_path / "after.checkpoint"
    after.write_text(chain("log", "checkpoint"))
    check = ["verify", "--log-key", log_key, "--checkpoint"]
    out = chain(*check, str(after), "--bundle", str(old_bundle), code=1)
    assert out.startswith("FAILED: this bundle is as of log size") and "export proof" in out
    # A fresh bundle next to the older checkpoint: only with a consistency proof.
    fresh, since = tmp_path / "fresh.json", tmp_path / "since.json"
    fresh.write_text(chain("export", "proof", URI))
    assert "no consistency proof" in chain(*check, str(before), "--bundle", str(fresh), code=1)
    since.write_text(chain("export", "proof", URI, "--since", str(before)))
    assert "extends the checkpoint you gave" in chain(*check, str(before), "--bundle", str(since))
    assert "(the checkpoint you gave)" in chain(*check, str(after), "--bundle", str(fresh))
    # verify --batch builds that proof itself.
    assert chain("verify", "--batch", URI, "--checkpoint", str(before)).startswith("OK")


def test_read_only_commands_never_create_or_migrate(tmp_path):
    """An outdated ledger (tests/fixtures: before lineage) is not migrated by a command
    that only reads; it says to run `provenance migrate`, which does."""
    import shutil
    from pathlib import Path

    fixture = Path(__file__).resolve().parent / "fixtures" / "ledger-before-lineage.db"
    shutil.copyfile(fixture, tmp_path / "p.db")
    old = Cli(tmp_path)
    before = (tmp_path / "p.db").read_bytes()
    for command in (["stats"], ["party", "list"], ["log", "checkpoint"], ["verify"]):
        out = old(*command, code=1)
        assert out.startswith("Error: ") and "run `provenance migrate`" in out, out
        assert "0002_lineage" in out
    assert (tmp_path / "p.db").read_bytes() == before
    assert "up to date" in old("migrate")
    assert json.loads(old("stats", "--json"))["lots"] > 0
    (tmp_path / "nowhere").mkdir()
    missing = Cli(tmp_path / "nowhere")
    for command in (["stats"], ["verify"], ["party", "list"], ["migrate"], ["log", "key"]):
        assert "provenance init" in missing(*command, code=1)
    assert not (tmp_path / "nowhere" / "p.db").exists()


def test_log_commands(chain, tmp_path):
    note = chain("log", "checkpoint")
    lines = note.split("\n")
    assert lines[0].startswith("provenance.local/")
    assert int(lines[1]) == json.loads(chain("stats", "--json"))["log_size"]
    assert "provenance-heads" in lines[3] and lines[4] == "" and lines[5].startswith("— ")
    assert chain("log", "key").strip().startswith("did:key:z6Mk")
    assert chain("log", "key", "--note-key").startswith(lines[0] + "+")


def test_export_proof_verifies_without_a_database(chain, tmp_path):
    bundle = tmp_path / "b.json"
    bundle.write_text(chain("export", "proof", URI))
    log_key = chain("log", "key").strip()
    (tmp_path / "log.did").write_text(log_key)
    empty = Cli(tmp_path / "elsewhere")
    out = empty("verify", "--bundle", str(bundle), "--log-key", str(tmp_path / "log.did"))
    assert out.startswith("OK") and "complete" in out
    assert not (tmp_path / "elsewhere" / "p.db").exists()
    wrong = did_of(Ed25519PrivateKey.generate())
    assert "FAILED" in empty("verify", "--bundle", str(bundle), "--log-key", wrong, code=1)
    assert "no lot" in chain("export", "proof", URI.replace("LOT42", "LOT9"), code=1)


def test_stats_json_shape(chain):
    numbers = json.loads(chain("stats", "--json"))
    assert set(numbers) >= {"events", "lots", "parties", "devices", "rejects", "log_size"}
    assert numbers["events"] == {"enrol": 5, "commission": 1}
    assert (numbers["lots"], numbers["parties"], numbers["devices"]) == (1, 3, 1)


def test_party_and_device_lists(chain):
    parties = [json.loads(line) for line in chain("party", "list", "--json").splitlines()]
    assert [p["name"] for p in parties] == ["Green Valley Farm", "Cold Express", "Authority"]
    assert parties[0] == {
        "name": "Green Valley Farm",
        "role": "producer",
        "did": chain.farm,
        "revoked_from": None,
        "gs1_company_prefixes": ["9506000"],
        "custodial": True,  # the operator made and holds its key
    }
    assert "gs1_company_prefixes" not in parties[1]  # a carrier commissions nothing
    assert parties[2]["custodial"] is False  # the regulator enrolled its own public key
    text = chain("party", "list").splitlines()
    assert text[2].endswith("\tFalse") and text[0].endswith("\tTrue")
    chain("device", "revoke", "probe-1", "--from", "2026-01-01T00:00:00Z")
    (device,) = [json.loads(line) for line in chain("device", "list", "--json").splitlines()]
    assert device == {
        "name": "probe-1",
        "owner": "Cold Express",
        "did": chain.probe,
        "revoked_from": "2026-01-01T00:00:00Z",
    }
    assert chain.probe in chain("device", "list")


def test_device_revoke_from_a_time(chain):
    out = chain("device", "revoke", "probe-1", "--from", "2026-01-01T00:00:00Z")
    assert "revoked" in out
    chain(
        "event",
        "append",
        "--as",
        "Green Valley Farm",
        input=json.dumps({"kind": "attach", "batches": [URI], "data": {"device": chain.probe}}),
        code=1,
    )
    assert "--from" in chain("device", "revoke", "probe-1", "--from", "yesterday", code=1)


def test_commands_without_a_database_say_what_to_do(tmp_path):
    fresh = Cli(tmp_path)
    assert "provenance init" in fresh("stats", code=1)


def test_env_and_flags_choose_the_files(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        main, ["--db", str(tmp_path / "x.db"), "--keys", str(tmp_path / "kk"), "init"], env={}
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.db").exists() and (tmp_path / "kk" / "log.pem").exists()


def test_every_command_has_help_with_an_example():
    from click import Context, Group

    def walk(command, path):
        if isinstance(command, Group):
            context = Context(command)
            for name in command.list_commands(context):
                yield from walk(command.get_command(context, name), [*path, name])
        else:
            yield path, command

    for path, command in walk(main, []):
        assert command.help, path
        if path not in (["demo"],):
            assert "Example:" in command.help, path


@pytest.mark.external
def test_module_entry_point(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "provenance", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ},
    )
    assert done.returncode == 0 and "verify" in done.stdout


@pytest.mark.external
@pytest.mark.parametrize(
    "module", sorted({target.partition(":")[0] for target in SERVICE_COMMANDS.values()})
)
def test_a_service_command_module_imports_on_its_own(module):
    # Each loads on its own (the main group imports them only when first asked for).
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_lazy_command_resolves():
    from click import Context

    for group, table in ((main, SERVICE_COMMANDS), (export, EXPORT_COMMANDS)):
        context = Context(group)
        for name in table:
            assert group.get_command(context, name) is not None, name
        assert set(table) <= set(group.list_commands(context))
