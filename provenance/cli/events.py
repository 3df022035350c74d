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
from provenance.core.disclosure import Disclosed, is_wrapped
from provenance.core.envelope import Envelope
from provenance.core.errors import ValidationError
from provenance.core.jcs import parse_json, split_items
from provenance.ledger.signer import Signer


def _private_fields(item: dict[str, Any], private: tuple[str, ...], position: int) -> list[str]:
    """The fields of an unsigned item to keep private: its own `private` list,
    and those of --private that its data holds."""
    own = item.get("private", [])
    if not isinstance(own, list) or not all(isinstance(name, str) for name in own):
        raise click.ClickException(f"item {position}: private must be a list of data field names")
    data = item.get("data")
    held = [name for name in private if isinstance(data, dict) and name in data]
    return list(dict.fromkeys([*own, *held]))


def _read_items(text: str) -> list[Any]:
    return [parse_json(item) if isinstance(item, str) else item for item in split_items(text)]


@click.group()
def event() -> None:
    """Events of any kind."""


@event.command("append")
@click.argument("source", metavar="[FILE|-]", default="-")
@click.option("--as", "as_", help="Sign unsigned items as this party or device.")
@click.option(
    "--private",
    multiple=True,
    metavar="FIELD",
    help="Keep this data field of the unsigned items that hold it private (docs/protocol.md "
    "§14): the envelope carries its digest, the ledger keeps the disclosure. Repeatable.",
)
@KEY_OPTION
@pass_context
@friendly
def event_append(
    ctx: Context, source: str, as_: str | None, private: tuple[str, ...], key_file: str | None
) -> None:
    """Append envelopes from FILE (or stdin): a JSON object, an array or JSON lines.

    Signed envelopes are appended as they are. Unsigned items (kind, batches,
    data, optional time, optional private: a list of data fields to keep
    private) are signed as --as with its next seq. Signed items with private
    fields come as {"envelope": …, "disclosures": […]}. All or nothing:
    if any item is refused, none is stored. Prints one event id per line.

    Example: provenance event append readings.jsonl --as truck7-probe

    Location kept private: provenance event append ship.json --as Farm --private location
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
            unknown = set(item) - {"kind", "batches", "data", "time", "private"}
            if unknown:
                raise click.ClickException(
                    f"item {position}: unsigned items carry only kind, batches, data, time and "
                    f"private (found {', '.join(sorted(unknown))})"
                )
            signer = signer or Signer(ctx.ledger(), key)
            try:
                prepared.append(
                    signer.sign_private(
                        item.get("kind"),
                        item.get("data"),
                        _private_fields(item, private, position),
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
        envelope = item.envelope if isinstance(item, Disclosed) else item
        if not isinstance(envelope, Envelope) and isinstance(envelope, dict):
            envelope = envelope.get("envelope", envelope) if is_wrapped(envelope) else envelope
        if isinstance(envelope, Envelope):
            kind, lots = envelope.kind, envelope.lots
        else:
            kind = str(envelope.get("kind")) if isinstance(envelope, dict) else "?"
            lots = envelope.get("batches") if isinstance(envelope, dict) else None
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
