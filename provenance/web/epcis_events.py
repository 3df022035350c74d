"""What the EPCIS interface answers from: the caller's part of the ledger as
EPCIS events, each with the log index it came from and that index's record time
(docs/epcis.md, "Record time"). Shared by the query routes (`epcis_api`),
named queries (`epcis_named`) and subscription deliveries (`epcis_deliveries`),
which runs outside any request."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from provenance.exchange.epcis import (
    epcis_events,
    ledger_events,
    store_identities,
    store_shipments,
)
from provenance.exchange.epcis_query import EventQuery
from provenance.exchange.epcis_vocabulary import IMPORTED, LedgerEvent
from provenance.store.db import Store
from provenance.store.queries import lots_ever_held_by
from provenance.store.record_times import RecordTimes, indexes_by_key
from provenance.store.rows import event_key

CACHED_ANSWERS = 4  # whole event lists kept, per (log size, scope): memory, not disk
EVERYTHING = "*"
_OUR_ID = "provenance:eventId"


class NotEnrolled(Exception):
    """The caller's party is not in the ledger."""


def scope_of(store: Store, role: str, party_did: str | None) -> frozenset[str]:
    """The lots a caller may read: EVERYTHING for a regulator, else the lots its
    party made or held at any time. `NotEnrolled` for a party the ledger lacks."""
    if role == "regulator":
        return frozenset({EVERYTHING})
    identity = store.identity_by_did(party_did) if party_did else None
    if identity is None:
        raise NotEnrolled("this token's party is not enrolled in the ledger")
    return frozenset(lots_ever_held_by(store, identity.id))


@dataclass(frozen=True)
class Answerable:
    """EPCIS events in eventTime order, with the log index each came from (the
    newest, for an event grouping several readings) and the record times."""

    events: list[dict[str, Any]]
    indexes: list[int | None]
    record_times: RecordTimes

    def matching(self, query: EventQuery, since_index: int = 0) -> list[dict[str, Any]]:
        """The events *query* selects, of those from log index *since_index* on."""
        found = []
        for event, index in zip(self.events, self.indexes, strict=True):
            if since_index and (index is None or index < since_index):
                continue
            recorded = None
            if query.needs_record_time and index is not None:
                recorded = self.record_times.of(index)
            if query.matches(event, recorded):
                found.append(event)
        return found


_cache_lock = threading.Lock()


def answerable(extensions: dict[str, Any], store: Store, scope: frozenset[str]) -> Answerable:
    """The scope's events, kept per log size (in *extensions*, the app's), so the
    ledger is mapped again only when it grew."""
    key = (store.log_size(), scope)
    cache: OrderedDict[Any, Answerable] = extensions.setdefault(
        "provenance.epcis_answers", OrderedDict()
    )
    with _cache_lock:
        found = cache.get(key)
        if found is not None:
            cache.move_to_end(key)
            return found
    partner_ids: dict[str, str] = {}  # an imported event's own eventID -> its ledger event id

    def visible() -> Iterator[LedgerEvent]:
        for event in ledger_events(store):
            if EVERYTHING in scope or not scope.isdisjoint(event.lots):
                if event.envelope.kind == IMPORTED:
                    own = event.envelope.data.get("event", {}).get("eventID")
                    if isinstance(own, str):
                        partner_ids.setdefault(own, event.envelope.event_id)
                yield event

    mapped = epcis_events(
        visible(), identities=store_identities(store), shipments=store_shipments(store)
    )
    by_key = indexes_by_key(store)
    indexes = [_index_of(event, partner_ids, by_key) for event in mapped]
    answer = Answerable(mapped, indexes, RecordTimes.read(store))
    with _cache_lock:
        cache[key] = answer
        while len(cache) > CACHED_ANSWERS:
            cache.popitem(last=False)
    return answer


def _index_of(
    event: dict[str, Any], partner_ids: dict[str, str], by_key: dict[int, int]
) -> int | None:
    ids = [event.get(_OUR_ID)]
    ids += [element.get(_OUR_ID) for element in event.get("sensorElementList") or ()]
    if event.get(_OUR_ID) is None and isinstance(event.get("eventID"), str):
        ids.append(partner_ids.get(event["eventID"]))
    found = []
    for hex_id in ids:
        if isinstance(hex_id, str) and len(hex_id) == 64:
            try:
                index = by_key.get(event_key(bytes.fromhex(hex_id)))
            except ValueError:
                continue
            if index is not None:
                found.append(index)
    return max(found) if found else None
