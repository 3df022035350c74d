"""`provenance pallet pack|unpack|ship|show|label`: cases and pallets by SSCC
(docs/protocol.md, "Pallets and cases"). Each command works out the lots from the ledger where it
can (an unpack or a shipment names every lot on the pallet), signs one event and
appends it; `show` and `label` only read.

Listed in `provenance.cli.main.SERVICE_COMMANDS` (labels load the imaging code).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from provenance.cli.context import Context, append_signed, pass_context, signing_key
from provenance.cli.errors import friendly
from provenance.cli.keys import KEY_OPTION
from provenance.core.errors import NotFound, ValidationError
from provenance.core.fields import lot_uri as check_lot_uri
from provenance.core.kinds import QUANTITY
from provenance.core.sscc import MAX_PALLET_LOTS, sscc_path, validate_sscc
from provenance.core.timefmt import parse_time
from provenance.ledger.pallet_view import pallet_view
from provenance.store import pallets as tables
from provenance.store.location import is_database_url

_PACKED = re.compile(r"(?P<uri>.+)=(?P<value>[0-9]+(?:\.[0-9]+)?) ?(?P<unit>[A-Z0-9]{2,3})")
TIME_OPTION = click.option(
    "--time", "time_", metavar="RFC3339", help="When it happened (UTC); default now."
)


def _sscc(value: str, what: str = "SSCC") -> str:
    try:
        return validate_sscc(value.strip(), what)
    except ValidationError as exc:
        raise click.BadParameter(exc.rule, param_hint=what) from None


def _time(value: str | None) -> str | None:
    if value is not None:
        parse_time(value, "--time")
    return value


def _content(text: str) -> dict[str, Any]:
    found = _PACKED.fullmatch(text.strip())
    if found is None:
        raise click.BadParameter(
            f"{text!r} is not LOT_URI=QUANTITY UNIT, e.g. "
            "https://id.gs1.org/01/09506000134352/10/LOT42=100KGM",
            param_hint="--lot",
        )
    uri = found["uri"]
    quantity = {"value": float(found["value"]), "unit": found["unit"]}
    if quantity["value"].is_integer():
        quantity["value"] = int(quantity["value"])
    try:
        check_lot_uri(uri, "--lot")
        QUANTITY(quantity, "--lot quantity")
    except ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint="--lot") from None
    return {"batch": uri, "quantity": quantity}


def _lots_on(ctx: Context, ssccs: list[str]) -> list[str]:
    store = ctx.store()
    uris: list[str] = []
    for sscc in ssccs:
        if tables.unit(store, sscc) is None:
            raise click.ClickException(f"no case or pallet SSCC {sscc} was packed in this ledger")
        for _unit, packed in tables.all_contents(store, sscc):
            lot = store.lot_by_id(packed.lot)
            if lot is not None and lot.uri not in uris:
                uris.append(lot.uri)
    return uris


@click.group("pallet")
def group() -> None:
    """Cases and pallets by SSCC: pack lots, ship and unpack them, scan labels."""


@group.command("pack")
@click.argument("sscc")
@click.option(
    "--lot",
    "lots",
    multiple=True,
    required=True,
    metavar="URI=QTY",
    help="A lot and the quantity packed, e.g. https://id.gs1.org/01/09506000134352/10/LOT42=100KGM"
    f" (repeat; at most {MAX_PALLET_LOTS}).",
)
@click.option("--on", "parent", metavar="SSCC", help="The pallet this case goes on.")
@click.option("--as", "as_", help="The packing party's name (or give its --key FILE).")
@TIME_OPTION
@KEY_OPTION
@pass_context
@friendly
def pack(
    ctx: Context,
    sscc: str,
    lots: tuple[str, ...],
    parent: str | None,
    as_: str | None,
    time_: str | None,
    key_file: str | None,
) -> None:
    """Pack lots on the case or pallet SSCC (18 digits, GS1 check digit); prints the path
    its label's code opens.

    \b
    Example: provenance pallet pack 106141412345678908 --as Farm
      --lot https://id.gs1.org/01/09506000134352/10/LOT42=100KGM
    """
    sscc = _sscc(sscc)
    if len(lots) > MAX_PALLET_LOTS:
        raise click.BadParameter(f"at most {MAX_PALLET_LOTS} lots on one unit", param_hint="--lot")
    contents = [_content(text) for text in lots]
    data: dict[str, Any] = {"sscc": sscc, "contents": contents}
    if parent is not None:
        data["parent"] = _sscc(parent, "--on")
    key = signing_key(ctx, as_, key_file)
    uris = [item["batch"] for item in contents]
    append_signed(ctx.ledger(), key, "pack", uris, data, time=_time(time_), source="cli")
    click.echo(sscc_path(sscc))


@group.command("unpack")
@click.argument("sscc")
@click.option("--as", "as_", help="The holder's name (or give its --key FILE).")
@TIME_OPTION
@KEY_OPTION
@pass_context
@friendly
def unpack(
    ctx: Context, sscc: str, as_: str | None, time_: str | None, key_file: str | None
) -> None:
    """Unpack the case or pallet SSCC; its cases stay packed.

    Example: provenance pallet unpack 106141412345678908 --as DC
    """
    sscc = _sscc(sscc)
    uris = _lots_on(ctx, [sscc])
    key = signing_key(ctx, as_, key_file)
    append_signed(ctx.ledger(), key, "unpack", uris, {"sscc": sscc}, time=_time(time_))
    click.echo(f"unpacked {sscc}: {len(uris)} lots")


@group.command("ship")
@click.argument("ssccs", nargs=-1, required=True, metavar="SSCC...")
@click.option("--to", "to", required=True, help="The receiving party's name.")
@click.option("--lot", "loose", multiple=True, metavar="URI", help="A loose lot shipped too.")
@click.option("--as", "as_", help="The sender's name (or give its --key FILE).")
@TIME_OPTION
@KEY_OPTION
@pass_context
@friendly
def ship(
    ctx: Context,
    ssccs: tuple[str, ...],
    to: str,
    loose: tuple[str, ...],
    as_: str | None,
    time_: str | None,
    key_file: str | None,
) -> None:
    """Ship pallets (everything on them) and any loose lots to a party; prints the
    shipment's event id, which its receive names.

    Example: provenance pallet ship 106141412345678908 --to DC --as Farm
    """
    pallets = list(dict.fromkeys(_sscc(s) for s in ssccs))
    receiver = ctx.store().identity_by_name("party", to)
    if receiver is None:
        raise click.ClickException(f"no party named {to!r}: see `provenance party list`")
    uris = _lots_on(ctx, pallets)
    uris += [uri for uri in loose if uri not in uris]
    key = signing_key(ctx, as_, key_file)
    data = {"to": receiver.did, "pallets": pallets}
    result = append_signed(ctx.ledger(), key, "ship", uris, data, time=_time(time_))
    click.echo(result.event_id)


@group.command("show")
@click.argument("sscc")
@click.option("--json", "as_json", is_flag=True, help="The pallet page's JSON twin.")
@pass_context
@friendly
def show(ctx: Context, sscc: str, as_json: bool) -> None:
    """What is on the case or pallet SSCC, who packed it and where it is now.

    Example: provenance pallet show 106141412345678908
    """
    try:
        view = pallet_view(ctx.reader(), _sscc(sscc))
    except NotFound as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(view, indent=2, ensure_ascii=False))
        return
    where = view["where"]
    click.echo(f"{view['kind']} (00) {view['sscc']}  {view['uri']}")
    click.echo(f"packed by {view['packed_by']['name']} at {view['packed']['time']}")
    if view["on_pallet"]:
        click.echo(f"on pallet {view['on_pallet']}")
    if where["state"] == "in-transit":
        click.echo(f"in transit from {where['holder']['name']} to {where['to']['name']}")
    elif where["state"] == "unpacked":
        click.echo(f"unpacked by {where['holder']['name']} at {view['unpacked']['time']}")
    else:
        click.echo(f"with {where['holder']['name']}")
    for item in view["contents"]:
        case = f"  (case {item['case']})" if item["case"] else ""
        quantity = item["quantity"]
        click.echo(f"  {item['batch']}  {quantity['value']:g} {quantity['unit']}{case}")


@group.command("label")
@click.argument("sscc")
@click.option("--out", required=True, metavar="FILE", help="Where to write it (.png or .svg).")
@click.option("--base-url", metavar="URL", help="Resolver the code points to.")
@pass_context
@friendly
def label(ctx: Context, sscc: str, out: str, base_url: str | None) -> None:
    """Write the label of the case or pallet SSCC: a QR code of its GS1 Digital Link
    (…/00/SSCC) with "(00) SSCC" and what is on it (from the ledger) written under it.

    Example: provenance pallet label 106141412345678908 --out pallet.png
    """
    from provenance.barcodes.pallet_label import PalletLabel, pallet_label_png, pallet_label_svg
    from provenance.cli.label import _write

    sscc = _sscc(sscc)
    kind = out.rsplit(".", 1)[-1].lower() if "." in out else ""
    if kind not in ("png", "svg"):
        raise click.UsageError(f"cannot tell the format from {out!r}: name it .png or .svg")
    heading, lines = None, ()
    location = ctx.db_location
    if is_database_url(location) or Path(location).exists():  # no ledger: the bare label
        try:
            view = pallet_view(ctx.reader(), sscc)
        except NotFound:
            view = None
        if view is not None:
            count = len(view["contents"])
            heading = f"{view['kind'].capitalize()} · {count} lot{'s' if count != 1 else ''}"
            lines = tuple(
                f"{item['product'] or ''} {item['lot'] or ''} "
                f"{item['quantity']['value']:g} {item['quantity']['unit']}".strip()
                for item in view["contents"]
            )
    made = PalletLabel.for_sscc(sscc, base=base_url, heading=heading, contents=lines)
    data = pallet_label_png(made) if kind == "png" else pallet_label_svg(made)
    _write(out, data)
    click.echo(f"wrote {out}: the label of {made.uri}")
