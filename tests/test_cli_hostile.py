"""Hostile input to every command (issue 9: CLI tracebacks and unbounded reads).

Every command of the `provenance` group, found by walking the group (lazy
commands included, so a new command must be listed in COMMANDS below or this
fails), is run with each hostile input that applies to it:

- as its ledger (`--db`): a folder, an unrelated SQLite database (its bytes
  must be unchanged afterwards: no schema written into it, no WAL switch),
  another program's database with a `_migrations` table of its own, a file
  that is not SQLite and not UTF-8, and, except where a missing ledger
  is documented as fine, a path with nothing there (which must stay absent);
- as each file it reads: a file that is not UTF-8, a folder, and /dev/zero
  (an endless file: the read must be bounded); as standard input, where it
  reads that, the first and the last.

Each must exit non-zero with output that starts with `Error:` and no traceback.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from provenance.cli.main import main

GTIN = "09506000134352"
URI = f"https://id.gs1.org/01/{GTIN}/10/LOT42"
SSCC = "106141412345678908"
ROOT = Path(__file__).resolve().parent.parent
NOT_UTF8 = b"\xff\xfe\x80 not UTF-8 \xc3\x28\n"
SPEC_DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"  # the did:key spec example
DEAD_BROKER = "mqtts://127.0.0.1:9"  # never reached: every case fails before connecting
OTHER_DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"  # a party's old key

WITNESS_VKEY = "witness.example/1+8d0efbdc+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
SERVICE_DEADLINE_S = 60
READ, WRITE = "read", "write"
STDIN = "stdin"  # the input "file" that is standard input  # how a command opens the ledger


@dataclass
class Case:
    """How to run one command: its arguments (``{name}`` is replaced by the path of
    input file *name*), how it opens the ledger (READ, WRITE or None: not at all),
    and the input files it reads."""

    args: list[str]
    db: str | None = None
    files: tuple[str, ...] = ()
    missing_db_ok: bool = False  # a missing ledger is documented as fine
    input: str | None = None
    service: bool = False  # runs until stopped when all is well: run it bounded, in a child
    skip_hostile: dict[str, str] = field(default_factory=dict)  # file -> why not


# Every command, by its path. A command with no ledger and no input file still gets an
# entry (its hostile-input surface is nil; say why).
COMMANDS: dict[str, list[Case]] = {
    "lot register": [
        Case(["--gtin", GTIN, "--lot", "L9", "--product", "Kale", "--as", "Farm"], WRITE)
    ],
    "batch register": [  # the hidden alias of lot register: the same command
        Case(["--gtin", GTIN, "--lot", "L9", "--product", "Kale", "--as", "Farm"], WRITE)
    ],
    "backup": [Case(["{out}"], READ)],  # reads the ledger, writes one new file
    "demo": [],  # its own --dir, replaced each run; reads no input file
    "down": [],  # reads only the state folder's status.json (tests/test_up.py)
    "device add": [
        Case(["d9", "--owner", "Farm", "--public-key", "{public_key}"], WRITE, ("public_key",))
    ],
    "device list": [Case([], READ)],
    "device revoke": [Case(["probe", "--reason", "lost"], WRITE)],
    "device rotate": [Case(["probe", "--new-public-key", "{public_key}"], WRITE, ("public_key",))],
    "event append": [
        Case(["{events}", "--as", "Farm"], WRITE, ("events",)),
        Case(["-", "--as", "Farm"], None, (STDIN,)),
    ],
    "disclosure export": [Case(["--batch", URI, "--as", "Authority", "--out", "{out}"], READ)],
    "disclosure grant": [Case(["--to", "Authority", "--as", "Farm"], WRITE)],
    "disclosure show": [Case(["--batch", URI, "--as", "Authority"], READ)],
    "disclosure withdraw": [Case(["--to", "Authority", "--as", "Farm"], WRITE)],
    "export epcis": [Case([], READ)],
    "export fsma204": [Case([], READ)],
    "export proof": [Case([URI, "--since", "{checkpoint}"], READ, ("checkpoint",))],
    # gateway/config.py reads --config whole: /dev/zero is left out (reported in the lead's
    # notes); the other hostile files are refused.
    "gateway": [
        Case(
            ["--config", "{gateway_config}"],
            None,
            ("gateway_config",),
            service=True,
            skip_hostile={"zero": "gateway/config.py is the gateway helper's"},
        )
    ],
    "import epcis": [
        Case(["{epcis}", "--as", "Farm", "--schema", "{schema}"], WRITE, ("epcis", "schema"))
    ],
    "ingest": [
        Case(["--broker", DEAD_BROKER, "--tls-ca", "{tls_ca}"], WRITE, ("tls_ca",), service=True)
    ],
    "init": [Case([], WRITE, missing_db_ok=True)],
    "label": [Case([URI, "--out", "{out}"], READ, missing_db_ok=True)],
    "log checkpoint": [Case([], READ)],
    "log key": [Case(["--note-key"], READ)],  # the origin is in the ledger
    "log tiles": [Case(["--out", "{out}"], READ)],
    "log witness": [  # the ledger is where the witnesses and cosignatures are kept
        Case(["--witness", f"Regulator=http://127.0.0.1:9={WITNESS_VKEY}"], WRITE, service=True)
    ],
    "migrate": [Case([], WRITE)],
    "notify run": [
        Case(["--broker", DEAD_BROKER, "--tls-ca", "{tls_ca}"], READ, ("tls_ca",), service=True),
        Case(
            ["--broker", DEAD_BROKER.replace("mqtts", "mqtt"), "--cursor", "{cursor}"],
            READ,
            ("cursor",),
            service=True,
        ),
        Case(
            ["--broker", DEAD_BROKER, "--subscriptions", "{subscriptions}"],
            READ,
            ("subscriptions",),
            service=True,
        ),
    ],
    "notify subscribe": [
        Case(
            ["Farm", "--webhook", "http://127.0.0.1:9/", "--subscriptions", "{subscriptions}"],
            READ,
            ("subscriptions",),
        )
    ],
    "notify subscriptions": [
        Case(["--subscriptions", "{subscriptions}"], None, ("subscriptions",))
    ],
    "key new": [],  # writes one new file, reads none and no ledger
    "party add": [Case(["Newcomer", "--role", "producer"], WRITE)],
    "pallet pack": [Case([SSCC, "--lot", f"{URI}=100KGM", "--as", "Farm"], WRITE)],
    "pallet unpack": [Case([SSCC, "--as", "Farm"], WRITE)],
    "pallet ship": [Case([SSCC, "--to", "Farm", "--as", "Farm"], WRITE)],
    "pallet show": [Case([SSCC], READ)],
    "pallet label": [Case([SSCC, "--out", "{out}"], READ, missing_db_ok=True)],
    "product stability": [Case(["--gtin", GTIN, "--as", "Farm", "--band", "2..8=30d"], WRITE)],
    "product show": [Case(["--gtin", GTIN], READ)],
    "party grant": [Case(["Farm", "--prefix", "9520123"], WRITE)],
    "party list": [Case([], READ)],
    "party revoke": [Case(["Farm"], WRITE)],
    "party rotate": [
        Case(["Farm", "--new-public-key", "{public_key}"], WRITE, ("public_key",)),
        Case(["Farm", "--approval", "{approval}"], WRITE, ("approval",)),
    ],
    # No ledger: the regulator's own machine. Its --key and --new-public-key files.
    "party rotate-approve": [
        Case(
            [
                "--subject",
                OTHER_DID,
                "--new-public-key",
                "{public_key}",
                "--key",
                "{authority_key}",
                "--out",
                "{out}",
            ],
            None,
            ("public_key", "authority_key"),
        )
    ],
    "portal anchor": [Case([], WRITE)],
    "portal audit": [Case(["--verify"], READ)],  # the anchors are in the ledger
    "portal key-import": [Case(["Farm", "--key", "{private_key}"], READ, ("private_key",))],
    "portal key-remove": [],  # the accounts folder only
    "portal keys": [],  # the accounts folder only
    "recall ack": [Case([URI, "--as", "Farm", "--recall", "ab" * 32], WRITE)],
    "recall report": [Case([URI], READ)],
    "recall sign": [
        Case(
            [URI, "--as", "Authority", "--key", "{authority_key}", "--reason", "Listeria"],
            WRITE,
            ("authority_key",),
        )
    ],
    "rules check": [Case(["--config", "{rules}"], None, ("rules",))],
    "rules init": [Case([], WRITE)],
    "rules list": [Case([], READ)],
    "rules release": [Case([URI, "--reason", "checked"], WRITE)],
    "rules run": [
        Case(
            ["--config", "{rules}", "--cursor", "{cursor}"],
            WRITE,
            ("rules", "cursor"),
            service=True,
        ),
        Case(
            ["--config", "{rules}", "--broker", DEAD_BROKER, "--tls-ca", "{tls_ca}"],
            WRITE,
            ("tls_ca",),
            service=True,
        ),
    ],
    "serve": [Case(["--port", "0"], READ, service=True)],
    "simulate": [Case(["--broker", DEAD_BROKER.replace("mqtts", "mqtt")], WRITE, service=True)],
    "stats": [Case([], READ)],
    "status": [],  # reads only the state folder's status.json (tests/test_up.py)
    "token create": [Case(["Farm"], READ)],
    "token list": [],  # the accounts folder only
    "token revoke": [],  # the accounts folder only
    "trace": [Case([URI], READ)],
    # The whole stack: its ledger goes through `init` and then each service's own checks
    # (the cases above); tests/test_up.py starts it for real, and a broken rule file.
    "up": [],
    "user add": [
        Case(
            ["bob", "--role", "producer", "--party", "Farm", "--password-stdin"],
            READ,
            input="correct horse battery\n",
        ),
        Case(["carol", "--role", "admin", "--password-stdin"], None, (STDIN,)),
    ],
    "user disable": [],  # the accounts folder only
    "user enable": [],  # the accounts folder only
    "user list": [],  # the accounts folder only
    "user passwd": [Case(["alice", "--password-stdin"], None, (STDIN,))],
    "verify": [
        Case(["--checkpoint", "{checkpoint}"], READ, ("checkpoint",)),
        Case(["--batch", URI, "--checkpoint", "{checkpoint}"], READ, ("checkpoint",)),
        Case(
            ["--bundle", "{bundle}", "--log-key", "{log_key}", "--checkpoint", "{checkpoint}"],
            None,
            ("bundle", "log_key", "checkpoint"),
        ),
        Case(["--checkpoint", "{checkpoint}", "--policy", "{policy}"], None, ("policy",)),
        Case(
            ["--bundle", "{bundle}", "--log-key", "{log_key}", "--disclosures", "{disclosures}"],
            None,
            ("bundle", "log_key", "disclosures"),
        ),
        Case(
            ["--notice", "{notice}", "--registrar", SPEC_DID, "--previous", "{notice}"],
            None,
            ("notice",),
        ),
    ],
    "witness add-log": [Case(["--dir", "{witness}", "--key", "{log_vkey}"], None, ("log_vkey",))],
    "witness evidence": [],  # reads only its own --dir (tests/test_witness.py)
    "witness init": [],  # makes its own new --dir; reads no input file
    "witness key": [],  # reads only its own --dir (tests/test_witness.py: a missing one)
    "witness serve": [],  # its own --dir (tests/test_witness.py); request bodies are bounded
    "place add": [Case(["9506000000008", "--name", "Packhouse", "--as", "Farm"], WRITE)],
    "place list": [Case([], READ)],
    "place show": [Case(["9506000000008"], READ)],
    "serial issue": [Case([URI, "--count", "2", "--as", "Farm"], WRITE)],
    "serial list": [Case([URI], READ)],
    "serial sheet": [Case([URI, "--out", "{out}"], READ)],  # no serials: Error, exit 1
}


def walk(group: click.Group, ctx: click.Context, prefix: tuple[str, ...] = ()):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = (*prefix, name)
        if isinstance(command, click.Group):
            yield from walk(command, click.Context(command, parent=ctx, info_name=name), path)
        else:
            yield " ".join(path)


ALL = sorted(walk(main, click.Context(main, info_name="provenance")))


def test_every_command_is_in_the_table():
    assert sorted(COMMANDS) == ALL, "list each new command in COMMANDS (and its inputs)"


# --- the cases ---------------------------------------------------------------------------------

DB_KINDS = ("folder", "foreign", "lookalike", "garbage", "missing")
FILE_KINDS = ("not-utf8", "folder", "zero")


def _lane(case, target: str) -> tuple:
    """A case run as a child process (see the test) is `external`."""
    return (pytest.mark.external,) if case.service or target == STDIN else ()


def _cases():
    for command in ALL:
        for number, case in enumerate(COMMANDS.get(command, [])):
            label = f"{command}#{number}"
            if case.db is not None:
                for kind in DB_KINDS:
                    if kind == "missing" and case.missing_db_ok:
                        continue
                    yield pytest.param(
                        command, case, "db", kind, id=f"{label}-db-{kind}", marks=_lane(case, "db")
                    )
            for name in case.files:
                for kind in FILE_KINDS:
                    if kind in case.skip_hostile or (name == STDIN and kind == "folder"):
                        continue
                    ident = f"{label}-{name}-{kind}"
                    yield pytest.param(command, case, name, kind, id=ident, marks=_lane(case, name))


# --- a valid world to spoil one input of ------------------------------------------------------


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Path:
    """A ledger with a farm, a regulator, a device, lot LOT42 and a rules key, and a
    valid file for every input."""
    base = tmp_path_factory.mktemp("valid")
    env = {"PROVENANCE_DB": str(base / "p.db"), "PROVENANCE_KEYS": str(base / "keys")}
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, list(args), env=env)
        assert result.exit_code == 0, (args, result.output)
        return result.output

    run("init")
    run("party", "add", "Farm", "--role", "producer", "--prefix", "9506000")
    authority = run("key", "new", "--out", str(base / "authority.pem")).strip()
    run("party", "add", "Authority", "--role", "regulator", "--public-key", authority)
    run("device", "add", "probe", "--owner", "Farm")
    run("lot", "register", "--gtin", GTIN, "--lot", "LOT42", "--product", "Kale", "--as", "Farm")
    run("rules", "init")
    runner.invoke(
        main,
        ["user", "add", "alice", "--role", "admin", "--password-stdin"],
        env=env,
        input="correct horse battery\n",
    )
    files = base / "files"
    files.mkdir()
    (files / "checkpoint").write_text(run("log", "checkpoint"))
    (files / "bundle").write_text(run("export", "proof", URI))
    (files / "log_key").write_text(run("log", "key"))
    (files / "public_key").write_text(run("log", "key"))  # any did:key
    (files / "authority_key").write_bytes((base / "authority.pem").read_bytes())
    (files / "notice").write_text(json.dumps({"format": "provenance-recall-notice/v2"}))
    (files / "private_key").write_bytes((base / "keys" / "registrar.pem").read_bytes())
    farm = json.loads(run("party", "list", "--json").splitlines()[0])["did"]
    run(
        "party",
        "rotate-approve",
        "--subject",
        farm,
        "--new-public-key",
        run("log", "key").strip(),
        "--key",
        str(base / "authority.pem"),
        "--out",
        str(files / "approval"),
    )
    (files / "events").write_text(json.dumps({"kind": "inspect", "batches": [URI], "data": {}}))
    (files / "epcis").write_text(json.dumps({"type": "EPCISDocument"}))
    disclosures = {"format": "provenance-disclosures/v1", "lot": URI, "events": {}}
    (files / "disclosures").write_text(json.dumps(disclosures))
    (files / "schema").write_text("{}")
    (files / "rules").write_bytes((ROOT / "rules.example.toml").read_bytes())
    (files / "cursor").write_text("0\n")
    (files / "subscriptions").write_text('{"subscribers": []}')
    (files / "tls_ca").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (files / "gateway_config").write_text("")
    note_key = run("log", "key", "--note-key").strip()
    (files / "log_vkey").write_text(note_key + "\n")
    (files / "policy").write_text(f"log {note_key}\nquorum none\n")
    run("witness", "init", "--dir", str(files / "witness"), "--name", "witness.example/1")
    # The in-process commands' ledger connections close when collected, and the last
    # one to close removes p.db-wal: collect now, not while a test copies the folder.
    gc.collect()
    return base


def _hostile_file(path: Path, kind: str) -> str:
    if kind == "not-utf8":
        path.write_bytes(NOT_UTF8)
        return str(path)
    if kind == "folder":
        path.mkdir()
        return str(path)
    assert kind == "zero"
    return "/dev/zero"


def _hostile_db(path: Path, kind: str) -> None:
    if kind == "folder":
        path.mkdir()
    elif kind == "foreign":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE customers (name TEXT)")
            conn.execute("INSERT INTO customers VALUES ('Ada')")
        conn.close()
    elif kind == "lookalike":  # another program's migrations table by the same name
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE _migrations (version INTEGER, applied TEXT)")
            conn.execute("INSERT INTO _migrations VALUES (1, '2020-01-01')")
        conn.close()
    elif kind == "garbage":
        path.write_bytes(NOT_UTF8 * 100)
    else:
        assert kind == "missing"


def _run_child(
    argv: list[str], env: dict[str, str | None], stdin: str | None, text: str | None
) -> tuple[int, str]:
    options = {
        "stdout": subprocess.PIPE,
        "stderr": subprocess.STDOUT,
        "timeout": SERVICE_DEADLINE_S,
        "check": False,
        "env": {**os.environ, **{k: v for k, v in env.items() if v is not None}},
    }
    if stdin is not None:
        with open(stdin, "rb") as stream:
            done = subprocess.run(argv, stdin=stream, **options)
    else:
        done = subprocess.run(argv, input=(text or "").encode(), **options)
    return done.returncode, done.stdout.decode("utf-8", "replace")


def _snapshot(path: Path) -> object:
    if path.is_dir():
        return sorted(p.name for p in path.iterdir())
    return path.read_bytes() if path.exists() else None


@pytest.mark.parametrize(("command", "case", "target", "kind"), list(_cases()))
def test_hostile_input_is_an_error_never_a_traceback(valid, tmp_path, command, case, target, kind):
    work = tmp_path / "w"
    shutil.copytree(valid, work)
    db = work / "p.db"
    inputs = {p.name: str(p) for p in (work / "files").iterdir()}
    inputs["out"] = str(tmp_path / "label.png")
    if target == "db":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        db = tmp_path / "hostile.db"
        _hostile_db(db, kind)
    else:
        inputs[target] = _hostile_file(tmp_path / f"hostile-{target}", kind)
    stdin = inputs.get(STDIN) if target == STDIN else None
    before = _snapshot(db)
    args = [arg.format(**inputs) for arg in case.args]
    env = {
        "PROVENANCE_DB": str(db),
        "PROVENANCE_KEYS": str(work / "keys"),
        "PROVENANCE_ACCOUNTS": str(work / "accounts"),
        "PROVENANCE_MQTT_PASSWORD": None,
    }
    if case.service or stdin:  # a child with a deadline: a service would run on, and a
        # real standard input that may never end
        argv = [sys.executable, "-m", "provenance", *command.split(), *args]
        code, output = _run_child(argv, env, stdin, case.input)
    else:
        result = CliRunner().invoke(main, [*command.split(), *args], env=env, input=case.input)
        code, output = result.exit_code, result.output
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert code != 0, output
    assert "Traceback" not in output
    assert output.startswith("Error: "), output
    if target == "db":
        assert _snapshot(db) == before, f"{command} changed the {kind} --db"
        if kind == "missing":
            assert "provenance init" in output
        assert not Path(f"{db}-wal").exists()
