"""`provenance event append`: append envelopes of any kind from a file or standard input.

A JSON object, an array or JSON lines; signed envelopes are appended as they are, unsigned
items (kind, batches, data, time) are signed with --as's key and its next seqs. The input
is capped (docs/cli.md, "Input limits"); each refusal is printed with its reason and the
exit status is 1 if any was refused.
"""

from __future__ import annotations

from typing import Any

import click

from provenance.cli.context import Context, pass_context, signing_key
from provenance.cli.errors import friendly
from provenance.cli.inputs import MAX_EVENTS_INPUT, read_input
from provenance.cli.keys import KEY_OPTION
from provenance.core.envelope import Envelope
from provenance.core.errors import ValidationError
from provenance.core.jcs import parse_json, split_items
from provenance.ledger.signer import Signer


def _read_items(text: str) -> list[Any]:
    return [parse_json(item) if isinstance(item, str) else item for item in split_items(text)]


@click.group()
def event() -> None:
    """Events of any kind."""


@event.command("append")
@click.argument("source", metavar="[FILE|-]", default="-")
@click.option("--as", "as_", help="Sign unsigned items as this party or device.")
@KEY_OPTION
@pass_context
@friendly
def event_append(ctx: Context, source: str, as_: str | None, key_file: str | None) -> None:
    """Append envelopes from FILE (or stdin): a JSON object, an array or JSON lines.

    Signed envelopes are appended as they are. Unsigned items (kind, batches,
    data, optional time) are signed as --as with its next seq. All or nothing:
    if any item is refused, none is stored. Prints one event id per line.

    Example: provenance event append readings.jsonl --as truck7-probe
    """
    items = _read_items(read_input(source, what="events", limit=MAX_EVENTS_INPUT))
    signer: Signer | None = None
    prepared: list[Any] = []
    for position, item in enumerate(items):
        if isinstance(item, dict) and "sig" not in item:
            if as_ is None and key_file is None:
                raise click.ClickException(
                    f"item {position} is unsigned: pass --as NAME or --key FILE to sign it"
                )
            key = signing_key(ctx, as_, key_file) if signer is None else signer.key
            unknown = set(item) - {"kind", "batches", "data", "time"}
            if unknown:
                raise click.ClickException(
                    f"item {position}: unsigned items carry only kind, batches, data and time "
                    f"(found {', '.join(sorted(unknown))})"
                )
            signer = signer or Signer(ctx.ledger(), key)
            try:
                prepared.append(
                    signer.sign(
                        item.get("kind"),
                        item.get("data"),
                        lots=item.get("batches"),
                        time=item.get("time"),
                    )
                )
            except ValidationError as exc:
                raise click.ClickException(f"item {position}: {exc}") from None
        else:
            prepared.append(item)
    if signer is None:
        results = ctx.ledger().append(prepared, atomic=True, source="cli")
    else:
        results = signer.append(prepared, atomic=True, source="cli")
    from provenance.cli.accounts import trail_ledger_action  # late: it imports the CLI's context

    for item, result in zip(prepared, results, strict=True):
        kind = item.kind if isinstance(item, Envelope) else str(item.get("kind"))
        lots = item.lots if isinstance(item, Envelope) else item.get("batches")
        trail_ledger_action(ctx.db_path, kind, lots, result)
    failed = False
    for position, result in enumerate(results):
        if result.status == "rejected":
            failed = True
            click.echo(f"item {position}: rejected: {result.reason}: {result.message}", err=True)
    if failed:
        raise click.exceptions.Exit(1)
    for result in results:
        click.echo(result.event_id)
