"""Regulators' downloads: the GS1 EPCIS 2.0 JSON-LD document of the ledger or
one lot (`provenance.exchange.epcis.write_ledger_document`) and the FDA FSMA 204 sortable
spreadsheet as CSV or XLSX (`provenance.exchange.fsma204`), filtered like the CLI's
``provenance export epcis`` / ``export fsma204``."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date

from provenance.core.errors import ValidationError
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


def export(
    store: Store,
    kind: str,
    *,
    lot: str | None = None,
    product: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Export:
    if kind not in KINDS:
        raise ValidationError("format", f"must be one of {', '.join(KINDS)}")
    since_us, until_us = time_range(since, until)
    product = (product or "").strip() or None
    mimetype, suffix = KINDS[kind]
    if kind == "epcis":
        text = io.StringIO()
        count = write_ledger_document(
            store, text, lot=lot, since_us=since_us, until_us=until_us, product=product
        )
        data = text.getvalue().encode("utf-8")
    else:
        if lot:
            raise ValidationError("lot", "the FSMA 204 spreadsheet is by product and date range")
        rows = store_rows(store, product=product, since_us=since_us, until_us=until_us)
        if kind == "fsma204-xlsx":
            binary = io.BytesIO()
            count = write_xlsx(rows, binary)
            data = binary.getvalue()
        else:
            text = io.StringIO(newline="")
            count = write_csv(rows, text)
            data = "\ufeff".encode() + text.getvalue().encode("utf-8")  # BOM, as the CLI
    name = "fsma204" if kind.startswith("fsma204") else "epcis"
    return Export(data, mimetype, f"provenance-{name}.{suffix}", count)
