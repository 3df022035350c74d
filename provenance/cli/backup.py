"""`provenance backup`: a consistent copy of a SQLite ledger while it runs
(provenance/store/backup.py; docs/deploy.md, "Backups")."""

from __future__ import annotations

from pathlib import Path

import click

from provenance.cli.context import Context
from provenance.cli.errors import friendly


@click.command("backup")
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
@friendly
def command(ctx: Context, target: Path) -> None:
    """Copy the ledger (--db) into TARGET, a new file, while ingest and the web
    app keep running; the copy is checked (integrity, schema, log size) before
    it is kept. For a PostgreSQL ledger use pg_dump (docs/deploy.md).

    Example: provenance backup backups/provenance-2026-12-06.db
    """
    from provenance.store.backup import backup

    if str(ctx.db_path).startswith(("postgresql://", "postgres://")):
        raise click.ClickException(
            "a PostgreSQL ledger is backed up with PostgreSQL's tools: "
            "pg_dump -Fc DBNAME > FILE (docs/deploy.md, Backups)"
        )
    done = backup(ctx.db_path, target)
    click.echo(f"{done.path}: {done.log_size} log entries, {done.bytes:,} bytes, checked")
