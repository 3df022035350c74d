"""`provenance init`, `migrate` and `stats`: the ledger file itself.

`init` creates the database, the log key and the registrar key (idempotent: never
overwrites a key) and the log's first entries; `migrate` brings the schema up to this
version; `stats` counts events by kind, lots, parties, devices, rejects and the log size.
"""

from __future__ import annotations

import hashlib
import json

import click

from provenance.cli.context import LOG_KEY, REGISTRAR_KEY, Context, pass_context
from provenance.cli.errors import friendly
from provenance.cli.options import json_object_option
from provenance.core.signing import did_of
from provenance.ledger.append import Ledger


@click.command()
@click.option(
    "--origin", help="The log's name in checkpoints (default: provenance.local/<key id>)."
)
@pass_context
@friendly
def init(ctx: Context, origin: str | None) -> None:
    """Create the database, the log key and the registrar key. Idempotent:
    never overwrites a key.

    Example: provenance init
    """
    store = ctx.store(create=True)  # first: a --db that is not a ledger is refused before keys
    keys = ctx.root_keys
    log_key = keys.load_or_create(LOG_KEY)
    registrar = keys.load_or_create(REGISTRAR_KEY)
    if origin is None:
        origin = store.get_meta("origin") or (
            "provenance.local/" + hashlib.sha256(did_of(log_key).encode()).hexdigest()[:12]
        )
    Ledger.initialise(store, log_key, registrar, origin)
    click.echo(f"ledger {ctx.db_shown} ready; log {store.get_meta('origin')}")
    click.echo(f"log key {did_of(log_key)}")


@click.command()
@pass_context
@friendly
def migrate(ctx: Context) -> None:
    """Bring the ledger's schema up to this version (read-only commands never
    do; any command that writes does it too). Never creates a ledger.

    Example: provenance migrate
    """
    applied = ctx.store().applied_migrations()
    click.echo(f"ledger {ctx.db_shown}: schema up to date (last migration {applied[-1]})")


@click.command()
@json_object_option
@pass_context
@friendly
def stats(ctx: Context, as_json: bool) -> None:
    """Counts of events by kind, lots, parties, devices, rejects, log size.

    Example: provenance stats --json
    """
    numbers = ctx.reader().stats()
    if as_json:
        click.echo(json.dumps(numbers, sort_keys=True))
        return
    for name, value in numbers.items():
        click.echo(f"{name}: {value}")
