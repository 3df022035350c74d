"""The `provenance` command line: the main group and where each command lives.

Each command parses its input, calls one library function and turns our errors into a
message and an exit code (`provenance.cli.errors`); what commands share is in
`provenance.cli.context` (the ledger and keys), `provenance.cli.inputs` (capped file
reading) and `provenance.cli.options` (option decorators). A command group is a module of
its own under `provenance/cli/`, registered here with one line: in the list at the end
when it is light to import, else in :data:`SERVICE_COMMANDS`, which loads it only when it
is first asked for (so `provenance --help` does not load Flask or paho).
"""

from __future__ import annotations

import click

from provenance.cli import events, identities, ledger, log, lots, products, verify
from provenance.cli.context import Context
from provenance.cli.groups import MainGroup
from provenance.core.terminal import escape_standard_streams

# Commands loaded when first asked for, by name: "module:attribute".
SERVICE_COMMANDS = {
    "backup": "provenance.cli.backup:command",
    "demo": "provenance.cli.demo:command",
    "disclosure": "provenance.cli.disclosures:disclosure",
    "down": "provenance.cli.up:down",
    "gateway": "gateway.cli:command",
    "import": "provenance.cli.exchange:import_group",
    "ingest": "provenance.cli.ingest:command",
    "key": "provenance.cli.keys:key_group",
    "label": "provenance.cli.label:command",
    "notify": "provenance.cli.notify:command",
    "place": "provenance.cli.places:group",
    "pallet": "provenance.cli.pallet:group",
    "portal": "provenance.cli.accounts:portal",
    "recall": "provenance.cli.recall:command",
    "rules": "provenance.cli.rules:group",
    "serial": "provenance.cli.serials:group",
    "serve": "provenance.cli.serve:command",
    "simulate": "provenance.cli.simulate:command",
    "status": "provenance.cli.up:status",
    "token": "provenance.cli.accounts:token",
    "trace": "provenance.cli.trace:command",
    "up": "provenance.cli.up:up",
    "user": "provenance.cli.accounts:user",
    "witness": "provenance.cli.witness:group",
}


@click.group(cls=MainGroup, lazy=SERVICE_COMMANDS)
@click.option(
    "--db",
    envvar="PROVENANCE_DB",
    default="provenance.db",
    show_default=True,
    help="The ledger database (env PROVENANCE_DB).",
)
@click.option(
    "--keys",
    envvar="PROVENANCE_KEYS",
    default="keys",
    show_default=True,
    help="Folder of private keys (env PROVENANCE_KEYS).",
)
@click.version_option(package_name="provenance")
@click.pass_context
def main(ctx: click.Context, db: str, keys: str) -> None:
    """Signed, chained, checkable supply-chain records for food and vaccines."""
    escape_standard_streams()  # ledger text is shown, never obeyed, by the terminal
    ctx.obj = Context(db, keys)
    ctx.call_on_close(ctx.obj.close)


# Commands loaded with the command line, one line each.
main.add_command(ledger.init)
main.add_command(ledger.migrate)
main.add_command(ledger.stats)
main.add_command(identities.party)
main.add_command(identities.device)
main.add_command(lots.lot)
main.add_command(lots.hidden_alias)
main.add_command(products.product)
main.add_command(events.event)
main.add_command(verify.verify)
main.add_command(log.log_group)
main.add_command(log.export)
