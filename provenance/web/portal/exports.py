"""Regulators' downloads: the GS1 EPCIS 2.0 JSON-LD document of the ledger or
one lot (`provenance.exchange.epcis.write_ledger_document`) and the FDA FSMA 204 sortable
spreadsheet as CSV or XLSX (`provenance.exchange.fsma204`), filtered like the CLI's
``provenance export epcis`` / ``export fsma204``."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from typing import IO

from provenance.core.errors import ValidationError
from provenance.core.progress import Progress
from provenance.core.timefmt import parse_date, parse_time
from provenance.exchange.epcis import write_ledger_document
from provenance.exchange.fsma204 import store_rows, write_csv, write_xlsx
from provenance.store.db import Store

DAY = 86_400_000_000
KINDS = {
    "epcis": ("application/ld+json", "jsonld"),
    "fsma204-csv": ("text/csv; charset=utf-8", "csv"),
    "fsma204-xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
}


@dataclass(frozen=True)
class Export:
    data: bytes
    mimetype: str
    filename: str
    count: int  # EPCIS events or spreadsheet rows


def _bound(text: str | None, field: str, *, end: bool) -> int | None:
    """A date means its whole UTC day (``to`` includes it); a time is exact."""
    text = (text or "").strip()
    if not text:
        return None
    if "T" in text:
        return parse_time(text, field) + (1 if end else 0)
    day = parse_date(text, field)
    start = (day - date(1970, 1, 1)).days * DAY
    return start + DAY if end else start


def time_range(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    since_us, until_us = _bound(since, "from", end=False), _bound(until, "to", end=True)
    if since_us is not None and until_us is not None and until_us <= since_us:
        raise ValidationError("to", "is before from: nothing could match")
    return since_us, until_us


@dataclass(frozen=True)
class ExportRequest:
    """An export asked for, checked: its format and filters as the store takes them."""

    kind: str
    lot: str | None
    product: str | None
    since_us: int | None
    until_us: int | None

    @property
    def mimetype(self) -> str:
        return KINDS[self.kind][0]

    @property
    def filename(self) -> str:
        name = "fsma204" if self.kind.startswith("fsma204") else "epcis"
        return f"provenance-{name}.{KINDS[self.kind][1]}"


def plan(
    kind: str,
    *,
    lot: str | None = None,
    product: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> ExportRequest:
    """The export asked for, or ValidationError saying which field is wrong."""
    if kind not in KINDS:
        raise ValidationError("format", f"must be one of {', '.join(KINDS)}")
    since_us, until_us = time_range(since, until)
    if lot and kind != "epcis":
        raise ValidationError("lot", "the FSMA 204 spreadsheet is by product and date range")
    return ExportRequest(kind, lot or None, (product or "").strip() or None, since_us, until_us)


def write(
    store: Store, asked: ExportRequest, out: IO[bytes], progress: Progress | None = None
) -> int:
    """Write the export to the binary stream *out*, as the CLI writes it; returns
    the number of EPCIS events or spreadsheet rows."""
    if asked.kind == "epcis":
        text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        count = write_ledger_document(
            store,
            text,
            lot=asked.lot,
            since_us=asked.since_us,
            until_us=asked.until_us,
            product=asked.product,
            progress=progress,
        )
        text.flush()
        text.detach()
        return count
    rows = store_rows(
        store,
        product=asked.product,
        since_us=asked.since_us,
        until_us=asked.until_us,
        progress=progress,
    )
    if asked.kind == "fsma204-xlsx":
        return write_xlsx(rows, out)
    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="")  # BOM, as the CLI
    count = write_csv(rows, text)
    text.flush()
    text.detach()
    return count


def export(
    store: Store,
    kind: str,
    *,
    lot: str | None = None,
    product: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Export:
    asked = plan(kind, lot=lot, product=product, since=since, until=until)
    out = io.BytesIO()
    count = write(store, asked, out)
    return Export(out.getvalue(), asked.mimetype, asked.filename, count)
