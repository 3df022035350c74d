"""Exchange with other systems: `provenance export epcis`, `provenance export fsma204` and
`provenance import epcis` (docs/epcis.md, docs/fsma204.md).

`export_epcis` and `export_fsma204` are added to the `export` group of `provenance.cli`,
`import_group` to the main group. Exit status: 0 done, 1 bad input or refused events,
2 usage error.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import click

from provenance.cli.context import Context, pass_context, signing_key
from provenance.cli.errors import friendly
from provenance.cli.inputs import MAX_EPCIS_INPUT, MAX_SCHEMA_INPUT, read_input
from provenance.cli.keys import KEY_OPTION
from provenance.cli.options import out_option, product_option, time_range_options
from provenance.cli.progress import bar
from provenance.core.errors import ValidationError
from provenance.core.timefmt import parse_date, parse_time

MAX_INPUT_DEPTH = 64  # EPCIS documents nest deeper than envelopes


# --- shared helpers


def time_range(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    """``--from``/``--to`` as microseconds ``[since, until)``. A date means its whole UTC day
    (``--to 2026-09-30`` includes that day); a time is taken exactly, both ends included."""
    return _bound(since, "--from", end=False), _bound(until, "--to", end=True)


def _bound(text: str | None, option: str, *, end: bool) -> int | None:
    if text is None:
        return None
    try:
        if "T" in text:
            return parse_time(text, option) + (1 if end else 0)
        day = parse_date(text, option)
    except ValidationError as exc:
        raise click.BadParameter(f"{exc.rule} (give YYYY-MM-DD or an RFC 3339 UTC time)") from None
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1 if end else 0)
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000


def _check_range(since_us: int | None, until_us: int | None) -> None:
    if since_us is not None and until_us is not None and until_us <= since_us:
        raise click.UsageError("--to is before --from: nothing could match")


@contextmanager
def _output(out: str | None, binary: bool) -> Iterator[IO[Any]]:
    """A stream to *out*, written next to it and moved into place only when complete (a
    failed export leaves no half file), or standard output."""
    if out is None:
        sys.stdout.flush()
        stream = sys.stdout.buffer
        if binary:
            yield stream
        else:
            text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
            try:
                yield text
            finally:
                text.flush()
                text.detach()
        return
    target = Path(out)
    partial = target.with_name(target.name + ".part")
    try:
        with open(partial, "wb" if binary else "w", **({} if binary else _TEXT)) as stream:
            yield stream
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


_TEXT: dict[str, Any] = {"encoding": "utf-8", "newline": ""}


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


# --- provenance export epcis


@click.command("epcis")
@click.option("--batch", "lot_uri", metavar="URI", help="Only this lot's events (its chain).")
@time_range_options
@product_option
@out_option
@pass_context
@friendly
def export_epcis(
    ctx: Context,
    lot_uri: str | None,
    since: str | None,
    until: str | None,
    product: str | None,
    out: str | None,
) -> None:
    """Export events as a GS1 EPCIS 2.0 JSON-LD document.

    The whole ledger, or one lot's events (--batch), optionally limited to a time
    range and a product. Readings become sensor events; events imported with
    `provenance import epcis` come back as they were imported. The document
    validates against the official EPCIS 2.0 JSON Schema. Prints the number of
    events on standard error.

    Example: provenance export epcis --product Kale --from 2026-09-01 --out kale.jsonld
    """
    from provenance.exchange.epcis import write_ledger_document

    since_us, until_us = time_range(since, until)
    _check_range(since_us, until_us)
    store = ctx.reader()
    with _output(out, binary=False) as stream, bar("exporting") as progress:
        count = write_ledger_document(
            store,
            stream,
            lot=lot_uri,
            since_us=since_us,
            until_us=until_us,
            product=product,
            progress=progress,
        )
    click.echo(f"{count} EPCIS events" + (f" written to {out}" if out else ""), err=True)


# --- provenance export fsma204


FORMATS = ("csv", "xlsx")


@click.command("fsma204")
@product_option
@time_range_options
@click.option(
    "--format",
    "format_",
    type=click.Choice(FORMATS),
    help="csv or xlsx (default: xlsx when --out ends in .xlsx, else csv).",
)
@out_option
@pass_context
@friendly
def export_fsma204(
    ctx: Context,
    product: str | None,
    since: str | None,
    until: str | None,
    format_: str | None,
    out: str | None,
) -> None:
    """Export the FDA FSMA 204 sortable spreadsheet: one row per Critical
    Tracking Event (harvesting, cooling, initial packing, first land-based
    receiving, shipping, receiving, transformation) and lot, with its Key Data
    Elements and reference documents, for a product and a date range.

    CSV is UTF-8 with a byte-order mark (so that spreadsheet programs read
    accents right). XLSX has a frozen header row, an autofilter and real dates;
    being binary, it goes to standard output only when that is not a terminal.
    Prints the number of rows on standard error.

    Example: provenance export fsma204 --product Kale --from 2026-09-01 --out kale.xlsx
    """
    from provenance.exchange.fsma204 import store_rows, write_csv, write_xlsx

    since_us, until_us = time_range(since, until)
    _check_range(since_us, until_us)
    if format_ is None:
        format_ = "xlsx" if out and out.lower().endswith(".xlsx") else "csv"
    if format_ == "xlsx" and out is None and _stdout_is_terminal():
        raise click.UsageError("XLSX is binary: pass --out FILE or redirect standard output")
    with _output(out, binary=True) as stream, bar("exporting") as progress:
        rows = store_rows(
            ctx.reader(), product=product, since_us=since_us, until_us=until_us, progress=progress
        )
        if format_ == "xlsx":
            count = write_xlsx(rows, stream)
        else:
            text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
            count = write_csv(rows, text)
            text.flush()
            text.detach()
    click.echo(f"{count} rows" + (f" written to {out}" if out else ""), err=True)


# --- provenance import epcis


@click.group("import")
def import_group() -> None:
    """Import records from partners' systems."""


@import_group.command("epcis")
@click.argument("source", metavar="FILE")
@click.option("--as", "as_", required=True, metavar="PARTY", help="The importing party's name.")
@click.option(
    "--schema",
    metavar="FILE",
    help="The EPCIS 2.0 JSON Schema file (default: $PROVENANCE_EPCIS_SCHEMA, else the "
    "official schema shipped with provenance).",
)
@KEY_OPTION
@pass_context
@friendly
def import_epcis(
    ctx: Context, source: str, as_: str, schema: str | None, key_file: str | None
) -> None:
    """Import a partner's GS1 EPCIS 2.0 events, signed by PARTY.

    FILE ('-' for standard input) is an EPCIS 2.0 JSON-LD document, a query
    document or one event. It is checked against the official EPCIS 2.0 JSON
    Schema first. Each event becomes one signed `epcis` event holding it
    verbatim (plus its event hash as eventID when it has none), filed under the
    ledger lots it names.
    All or nothing; an event already in the ledger is a duplicate and is not
    stored again. Prints one line per event: status, eventID, ledger event id,
    lots.

    Example: provenance import epcis partner.jsonld --as "Green Valley Farm"
    """
    from provenance.exchange.epcis_import import (
        MAX_REPEATS_TOLD,
        EpcisInputError,
        epcis_validator,
        find_schema,
        import_events,
        parse_document,
        prepare,
        schema_problems,
    )

    name = "standard input" if source == "-" else source
    key = _party_key(ctx, as_, key_file)
    if schema is None:
        try:
            schema = str(find_schema(None))
        except EpcisInputError as exc:
            raise click.UsageError(str(exc)) from None
    schema_text = read_input(schema, what="EPCIS JSON Schema", limit=MAX_SCHEMA_INPUT)
    try:
        document, repeats = parse_document(
            read_input(source, what="EPCIS document", limit=MAX_EPCIS_INPUT, text=False),
            max_depth=MAX_INPUT_DEPTH,
        )
    except ValidationError as exc:
        raise click.ClickException(f"{name} is not JSON: {exc}") from None
    for repeat in repeats[:MAX_REPEATS_TOLD]:  # the last kept, as JSON.parse and JSON-LD do
        click.echo(f"warning: {name}: {repeat.warning()}", err=True)
    if len(repeats) > MAX_REPEATS_TOLD:
        click.echo(
            f"warning: {name}: {len(repeats) - MAX_REPEATS_TOLD} more objects repeat a member;"
            " the last of each is used",
            err=True,
        )
    try:
        schema_document = json.loads(schema_text)
    except ValueError as exc:
        raise click.ClickException(f"--schema {schema} is not JSON: {exc}") from None
    validator = epcis_validator(schema_document)
    count, problems = schema_problems(validator, document)
    if count:
        listed = f"the first {len(problems)}" if count > len(problems) else "all"
        plural = "s" if count != 1 else ""
        lines = [f"{name} is not valid EPCIS 2.0 ({count} schema problem{plural}; {listed}):"]
        raise click.ClickException("\n".join(lines + [f"  {line}" for line in problems]))
    with bar("importing") as progress:
        report = import_events(ctx.ledger(), key, prepare(document), progress=progress)
    for outcome in report.outcomes:
        click.echo(
            "\t".join(
                [
                    outcome.status,
                    outcome.event_id,
                    outcome.ledger_id or "-",
                    ",".join(outcome.lots) or "-",
                ]
            )
        )
        if outcome.status == "rejected":
            click.echo(f"event {outcome.position}: rejected: {outcome.message}", err=True)
    stored, duplicates = report.count("stored"), report.count("duplicate")
    from provenance.cli.accounts import trail_cli_action

    trail_cli_action(
        ctx.db_path,
        "ledger-import-epcis",
        {"file": name, "stored": stored, "duplicates": duplicates, "as": as_},
        "ok" if report.ok else f"refused: {report.count('rejected')} rejected, nothing stored",
    )
    if not report.ok:
        click.echo(f"{name}: nothing stored ({report.count('rejected')} rejected)", err=True)
        raise click.exceptions.Exit(1)
    click.echo(
        f"{name}: {len(report.outcomes)} events: {stored} stored, {duplicates} duplicate"
        + ("s" if duplicates != 1 else ""),
        err=True,
    )


def _party_key(ctx: Context, name: str, key_file: str | None = None) -> Any:
    """The private key of the enrolled party *name*: its own --key FILE, else
    the one the operator holds for it."""
    if ctx.reader().identity_by_name("party", name) is None:
        raise click.ClickException(f"no party named {name!r}: add it with `provenance party add`")
    return signing_key(ctx, name, key_file)
