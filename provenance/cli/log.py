"""`provenance log …` and `provenance export proof`: what the transparency log gives out.

`log checkpoint` prints the latest signed checkpoint (C2SP tlog-checkpoint), `log key` the
log's public key as a did:key or a signed-note verifier key; the `export` group's `proof`
prints a lot's offline proof bundle, with a consistency proof from a checkpoint the verifier
holds, and loads its other exports (EPCIS, FSMA 204) from `provenance.cli.exchange` when
first asked.
"""

from __future__ import annotations

import json

import click

from provenance.cli.context import Context, pass_context
from provenance.cli.errors import friendly
from provenance.cli.groups import LazyGroup
from provenance.cli.inputs import MAX_CHECKPOINT_INPUT, read_input

EXPORT_COMMANDS = {
    "epcis": "provenance.cli.exchange:export_epcis",
    "fsma204": "provenance.cli.exchange:export_fsma204",
}


@click.group("log", cls=LazyGroup, lazy={"witness": "provenance.cli.witnessing:command"})
def log_group() -> None:
    """The transparency log: checkpoints, the log key and its tiles."""


@log_group.command("checkpoint")
@click.option(
    "--latest",
    is_flag=True,
    help="The newest log-signed checkpoint, even before its witnesses cosigned it.",
)
@pass_context
@friendly
def log_checkpoint(ctx: Context, latest: bool) -> None:
    """Print the checkpoint the log shows (C2SP tlog-checkpoint, signed note):
    with witnesses configured (`provenance log witness`), the newest one that
    reached their quorum, with their cosignature lines, as /log/v1/checkpoint,
    the retained MQTT checkpoint and the bundles carry it.

    Example: provenance log checkpoint > today.checkpoint
    """
    from provenance.store.cosignatures import shown_checkpoint

    store = ctx.reader()
    if latest:
        note = store.latest_checkpoint()
    else:
        shown = shown_checkpoint(store)
        note = None if shown is None else shown.note
    if note is None:
        raise click.ClickException("no checkpoint yet: run `provenance init`")
    click.echo(note, nl=False)


@log_group.command("key")
@click.option("--note-key", is_flag=True, help="Print the C2SP signed-note verifier key instead.")
@pass_context
@friendly
def log_key_command(ctx: Context, note_key: bool) -> None:
    """Print the log's public key as a did:key (give it to verifiers).

    Example: provenance log key > log.did
    """
    if note_key:
        from provenance.core.checkpoint import format_verifier_key

        name = ctx.reader().get_meta("origin") or ""
        click.echo(format_verifier_key(name, ctx.log_public_key()))
        return
    from provenance.core.identity import did_from_public_key

    click.echo(did_from_public_key(ctx.log_public_key()))


@log_group.command("tiles")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="The tiles folder (made if missing); publish it with any static web server.",
)
@pass_context
@friendly
def log_tiles(ctx: Context, out: str) -> None:
    """Write the log as C2SP tlog-tiles (tiles, entry bundles, envelope bundles and
    the checkpoint) into DIR, or catch DIR up: only what the folder lacks is read
    and written, and the checkpoint goes last (docs/protocol.md, "Tiles").

    Example: provenance log tiles --out /srv/www/log
    """
    from provenance.infra.tile_files import TileDirectory
    from provenance.ledger.tiles import publish_tiles

    store = ctx.reader()  # a bad --db is refused before any folder is made
    directory = TileDirectory(out)
    added = publish_tiles(store, directory)
    click.echo(f"{out}: {directory.size()} leaves ({added} added)")


@click.group(cls=LazyGroup, lazy=EXPORT_COMMANDS)
def export() -> None:
    """Export proofs and records."""


@export.command("proof")
@click.argument("uri")
@click.option(
    "--since",
    metavar="FILE",
    help="A checkpoint the verifier holds: add a consistency proof from it, so that "
    "`verify --bundle … --checkpoint FILE` accepts the bundle.",
)
@pass_context
@friendly
def export_proof(ctx: Context, uri: str, since: str | None) -> None:
    """Print the offline proof bundle of lot URI (JSON), as of the latest checkpoint.

    Example: provenance export proof https://id.gs1.org/01/09506000134352/10/LOT42 > lot42.json
    """
    from provenance.ledger.proofs import build_bundle

    note = read_input(since, what="checkpoint", limit=MAX_CHECKPOINT_INPUT) if since else None
    bundle = build_bundle(ctx.reader(), uri, since=note)
    click.echo(json.dumps(bundle, indent=1, ensure_ascii=False))
