"""`provenance witness …`: run a C2SP tlog-witness on your own machine.

The witness's folder (--dir) holds its key (witness.pem, mode 0600, never leaves
the machine) and its database (witness.db: the logs it follows, their keys, and
the last checkpoint it cosigned for each). Listed in
`provenance.cli.main.SERVICE_COMMANDS`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import click

from provenance.core.checkpoint import parse_verifier_key
from provenance.core.cosignature import cosigner_key_id, format_cosigner_key
from provenance.core.errors import KeyFileError, ProvenanceError, ValidationError
from provenance.infra.keystore import KeyStore

KEY_NAME = "witness"
DATABASE = "witness.db"
DIR_OPTION = click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False),
    help="The witness's folder (its key and database).",
)


def _open(directory: str):  # -> tuple[WitnessState, Ed25519PrivateKey]
    from provenance.witness.state import WitnessState

    folder = Path(directory)
    if not (folder / DATABASE).is_file():
        raise click.ClickException(
            f"{folder} holds no witness: run `provenance witness init --dir {folder} "
            "--name NAME` first"
        )
    try:
        key = KeyStore(folder).load(KEY_NAME)
        state = WitnessState(folder / DATABASE)
    except ProvenanceError as exc:
        raise click.ClickException(f"{exc}; check --dir") from None
    return state, key


@click.group("witness")
def group() -> None:
    """A witness that cosigns logs it follows (C2SP tlog-witness), for a regulator,
    a consumer association or an industry body to run on its own machine."""


@group.command("init")
@DIR_OPTION
@click.option(
    "--name",
    required=True,
    help="The witness's name in its cosignatures, e.g. witness.regulator.example/1.",
)
def init(directory: str, name: str) -> None:
    """Make a new witness: its own key (mode 0600) and database. Prints its verifier
    key, which goes into verifiers' policy files (`witness <name> <vkey>`).

    Example: provenance witness init --dir /var/lib/witness --name witness.regulator.example/1
    """
    from provenance.witness.state import WitnessState

    try:
        cosigner_key_id(name, bytes(32))  # the name's rules, before anything is made
    except ValidationError as exc:
        raise click.ClickException(
            f"--name: {exc.rule}; use a schema-less URL like witness.example.org/1"
        ) from None
    folder = Path(directory)
    if (folder / DATABASE).exists() or (folder / f"{KEY_NAME}.pem").exists():
        raise click.ClickException(
            f"{folder} already holds a witness; refusing to replace its key. Use another --dir"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = KeyStore(folder).create(KEY_NAME)
        WitnessState(folder / DATABASE, create=True, name=name).close()
    except (KeyFileError, OSError) as exc:
        raise click.ClickException(f"cannot make the witness in {folder}: {exc}") from None
    click.echo(format_cosigner_key(name, key.public_key().public_bytes_raw()))


@group.command("key")
@DIR_OPTION
def key(directory: str) -> None:
    """Print the witness's verifier key (type 0x04) for policy files.

    Example: provenance witness key --dir /var/lib/witness
    """
    state, private_key = _open(directory)
    try:
        click.echo(format_cosigner_key(state.name, private_key.public_key().public_bytes_raw()))
    finally:
        state.close()


@group.command("evidence")
@DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Every record whole, as JSON.")
def evidence(directory: str, as_json: bool) -> None:
    """The checkpoints this witness refused as inconsistent with what it had
    cosigned, each signed by the log itself, kept with what was cosigned then:
    the evidence that a log showed two histories. Exit 1 when there is any.

    Example: provenance witness evidence --dir /var/lib/witness --json > evidence.json
    """
    import json

    from provenance.core.checkpoint import Checkpoint

    state, _key = _open(directory)
    try:
        kept = state.evidence()
    finally:
        state.close()
    if as_json:
        click.echo(json.dumps([e.to_json() for e in kept], indent=1))
    elif not kept:
        click.echo("no evidence: this witness has refused no checkpoint signed by a log it follows")
    for item in kept if not as_json else ():
        body = item.refused.rpartition("\n\n")[0] + "\n"
        refused = Checkpoint.from_text(body)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(item.received))
        click.echo(
            f"{when} {item.origin}: refused size {refused.size} "
            f"(from old size {item.old_size}): {item.reason}"
        )
    sys.exit(1 if kept else 0)


@group.command("add-log")
@DIR_OPTION
@click.option(
    "--key",
    "vkey",
    required=True,
    help="The log's verifier key (`provenance log key --note-key` prints it), or a file "
    "holding it.",
)
@click.option("--origin", help="The log's origin line (default, and it must be: the key's name).")
def add_log(directory: str, vkey: str, origin: str | None) -> None:
    """Follow a log: cosign its checkpoints signed by this key, each only with a
    consistency proof from the last one cosigned.

    Example: provenance witness add-log --dir /var/lib/witness --key "$(cat log.vkey)"
    """
    text = vkey
    if "+" not in vkey and os.path.isfile(vkey):
        with open(vkey, encoding="utf-8", errors="replace") as handle:
            text = handle.read(64 * 1024)
    try:
        name, public_key = parse_verifier_key(text.strip())
    except ValidationError as exc:
        raise click.ClickException(
            f"--key: {exc.rule}; give the log's note verifier key "
            "(`provenance log key --note-key` on the log's machine)"
        ) from None
    if origin is not None and origin != name:
        raise click.ClickException(
            f"--origin {origin!r} is not the key's name {name!r}: a log's key is named after "
            "its origin; check that this is the right log's key"
        )
    state, _ = _open(directory)
    try:
        added = state.add_log(name, name, public_key)
    finally:
        state.close()
    click.echo(f"{'following' if added else 'already following'} {name}")


@group.command("serve")
@DIR_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8380, show_default=True, help="TCP port."
)
@click.option(
    "--threads", type=click.IntRange(1, 64), default=4, show_default=True, help="Request threads."
)
def serve(directory: str, host: str, port: int, threads: int) -> None:
    """Serve the witness: POST /add-checkpoint, GET /<origin hash>/checkpoint.

    Example: provenance witness serve --dir /var/lib/witness --host 0.0.0.0 --port 8380
    """
    import waitress

    from provenance.witness.http import create_app
    from provenance.witness.service import MAX_REQUEST, Witness

    state, private_key = _open(directory)
    witness = Witness(state, private_key)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    follows = ", ".join(s.origin for s in state.logs()) or "no log yet (add-log)"
    click.echo(f"witness {witness.name} on http://{host}:{port}/ follows {follows}", err=True)
    try:
        waitress.serve(
            create_app(witness),
            host=host,
            port=port,
            threads=threads,
            ident="provenance-witness",
            max_request_body_size=MAX_REQUEST,
        )
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    finally:
        state.close()


# --- `provenance verify … --policy P` ----------------------------------------------------------

CLOCK_SKEW = 600
"""Seconds a cosignature may be dated ahead of this machine's clock."""


def require_policy(
    policy_path: str,
    *,
    checkpoint: str | None = None,
    bundle: object = None,
    log_key: bytes | None = None,
) -> bytes:
    """`verify --policy`: the checkpoint note given and/or the bundle's must satisfy
    the C2SP policy at ``policy_path`` (a log it lists, or ``log_key``, and its quorum
    of witness cosignatures). Prints what held; raises ClickException naming every
    missing or wrong witness. Returns the log key that signed (for the bundle check)."""
    import time

    from provenance.cli.inputs import read_input
    from provenance.core.policy import MAX_POLICY_SIZE, PolicyError, parse_policy, require_quorum

    data = read_input(policy_path, what="policy", limit=MAX_POLICY_SIZE, text=False)
    try:
        policy = parse_policy(data)
    except ValidationError as exc:
        raise click.ClickException(f"{policy_path}: {exc}; fix the policy file") from None
    notes: list[tuple[str, str]] = []
    if checkpoint is not None:
        notes.append(("the checkpoint", checkpoint))
    if bundle is not None:
        note = bundle.get("checkpoint") if isinstance(bundle, dict) else None
        if not isinstance(note, str):
            raise click.ClickException(
                "the bundle carries no checkpoint note to apply the policy to"
            )
        notes.append(("the bundle's checkpoint", note))
    if not notes:
        raise click.UsageError("--policy needs --checkpoint or --bundle")
    now = int(time.time()) + CLOCK_SKEW
    signer = log_key
    for what, note in notes:
        origin = note.split("\n", 1)[0]
        extra = [(origin, log_key)] if log_key is not None else []
        try:
            verdict = require_quorum(note, policy, extra_logs=extra, now=now)
        except PolicyError as exc:
            for line in exc.verdict.unknown if exc.verdict else ():
                click.echo(f"note: {what}: {line}", err=True)
            raise click.ClickException(f"{what} does not satisfy {policy_path}: {exc}") from None
        for line in verdict.unknown:
            click.echo(f"note: {what}: {line} (not counted)", err=True)
        cosigners = ", ".join(verdict.cosigned) or "no witness"
        missing = f"; not cosigned by {', '.join(verdict.missing)}" if verdict.missing else ""
        click.echo(
            f"policy: {what} (size {verdict.checkpoint.size} of {verdict.checkpoint.origin}) "
            f"meets quorum {verdict.quorum}: cosigned by {cosigners}{missing}"
        )
        signer = signer or verdict.log_key
    assert signer is not None  # a verdict that is ok names its log key
    return signer
