"""`provenance label`: print GS1 Digital Link QR labels for a lot as PNG, SVG or PDF.

Listed in `provenance.cli.main.SERVICE_COMMANDS` (imported when first run). When the lot is in the
ledger its product name and expiry go on the label; the ledger is opened read-only.
Exit status: 0 written, 1 bad input or a recalled lot, 2 usage error.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from provenance.barcodes import digital_link, labels, pdf
from provenance.cli.progress import bar
from provenance.core import gs1
from provenance.core.errors import ProvenanceError
from provenance.core.policy import parse_policy, policy_fingerprint
from provenance.store.db import Store
from provenance.store.location import database_location
from provenance.store.rows import Lot

FORMATS = ("png", "svg", "pdf")


@click.command("label")
@click.argument("uri")
@click.option(
    "--out",
    required=True,
    metavar="FILE",
    help="Where to write the label; '-' for standard output (then give --format).",
)
@click.option(
    "--format",
    "format_",
    type=click.Choice(FORMATS),
    help="png, svg or pdf (default: from the --out extension).",
)
@click.option(
    "--count",
    type=click.IntRange(1, 10_000),
    metavar="N",
    help="PDF only: how many labels (default: one full A4 page).",
)
@click.option(
    "--base-url",
    metavar="URL",
    help=f"Resolver the code points to (default: env {labels.BASE_URL_ENV}, else "
    f"{gs1.DEFAULT_BASE}).",
)
@click.option("--product", metavar="TEXT", help="Product name (default: the ledger's).")
@click.option(
    "--symbology",
    type=click.Choice(labels.SYMBOLOGIES),
    default="qr",
    show_default=True,
    help="The code on the label: the Digital Link QR, a GS1 DataMatrix of (01)(17)(10)(21) "
    "(the pharmaceutical pack norm), or both side by side.",
)
@click.option(
    "--policy",
    "policy_file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Print the fingerprint of this C2SP policy (the one the scan page checks against, "
    "e.g. the resolver's /log/v1/policy or the regulator's) as a KEYS line, for people "
    "to compare with the page.",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="Ledger to take product and expiry from (default: the provenance --db).",
)
@click.pass_context
def command(
    click_ctx: click.Context,
    uri: str,
    out: str,
    format_: str | None,
    count: int | None,
    base_url: str | None,
    product: str | None,
    db: str | None,
    policy_file: str | None = None,
    symbology: str = "qr",
) -> None:
    """Write a QR (or GS1 DataMatrix) label for the lot (or item) named by URI, a GS1
    Digital Link on any resolver, re-based onto ours. Under the code: product, GTIN,
    lot, serial and expiry. A lot registered in the ledger gets its product and expiry
    (added to the code as ?17=); a recalled lot gets no label.

    \b
    Example: provenance label https://id.gs1.org/01/09506000134352/10/LOT42 --out lot.pdf --count 40
    """
    kind = _format(out, format_)
    if count is not None and kind != "pdf":
        raise click.UsageError("--count is for PDF sheets; a PNG or SVG file holds one label")
    try:
        link = digital_link.DigitalLink.parse(uri)
        lot = _ledger_lot(click_ctx, db, link)
        expiry = date.fromisoformat(lot.expiry) if lot and lot.expiry else None
        label = labels.Label.from_uri(
            uri,
            base=base_url,
            product=product or (lot.product if lot else None),
            expiry=expiry,
            keys=_policy_fingerprint(policy_file),
        )
        settings = labels.PrintSettings(symbology=symbology)
        if kind == "png":
            data = labels.label_png(label, settings)
        elif kind == "svg":
            data = labels.label_svg(label, settings)
        else:
            count = count or pdf.sheet_capacity(label, settings)
            with bar("laying out labels", unit="labels") as progress:
                data = pdf.sheet_pdf([label] * count, settings, progress=progress)
    except ProvenanceError as exc:
        raise click.ClickException(str(exc)) from exc
    _write(out, data)
    if label.product is None:
        click.echo("note: no product line (the lot is not in the ledger; give --product)", err=True)
    copies = f"{count} labels" if kind == "pdf" else "1 label"
    click.echo(f"wrote {out}: {copies} for {label.uri}", err=out == "-")


def _policy_fingerprint(path: str | None) -> str | None:
    """The fingerprint of the policy file at *path* (checked: a policy phones can read)."""
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise click.ClickException(
            f"cannot read the policy {path}: {exc.strerror}; give the policy file the scan "
            "page checks against (e.g. saved from the resolver's /log/v1/policy)"
        ) from None
    try:
        parse_policy(data)
    except ProvenanceError as exc:
        raise click.ClickException(f"{path}: {exc}; fix the policy file") from None
    return policy_fingerprint(data)


def _format(out: str, format_: str | None) -> str:
    suffix = Path(out).suffix.lower().lstrip(".")
    if format_ is None:
        if suffix not in FORMATS:
            raise click.UsageError(
                f"cannot tell the format from {out!r}: name it .png, .svg or .pdf or give --format"
            )
        return suffix
    if suffix in FORMATS and suffix != format_:
        raise click.UsageError(f"--format {format_} but --out {out!r} ends in .{suffix}")
    return format_


def _ledger_lot(
    click_ctx: click.Context, db: str | None, link: digital_link.DigitalLink
) -> Lot | None:
    """The lot in the ledger, if there is a ledger and the link names a registered lot.
    A missing database is not an error unless --db named it."""
    path = database_location(db) if db is not None else _context_db(click_ctx)
    if path is None or not path.exists():
        if db is not None:
            raise click.ClickException(f"no ledger at {path}")
        return None
    if link.key_ai != gs1.AI_GTIN or link.gtin is None or link.lot is None:
        return None  # Label.from_uri says what is wrong
    store = Store(path, create=False, readonly=True)
    try:
        lot = store.lot_by_uri(gs1.lot_uri(link.gtin, link.lot))
    finally:
        store.close()
    if lot is not None and lot.recalled:
        raise click.ClickException(f"{lot.uri} is recalled: no new labels for it")
    return lot


def _context_db(click_ctx: click.Context) -> Path | None:
    from provenance.cli.context import Context

    ctx = click_ctx.find_object(Context)
    return ctx.db_location if ctx is not None else None


def _write(out: str, data: bytes) -> None:
    if out == "-":
        click.echo(data, nl=False)  # bytes go to the binary stream
        return
    try:
        Path(out).write_bytes(data)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
