"""`provenance serial issue|list|sheet`: a lot's serial numbers (GS1 AI 21).

`issue` signs a `serials` event as the lot's maker (random serials, or the ones given);
`list` prints the serials issued for a lot; `sheet` writes an A4 PDF of labels, one per
issued serial, each a different code (QR, GS1 DataMatrix or both). Listed in
`provenance.cli.main.SERVICE_COMMANDS` (the sheet loads the label code when first run).
"""

from __future__ import annotations

import json
import secrets
from datetime import date

import click

from provenance.cli.context import Context, append_signed, pass_context, signing_key
from provenance.cli.errors import friendly
from provenance.cli.keys import KEY_OPTION
from provenance.core import gs1
from provenance.core.errors import ValidationError
from provenance.core.kinds import MAX_SERIALS_PER_EVENT
from provenance.domain.serials import draw_serials
from provenance.store.db import Store
from provenance.store.rows import Lot

MAX_SHEET = 10_000  # labels in one PDF


@click.group("serial")
def group() -> None:
    """Serial numbers of a lot's packs (GS1 AI 21)."""


def _lot(store: Store, uri: str) -> Lot:
    from provenance.barcodes import digital_link

    link = digital_link.DigitalLink.parse(uri)
    if link.gtin is None or link.lot is None:
        raise ValidationError("uri", "must name a lot: https://…/01/{GTIN}/10/{lot}")
    if link.serial is not None:
        raise ValidationError("uri", "names one item (/21/…): give the lot's link without it")
    lot_uri = gs1.lot_uri(link.gtin, link.lot)
    lot = store.lot_by_uri(lot_uri)
    if lot is None:
        raise ValidationError("uri", f"{lot_uri} is not registered: commission it first")
    return lot


@group.command("issue")
@click.argument("uri")
@click.option(
    "--count",
    type=click.IntRange(1, MAX_SERIALS_PER_EVENT),
    metavar="N",
    help=f"Draw N new random serials (1-{MAX_SERIALS_PER_EVENT}).",
)
@click.option(
    "--serial",
    "serials",
    multiple=True,
    metavar="S",
    help="Issue this serial (repeat; 1-20 characters of GS1 set 82) instead of drawing.",
)
@click.option("--as", "as_", help="The lot's maker (or give its --key FILE).")
@KEY_OPTION
@pass_context
@friendly
def issue(
    ctx: Context,
    uri: str,
    count: int | None,
    serials: tuple[str, ...],
    as_: str | None,
    key_file: str | None,
) -> None:
    """Issue serials for the lot at URI, signed by its maker; prints one per line.

    Drawn serials are random (10 characters, no 0/O/1/I): a copied label does not
    reveal another. No serial is issued twice in a lot.

    Example: provenance serial issue https://id.gs1.org/01/09506000134352/10/LOT42 --count 4 --as X
    """
    if (count is None) == (not serials):
        raise click.UsageError("give --count N or one or more --serial S (not both)")
    if len(serials) > MAX_SERIALS_PER_EVENT:
        raise click.UsageError(f"at most {MAX_SERIALS_PER_EVENT} --serial in one issue")
    ledger = ctx.ledger()
    lot = _lot(ledger.store, uri)
    key = signing_key(ctx, as_, key_file)
    if count is not None:
        chosen = draw_serials(
            count,
            lambda drawn: ledger.store.issued_serials(lot.id, drawn),
            secrets.SystemRandom(),
        )
    else:
        chosen = list(serials)
    append_signed(ledger, key, "serials", [lot.uri], {"serials": chosen}, source="cli")
    for serial in chosen:
        click.echo(serial)


@group.command("list")
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: lot and serials.")
@pass_context
@friendly
def list_(ctx: Context, uri: str, as_json: bool) -> None:
    """Print the serials issued for the lot at URI, in order, one per line.

    Example: provenance serial list https://id.gs1.org/01/09506000134352/10/LOT42
    """
    store = ctx.reader()
    lot = _lot(store, uri)
    found = _all_serials(store, lot)
    if as_json:
        click.echo(json.dumps({"lot": lot.uri, "serials": found}, ensure_ascii=False))
        return
    for serial in found:
        click.echo(serial)


def _all_serials(store: Store, lot: Lot, limit: int | None = None) -> list[str]:
    found: list[str] = []
    while limit is None or len(found) < limit:
        page = store.serials_of(lot.id, found[-1] if found else "", 1000)
        if not page:
            break
        found.extend(serial for serial, _ in page)
    return found if limit is None else found[:limit]


@group.command("sheet")
@click.argument("uri")
@click.option("--out", required=True, metavar="FILE", help="The PDF to write.")
@click.option(
    "--count",
    type=click.IntRange(1, MAX_SHEET),
    metavar="N",
    help=f"Labels for the first N issued serials (default: all, at most {MAX_SHEET}).",
)
@click.option(
    "--symbology",
    type=click.Choice(("qr", "datamatrix", "both")),
    default="both",
    show_default=True,
    help="The code on each label.",
)
@click.option("--base-url", metavar="URL", help="Resolver the QR codes point to.")
@pass_context
@friendly
def sheet(
    ctx: Context,
    uri: str,
    out: str,
    count: int | None,
    symbology: str,
    base_url: str | None,
) -> None:
    """Write an A4 PDF of labels for the lot at URI, one per issued serial: every
    label's code names its own pack (…/21/{serial}, and (21) in the DataMatrix).

    Example: provenance serial sheet https://id.gs1.org/01/09506000134352/10/LOT42 --out packs.pdf
    """
    from provenance.barcodes import labels, pdf
    from provenance.cli.label import _write
    from provenance.cli.progress import bar

    store = ctx.reader()
    lot = _lot(store, uri)
    if lot.recalled:
        raise click.ClickException(f"{lot.uri} is recalled: no new labels for it")
    serials = _all_serials(store, lot, count or MAX_SHEET)
    if not serials:
        raise click.ClickException(
            f"no serials issued for {lot.uri}: issue some first (provenance serial issue "
            f"{lot.uri} --count N --as MAKER)"
        )
    expiry = date.fromisoformat(lot.expiry) if lot.expiry else None
    made = [
        labels.Label.for_lot(
            lot.gtin, lot.lot, serial=s, expiry=expiry, product=lot.product, base=base_url
        )
        for s in serials
    ]
    with bar("laying out labels", unit="labels") as progress:
        data = pdf.sheet_pdf(made, labels.PrintSettings(symbology=symbology), progress=progress)
    _write(out, data)
    click.echo(f"wrote {out}: {len(made)} labels, one per serial, for {lot.uri}")
