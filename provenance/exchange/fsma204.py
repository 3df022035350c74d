"""FDA FSMA 204 (21 CFR part 1 subpart S) electronic sortable spreadsheet: one row per
Critical Tracking Event and traceability lot, one column per Key Data Element, as CSV or
XLSX (docs/fsma204.md has the columns and where each value comes from).

- :mod:`provenance.exchange.fsma_columns` is the column map, written once: header, cell
  type, the CTEs whose KDE each column is, the rule's sections and how it is filled.
- :mod:`provenance.exchange.fsma_rows` is pure: ledger events in, rows out (tuples in the
  map's order), through `Lookups` for parties, lots and shipments (`cte_rows`).
- `write_csv` and `write_xlsx` stream rows out through `provenance.exchange.spreadsheet`:
  XLSX as one sheet with a bold header row, the header frozen, an autofilter over all
  rows, and real dates, times and numbers so that every column sorts.
- `store_rows` is the adapter: it walks the ledger's CTE kinds once, in log order.

CTEs from our kinds: a commission is the CTE its `cte` names (harvesting, initial packing,
first land-based receiving); without one, a producer's commission is **Initial Packing**
and a processor's **Transformation**; `cool` is **Cooling**; every transform is
**Transformation** (one row per input lot and per output lot); ship is **Shipping**;
receive is **Receiving**. Imported EPCIS events count when their bizStep is shipping or
receiving, or when they are TransformationEvents. Readings, inspections, recalls,
dispensing (sales to consumers are not shipping under § 1.1340), attach and detach are not
CTEs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

from provenance.core.envelope import Envelope
from provenance.core.progress import Progress, counted
from provenance.exchange import spreadsheet
from provenance.exchange.epcis_vocabulary import LedgerEvent
from provenance.exchange.fsma_columns import COLUMNS
from provenance.exchange.fsma_rows import (
    CTE_KINDS,
    Lookups,
    PlaceDescriptions,
    ShipmentOrigin,
    TraceabilityLot,
    TradingPartner,
    _split_lot,
    cte_rows,
    location_description,
)
from provenance.exchange.places import Registry, resolve_location, store_registry
from provenance.exchange.spreadsheet import Row

if TYPE_CHECKING:
    from provenance.store.db import Store


# --- writing (provenance.exchange.spreadsheet does the formats)

SHEET = "FSMA 204"


def write_csv(rows: Iterable[Row], out: IO[str]) -> int:
    """Header and rows as CSV (RFC 4180, dates ``YYYY-MM-DD``, times ``HH:MM:SS``, empty
    cells empty, formula-like text defused); returns the number of rows."""
    return spreadsheet.write_csv(COLUMNS, rows, out)


def write_xlsx(rows: Iterable[Row], out: IO[bytes]) -> int:
    """Header and rows as an XLSX workbook with one sheet, ``FSMA 204``: bold header,
    frozen, with an autofilter over every row; dates, times and quantities as typed cells.
    *out* need not be seekable (stdout works). Returns the number of rows."""
    return spreadsheet.write_xlsx(COLUMNS, rows, out, sheet=SHEET)


# --- adapter: a Store


class _StoreLookups:
    """Parties, lots and shipments for rows read from a Store. The walk of the log teaches
    them as it goes: a commission or a transform that makes a lot comes before any event of
    that lot, and a ship before its receive, so most answers need no query. Anything not
    seen (say, a lot only an imported event names) is asked of the store, and cached."""

    def __init__(self, store: Store):
        self.store = store
        self.parties = {
            identity.did: TradingPartner(identity.name, identity.role or identity.type)
            for identity in store.identities()
        }
        self.lots: dict[str, TraceabilityLot | None] = {}
        self.open_shipments: dict[str, ShipmentOrigin] = {}
        self.registry = store_registry(store)  # places by GLN, each read once
        self.places = PlaceDescriptions(self.parties.get, self.registry)

    def lookups(self) -> Lookups:
        return Lookups(self.parties.get, self.lot, self.shipment, self.registry)

    def observe(self, envelope: Envelope) -> None:
        """Learn from an event of the walk (before it is filtered)."""
        kind = envelope.kind
        if kind == "ship":
            self.open_shipments[envelope.event_id] = ShipmentOrigin.of(envelope)
        elif kind == "commission":
            data = envelope.data
            uri = (envelope.lots or ("",))[0]
            self.lots[uri] = _facts(
                data["gtin"],
                data["lot"],
                data["product"],
                data.get("quantity"),
                self.places(envelope.signer, data.get("origin")),
                data.get("origin"),
                uri,
                data.get("variety"),
            )
        elif kind == "transform":
            data = envelope.data
            source = self.places(envelope.signer, data.get("location"))
            for made in data["outputs"]:
                if "product" in made:  # a new lot, made by this transform
                    gtin, lot = _split_lot(made["batch"]) or ("", "")
                    self.lots[made["batch"]] = _facts(
                        gtin,
                        lot,
                        made["product"],
                        made["quantity"],
                        source,
                        data.get("location"),
                        made["batch"],
                    )

    def lot(self, uri: str) -> TraceabilityLot | None:
        if uri not in self.lots:
            self.lots[uri] = _lot_facts(self.store, uri, self.parties, self.registry)
        return self.lots[uri]

    def shipment(self, event_id: str) -> ShipmentOrigin | None:
        found = self.open_shipments.pop(event_id, None)  # a shipment is received once
        if found is not None:
            return found
        try:
            stored = self.store.find_event(bytes.fromhex(event_id))
        except ValueError:
            stored = None
        return ShipmentOrigin.of(stored.envelope) if stored is not None else None


def store_lookups(store: Store) -> Lookups:
    """Parties, lots (with their TLC source, from the event that made them) and shipments
    from a Store, each cached."""
    return _StoreLookups(store).lookups()


def _facts(
    gtin: str,
    lot: str,
    product: str,
    quantity: Mapping[str, Any] | None,
    source: str | None,
    location: Mapping[str, Any] | None,
    uri: str,
    variety: str | None = None,
) -> TraceabilityLot:
    """A lot's facts; *source* is the description of where its TLC was assigned (the
    maker at *location*)."""
    gln = (location or {}).get("gln")
    return TraceabilityLot(
        gtin,
        lot,
        product,
        (quantity or {}).get("value"),
        (quantity or {}).get("unit"),
        source,
        f"GLN {gln}" if gln else uri,
        variety,
    )


def _lot_facts(
    store: Store, uri: str, parties: Mapping[str, TradingPartner], registry: Registry
) -> TraceabilityLot | None:
    lot = store.lot_by_uri(uri)
    if lot is None:
        return None
    quantity: Mapping[str, Any] | None = None
    location: Mapping[str, Any] | None = None
    origin = store.event_at(lot.origin_event)
    signer = None
    variety = None
    if origin is not None:
        envelope = origin.envelope
        signer = parties.get(envelope.signer)
        data = envelope.data
        if envelope.kind == "commission":
            quantity, location = data.get("quantity"), data.get("origin")
            variety = data.get("variety")
        elif envelope.kind == "transform":
            location = data.get("location")
            made = [o for o in data.get("outputs", ()) if o.get("batch") == uri]
            quantity = made[0].get("quantity") if made else None
    location = resolve_location(location, registry)
    source = location_description(signer, location)
    return _facts(lot.gtin, lot.lot, lot.product, quantity, source, location, uri, variety)


def store_rows(
    store: Store,
    *,
    product: str | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
    progress: Progress | None = None,
) -> Iterator[Row]:
    """The rows for the whole ledger (one consistent read), in log order: events of the CTE
    kinds with ``since_us <= time < until_us``, optionally only for *product*. *progress*
    is told how far through the log's events the walk is (`provenance.core.progress`)."""
    with store.snapshot():
        lookups = _StoreLookups(store)

        bounded = since_us is not None or until_us is not None
        subject = store.subject

        def events() -> Iterator[LedgerEvent]:
            rows = counted(
                store.event_rows(kinds=CTE_KINDS),
                store.log_size(),
                progress,
                position=lambda row: row[0],  # its log index
            )
            for row in rows:
                stored = store.event_from_row(row)
                envelope = stored.envelope
                lookups.observe(envelope)
                if bounded:
                    moment = envelope.time_us
                    if (since_us is not None and moment < since_us) or (
                        until_us is not None and moment >= until_us
                    ):
                        continue
                # the lots it names, else (an imported event without batches) where filed
                yield LedgerEvent(envelope, envelope.lots or tuple(map(subject, stored.lots)))

        yield from cte_rows(events(), lookups.lookups(), product=product)
