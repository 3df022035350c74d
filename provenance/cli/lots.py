"""`provenance lot register`: commission a lot.

Checks the GTIN, lot, product, category, expiry, cold-chain profile and production time
as the ledger will, signs a `commission` event as the producing party and prints the
lot's canonical GS1 Digital Link URI.
"""

from __future__ import annotations

from typing import Any

import click

from provenance.cli.context import Context, append_signed, pass_context, signing_key
from provenance.cli.errors import friendly
from provenance.cli.keys import KEY_OPTION
from provenance.core import gs1
from provenance.core.disclosure import PRIVATE_FIELDS
from provenance.core.timefmt import format_time, parse_date_or_time, parse_time


@click.group()
def lot() -> None:
    """Lots of a product."""


@lot.command("register")
@click.option("--gtin", required=True)
@click.option("--lot", required=True)
@click.option("--product", required=True)
@click.option("--as", "as_", help="The producing party's name (or give its --key FILE).")
@click.option("--category", type=click.Choice(["food", "vaccine"]))
@click.option("--expiry", help="YYYY-MM-DD")
@click.option("--profile", help="Cold-chain profile, e.g. chilled, frozen, vaccine.")
@click.option(
    "--produced",
    help="When the lot was produced (harvest, packing): YYYY-MM-DD or RFC 3339 UTC. "
    "Recorded in the lot and, unless --time is given, the time of its commissioning "
    "(a date: 00:00Z that day). Nothing about the lot can be dated before it.",
)
@click.option(
    "--time",
    "time_",
    help="Time of the commissioning event (RFC 3339 UTC); default: --produced, else now.",
)
@click.option("--origin", help="Where it was produced: the farm's or plant's name.")
@click.option("--origin-at", metavar="LAT,LON", help="The origin's coordinates, e.g. -0.6,36.5.")
@click.option(
    "--private",
    multiple=True,
    type=click.Choice(sorted(PRIVATE_FIELDS["commission"])),
    help="Keep this field private: the public sees a signed digest, the regulator the value "
    "(docs/protocol.md §14). Repeatable.",
)
@KEY_OPTION
@pass_context
@friendly
def lot_register(
    ctx: Context,
    gtin: str,
    lot: str,
    product: str,
    as_: str | None,
    category: str | None,
    expiry: str | None,
    profile: str | None,
    produced: str | None,
    time_: str | None,
    origin: str | None,
    origin_at: str | None,
    private: tuple[str, ...],
    key_file: str | None,
) -> None:
    """Commission a lot; prints its canonical GS1 Digital Link URI.

    The commissioning is dated now unless --produced or --time says otherwise.
    A lot's events (loggers, readings, shipments) cannot be dated before its
    commissioning, so register a lot after harvest with --produced.

    Example: provenance lot register --gtin 09506000134352 --lot LOT42 --product "Kale" --as Farm

    After harvest: provenance lot register … --as Farm --produced 2026-11-21T06:30:00Z

    Farm kept private: provenance lot register … --origin "Kinangop farm" --origin-at
    -0.6,36.5 --private origin
    """
    gtin14 = gs1.normalize_gtin(gtin)
    uri = gs1.lot_uri(gtin14, gs1.validate_lot(lot))
    data: dict[str, Any] = {"gtin": gtin14, "lot": lot, "product": product}
    for name, value in (
        ("category", category),
        ("expiry", expiry),
        ("profile", profile),
        ("produced", produced),
    ):
        if value:
            data[name] = value
    if origin_at is not None and origin is None:
        raise click.UsageError("--origin-at needs --origin (the place's name)")
    if origin is not None:
        data["origin"] = {"name": origin, **_coordinates(origin_at)}
    missing = [name for name in private if name not in data]
    if missing:
        raise click.UsageError(
            f"--private {missing[0]}: the lot has no {missing[0]} to keep private "
            f"(give --{missing[0]})"
        )
    when = None
    if time_ is not None:
        parse_time(time_, "--time")
        when = time_
    elif produced is not None:
        when = format_time(parse_date_or_time(produced, "--produced"))
    key = signing_key(ctx, as_, key_file)
    append_signed(ctx.ledger(), key, "commission", [uri], data, time=when, private=private)
    click.echo(uri)


def _coordinates(text: str | None) -> dict[str, float]:
    """--origin-at LAT,LON as the origin's lat and lon (checked by the schema)."""
    if text is None:
        return {}
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(
            "must be LAT,LON in degrees, e.g. -0.6,36.5", param_hint="--origin-at"
        ) from None
    return {"lat": lat, "lon": lon}


# The hidden alias `provenance batch register`: the name of `lot register` before lots
# were called lots everywhere, kept (docs/cli.md) so that scripts using it keep working.
hidden_alias = click.Group(
    "batch", commands=[lot_register], hidden=True, help="Old name of `provenance lot`."
)
