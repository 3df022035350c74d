"""GS1 EPCIS 2.0 JSON-LD documents of ledger events (docs/epcis.md has the mapping table).

The documents are pure: `epcis_document` and `epcis_events` take envelopes (or
`LedgerEvent`s: an envelope with the lots it was filed under) and lookups — identities (did
→ `PartyInfo`), lots (lot URI → `LotInfo`) and, optionally, shipments (ship event id → its
envelope) — and return plain dicts ready for ``json.dumps``. `write_document` is the same
document written as a stream, for whole ledgers: finished events wait in a temporary file,
not in memory. `lot_document`, `ledger_events` and `write_ledger_document` are the thin
adapters that read a `Store`. One event's mapping is `provenance.exchange.epcis_mapping`,
the names and records `provenance.exchange.epcis_vocabulary`, the master data
`provenance.exchange.epcis_master_data`, the time ordering
`provenance.exchange.epcis_collector`.

Every exported ledger event carries:

- ``eventID``: its CBV 2.0 Event Hash ID (`provenance.exchange.event_hash`), computed over the
  event as exported, so anyone can recompute it;
- ``provenance:eventId`` / ``provenance:signer`` / ``provenance:kind``: the ledger event id
  (hex SHA-256 of the signed envelope), the signer's did and our kind, so a verifier can tie
  the EPCIS event to the signed envelope and its proof bundle. Readings are grouped (one
  ObjectEvent per device, lots and hour); each sensorElement carries the ledger id of its
  reading and the device is the sensorMetadata ``deviceID``.

Events imported from partners (kind ``epcis``) are the exception: they are written exactly
as stored — the partner's event, with its own ``eventID`` — and get none of our fields.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from provenance.core.envelope import Envelope
from provenance.core.errors import NotFound
from provenance.core.progress import Progress, counted
from provenance.core.timefmt import format_time, now_micros
from provenance.exchange.epcis_collector import EventCollector, MemoryKeeper, SpillKeeper
from provenance.exchange.epcis_mapping import EventMapper
from provenance.exchange.epcis_master_data import master_data
from provenance.exchange.epcis_pallets import UnitLookup, no_units, store_units
from provenance.exchange.epcis_vocabulary import (
    IDENTITY_KINDS,
    READING_WINDOW_S,
    SCHEMA_VERSION,
    IdentityLookup,
    LedgerEvent,
    LotInfo,
    LotLookup,
    PartyInfo,
    ShipmentLookup,
    context,
    dumps,
)
from provenance.exchange.places import Registry, nowhere, store_registry
from provenance.store import places

if TYPE_CHECKING:  # the adapters only; the mapping never touches the store
    from provenance.store.db import Store


def _nobody(_key: str) -> None:
    return None


# --- the document


def epcis_document(
    events: Iterable[Envelope | LedgerEvent],
    *,
    created: str,
    identities: IdentityLookup = _nobody,
    lots: LotLookup = _nobody,
    shipments: ShipmentLookup | None = None,
    reading_window_s: int = READING_WINDOW_S,
    places: Registry = nowhere,
    units: UnitLookup = no_units,
) -> dict[str, Any]:
    """An EPCISDocument of *events*: ``@context``, schemaVersion 2.0, *created* as its
    creationDate, master data for the lots, identities and places it names (when the
    lookups know them; *places* by GLN) and ``epcisBody.eventList`` from `epcis_events`."""
    event_list = epcis_events(
        events,
        identities=identities,
        shipments=shipments,
        reading_window_s=reading_window_s,
        units=units,
    )
    document = _shell(created)
    vocabularies = master_data(event_list, identities=identities, lots=lots, places=places)
    if vocabularies:
        document["epcisHeader"] = {"epcisMasterData": {"vocabularyList": vocabularies}}
    document["epcisBody"] = {"eventList": event_list}
    return document


def _shell(created: str) -> dict[str, Any]:
    return {
        "@context": context(),
        "type": "EPCISDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": created,
    }


def epcis_events(
    events: Iterable[Envelope | LedgerEvent],
    *,
    identities: IdentityLookup = _nobody,
    shipments: ShipmentLookup | None = None,
    reading_window_s: int = READING_WINDOW_S,
    units: UnitLookup = no_units,
) -> list[dict[str, Any]]:
    """EPCIS 2.0 events for ledger events, sorted by eventTime (ties in input order), each
    with its Event Hash ID as ``eventID``. Identity events (enrol, revoke) have no EPCIS
    counterpart and are left out; readings are grouped (see `reading_event`); an event
    given twice (say, a transform in the chains of its input and its output) appears once;
    imported events (kind ``epcis``) are given back as stored.

    A receive names its shipment's sender when *shipments* finds the ship event (by
    default: when it is among *events*)."""
    items = _unique(_filed(item) for item in events)
    if shipments is None:
        known = {i.envelope.event_id: i.envelope for i in items if i.envelope.kind == "ship"}
        shipments = known.get
    collector = EventCollector(
        EventMapper(identities, shipments, units), reading_window_s, MemoryKeeper()
    )
    for item in items:
        collector.add(item)
    return list(collector.finished())


def write_document(
    out: IO[str],
    events: Iterable[Envelope | LedgerEvent],
    *,
    created: str,
    identities: IdentityLookup = _nobody,
    lots: LotLookup = _nobody,
    shipments: ShipmentLookup | None = None,
    reading_window_s: int = READING_WINDOW_S,
    units: UnitLookup = no_units,
    unique: bool = False,
    places: Registry = nowhere,
) -> int:
    """Write the EPCISDocument of *events* to *out* as JSON — the same document as
    `epcis_document` — and return how many events it holds.

    Built for whole ledgers: each finished event (and each reading's sensorElement) is
    spilled to a temporary file as it is mapped, so memory holds only a few integers per
    event until the events are written in time order. Pass ``unique=True`` when *events*
    cannot repeat (a walk of the log), which saves the set of ids seen. Events come out
    one per line. Without *shipments*, a receive finds its ship event among the events
    before it (in log or chain order, a ship always comes before its receive)."""
    if not unique:
        events = _unique(_filed(item) for item in events)
    seen: dict[str, Envelope] = {}
    with tempfile.TemporaryFile() as spill:
        mapper = EventMapper(identities, shipments or seen.get, units)
        collector = EventCollector(mapper, reading_window_s, SpillKeeper(spill))
        for item in events:
            filed = _filed(item)
            if shipments is None and filed.envelope.kind == "ship":
                seen[filed.envelope.event_id] = filed.envelope
            collector.add(filed)
        document = _shell(created)
        vocabularies = collector.references.vocabularies(identities, lots, places)
        if vocabularies:
            document["epcisHeader"] = {"epcisMasterData": {"vocabularyList": vocabularies}}
        head = dumps(document)[:-1]  # without the closing brace
        out.write(head + ',"epcisBody":{"eventList":[')
        count = 0
        for text in collector.finished_text():
            out.write(("\n" if count == 0 else ",\n") + text)
            count += 1
        out.write("\n]}}\n")
    return count


def _filed(item: Envelope | LedgerEvent) -> LedgerEvent:
    return item if isinstance(item, LedgerEvent) else LedgerEvent(item, item.lots or ())


def _unique(items: Iterable[LedgerEvent]) -> list[LedgerEvent]:
    seen: set[bytes] = set()
    unique = []
    for item in items:
        if item.envelope.id_bytes not in seen:
            seen.add(item.envelope.id_bytes)
            unique.append(item)
    return unique


# --- adapters: a Store


def lot_document(
    store: Store,
    lot_uri: str,
    *,
    created: str | None = None,
    reading_window_s: int = READING_WINDOW_S,
) -> dict[str, Any]:
    """The EPCISDocument of every event in *lot_uri*'s chain (``linkType=gs1:traceability``).
    *store* is a `provenance.store.db.Store`; *created* defaults to now. Raises NotFound for a
    lot the ledger does not have."""
    chain = store.chain_by_subject(lot_uri)
    if chain is None or store.lot_by_uri(lot_uri) is None:
        raise NotFound(f"no lot {lot_uri} in this ledger")
    events = [
        LedgerEvent(stored.envelope, tuple(store.subject(chain_id) for chain_id in stored.lots))
        for stored in store.chain_events(chain[0])
    ]
    return epcis_document(
        events,
        created=created or format_time(now_micros()),
        identities=store_identities(store),
        lots=store_lots(store),
        reading_window_s=reading_window_s,
        places=store_registry(store),
        units=store_units(store),
    )


def ledger_events(
    store: Store,
    *,
    lot: str | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
    product: str | None = None,
    progress: Progress | None = None,
) -> Iterator[LedgerEvent]:
    """The ledger's lot events (every kind but enrol, revoke and grant) in log order, or one lot's
    chain in chain order (*lot*; NotFound if the ledger has no such lot), keeping those with
    ``since_us <= time < until_us`` (microseconds) and, with *product*, those filed under a
    lot whose product name contains it (case-insensitive). *progress* is told how far the
    walk is: through the log's events, or the lot's chain (`provenance.core.progress`)."""
    wanted: set[str] | None = None
    if product is not None:
        needle = product.casefold()
        wanted = {info.uri for info in store.lots() if needle in info.product.casefold()}
    if lot is not None:
        chain = store.chain_by_subject(lot)
        if chain is None or store.lot_by_uri(lot) is None:
            raise NotFound(f"no lot {lot} in this ledger")
        stored_events: Iterable[Any] = counted(store.chain_events(chain[0]), chain[3], progress)
    else:
        rows = counted(
            store.event_rows(kinds=IDENTITY_KINDS, exclude=True),
            store.log_size(),
            progress,
            position=lambda row: row[0],  # its log index
        )
        stored_events = (store.event_from_row(row) for row in rows)
    for stored in stored_events:
        envelope = stored.envelope
        if since_us is not None or until_us is not None:
            moment = envelope.time_us
            if (since_us is not None and moment < since_us) or (
                until_us is not None and moment >= until_us
            ):
                continue
        lots = tuple(store.subject(chain_id) for chain_id in stored.lots)
        if wanted is not None and wanted.isdisjoint(lots):
            continue
        yield LedgerEvent(envelope, lots)


def write_ledger_document(
    store: Store,
    out: IO[str],
    *,
    lot: str | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
    product: str | None = None,
    created: str | None = None,
    reading_window_s: int = READING_WINDOW_S,
    progress: Progress | None = None,
) -> int:
    """Write the EPCISDocument of the ledger (or of one lot), filtered as `ledger_events`
    filters, to *out*, from one consistent read of the store; returns the number of EPCIS
    events written. A receive whose shipment falls outside the filter still names its
    sender (the ship event is looked up). *progress*: as `ledger_events` walks."""
    with store.snapshot():
        return write_document(
            out,
            ledger_events(
                store,
                lot=lot,
                since_us=since_us,
                until_us=until_us,
                product=product,
                progress=progress,
            ),
            created=created or format_time(now_micros()),
            identities=store_identities(store),
            lots=store_lots(store),
            shipments=store_shipments(store),
            reading_window_s=reading_window_s,
            unique=lot is None,
            places=store_registry(store),
            units=store_units(store),
        )


def store_identities(store: Store) -> IdentityLookup:
    """An identity lookup over a Store (cached per call site)."""
    cache: dict[str, PartyInfo | None] = {}

    def lookup(did: str) -> PartyInfo | None:
        if did not in cache:
            identity = store.identity_by_did(did)
            cache[did] = (
                None
                if identity is None
                else PartyInfo(
                    identity.name,
                    identity.role or identity.type,
                    places.party_details(store, identity.id).pgln,  # its PGLN, if enrolled with one
                )
            )
        return cache[did]

    return lookup


def store_lots(store: Store) -> LotLookup:
    def lookup(uri: str) -> LotInfo | None:
        lot = store.lot_by_uri(uri)
        return None if lot is None else LotInfo(lot.gtin, lot.lot, lot.product)

    return lookup


def store_shipments(store: Store) -> ShipmentLookup:
    """Ship events by ledger event id, from a Store (cached per call site)."""
    cache: dict[str, Envelope | None] = {}

    def lookup(event_id: str) -> Envelope | None:
        if event_id not in cache:
            try:
                stored = store.find_event(bytes.fromhex(event_id))
            except ValueError:
                stored = None
            found = stored.envelope if stored is not None else None
            cache[event_id] = found if found is not None and found.kind == "ship" else None
        return cache[event_id]

    return lookup
