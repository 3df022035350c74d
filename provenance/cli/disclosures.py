"""`provenance disclosure …`: the private fields of v2 events (docs/protocol.md
§14) as a permitted viewer sees them, and the signer's grants of who may.

`show` prints each private field of a lot's events with "verified against the
signed digest" for a viewer who may see it (a regulator, the signer, a party
the signer granted), and "kept private by the producer" for anyone else;
`export` writes them as a file `verify --bundle … --disclosures FILE` checks
against the lot's public proof bundle; `grant`/`withdraw` let a party see
(or no longer see) the signer's disclosures.
"""

from __future__ import annotations

import json
from typing import Any

import click

from provenance.cli.context import Context, pass_context, signing_key
from provenance.cli.errors import friendly
from provenance.cli.keys import KEY_OPTION
from provenance.core.disclosure import DisclosureError, check_file, disclosures_file
from provenance.core.envelope import Envelope
from provenance.core.errors import NotFound, ProvenanceError
from provenance.core.jcs import parse_json
from provenance.core.signing import did_of, sign_disclosure_grant
from provenance.core.timefmt import format_time
from provenance.ledger.disclosures import grant, lot_disclosures, private_count, withdraw

VERIFIED = "verified against the signed digest"
KEPT_PRIVATE = "kept private by the producer"


def _did_of_party(ctx: Context, name: str) -> str:
    identity = ctx.reader().identity_by_name("party", name)
    if identity is None:
        raise click.ClickException(f"no party named {name!r}: see `provenance party list`")
    return identity.did


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@click.group()
def disclosure() -> None:
    """Private fields of events: who sees them, checked against their digests."""


@disclosure.command("show")
@click.option("--batch", "lot_uri", required=True, metavar="URI", help="The lot.")
@click.option("--as", "as_", metavar="PARTY", help="Who is looking (default: the public).")
@click.option("--json", "as_json", is_flag=True, help="JSON: event id -> field -> value.")
@pass_context
@friendly
def show(ctx: Context, lot_uri: str, as_: str | None, as_json: bool) -> None:
    """Show the private fields of a lot's events as PARTY may see them.

    A regulator, the event's signer and a party the signer granted see each
    value, checked against the digest the event signed; anyone else sees
    that it is kept private by the producer.

    Example: provenance disclosure show --batch URI --as Regulator
    """
    viewer = _did_of_party(ctx, as_) if as_ else None
    store = ctx.reader()
    try:
        seen = {d.envelope.event_id: d for d in lot_disclosures(store, lot_uri, viewer)}
    except NotFound as exc:
        raise click.ClickException(str(exc)) from None
    except DisclosureError as exc:
        click.echo(f"FAILED: {exc}")
        raise click.exceptions.Exit(1) from None
    chain = store.chain_by_subject(lot_uri)
    assert chain is not None
    shown: dict[str, Any] = {}
    for event in store.chain_events(chain[0]):
        envelope = event.envelope
        count = private_count(envelope)
        if not count:
            continue
        opened = seen.get(envelope.event_id)
        if as_json:
            shown[envelope.event_id] = opened.fields if opened else None
            continue
        where = f"{envelope.kind} {envelope.time} ({envelope.event_id[:12]})"
        if opened is None:
            click.echo(f"{where}: {count} field(s) {KEPT_PRIVATE}")
            continue
        for name, value in sorted(opened.fields.items()):
            click.echo(f"{where}: {name} = {_value(value)} — {VERIFIED}")
    if as_json:
        click.echo(json.dumps(shown, ensure_ascii=False, indent=2))


@disclosure.command("export")
@click.option("--batch", "lot_uri", required=True, metavar="URI", help="The lot.")
@click.option("--as", "as_", required=True, metavar="PARTY", help="Who is asking.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write to FILE (default: stdout).")
@pass_context
@friendly
def export(ctx: Context, lot_uri: str, as_: str, out: str | None) -> None:
    """Write the disclosures PARTY may see of a lot's events, for
    `provenance verify --bundle … --disclosures FILE`.

    Example: provenance disclosure export --batch URI --as Regulator --out lot42.disclosures.json
    """
    viewer = _did_of_party(ctx, as_)
    try:
        seen = lot_disclosures(ctx.reader(), lot_uri, viewer)
    except NotFound as exc:
        raise click.ClickException(str(exc)) from None
    events = {d.envelope.event_id: [x.encoded for x in d.disclosures] for d in seen}
    text = json.dumps(disclosures_file(lot_uri, events), indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        with open(out, "x", encoding="utf-8") as stream:
            stream.write(text)
        click.echo(f"{len(events)} event(s) written to {out}", err=True)


@disclosure.command("grant")
@click.option("--to", "to", required=True, metavar="PARTY", help="The party that may see them.")
@click.option("--as", "as_", metavar="PARTY", help="The signer granting (or its --key FILE).")
@KEY_OPTION
@pass_context
@friendly
def grant_command(ctx: Context, to: str, as_: str | None, key_file: str | None) -> None:
    """Let PARTY see the private fields of every event you signed: a grant
    statement signed with your own key, kept beside the log (not in it).

    Example: provenance disclosure grant --to "Big Retail" --as Farm
    """
    key = signing_key(ctx, as_, key_file)
    grantee = _did_of_party(ctx, to)
    time = format_time(ctx.ledger().clock())
    try:
        grant(ctx.store(), did_of(key), grantee, time, sign_disclosure_grant(key, grantee, time))
    except (NotFound, DisclosureError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{to} may now see the private fields of {did_of(key)}'s events")


@disclosure.command("withdraw")
@click.option("--to", "to", required=True, metavar="PARTY", help="The party granted before.")
@click.option("--as", "as_", metavar="PARTY", help="The signer that granted (or its --key FILE).")
@KEY_OPTION
@pass_context
@friendly
def withdraw_command(ctx: Context, to: str, as_: str | None, key_file: str | None) -> None:
    """Withdraw a grant: PARTY no longer sees your private fields.

    Example: provenance disclosure withdraw --to "Big Retail" --as Farm
    """
    key = signing_key(ctx, as_, key_file)
    if not withdraw(ctx.store(), did_of(key), _did_of_party(ctx, to)):
        raise click.ClickException(f"{to} had no grant from {did_of(key)}")
    click.echo(f"{to} no longer sees the private fields of {did_of(key)}'s events")


def check_disclosures(text: str, envelopes: list[Envelope]) -> None:
    """`verify --bundle … --disclosures FILE`: each disclosure in FILE's *text*
    against the verified bundle's signed digests; prints each value, or
    FAILED and exit 1."""
    try:
        for envelope, opened in check_file(parse_json(text), envelopes):
            for item in opened:
                click.echo(
                    f"disclosed {envelope.kind} {envelope.time} ({envelope.event_id[:12]}): "
                    f"{item.name} = {_value(item.value)} — {VERIFIED}"
                )
    except ProvenanceError as exc:
        click.echo(f"FAILED: disclosures: {exc}")
        raise click.exceptions.Exit(1) from None
