"""Recall reports: every lot a recall reached (the lots the regulator named and,
through the cascade, every lot made from them), who holds each now, where,
how much, and how often consumers scanned them since the recall (by day and
place).

The recall records and the cascade come from `provenance.ledger.lineage` and the
store's ``recalls`` table; scan counts from the accounts database
(`Accounts.record_scan`, fed by the consumer page). Scans are counted per hour,
so "since the recall" starts at the hour the recall was signed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provenance.core.errors import NotFound
from provenance.core.timefmt import parse_time
from provenance.domain.holdings import LotHoldings, number
from provenance.infra.delivery_record import default_delivery_log, notified_parties
from provenance.ledger.holdings_view import holdings_by_id
from provenance.ledger.lineage import RecallRecord, held, quantity, recall_records
from provenance.ledger.recall_report import RecallEffectiveness as HolderReport
from provenance.ledger.recall_report import recall_report as holder_report
from provenance.store import queries as ask
from provenance.store.accounts.accounts import Accounts
from provenance.store.db import Store
from provenance.store.rows import Lot, LotState


@dataclass(frozen=True)
class AffectedLot:
    uri: str
    gtin: str
    lot: str
    product: str
    through: tuple[str, ...]  # the named lots its recall comes from (itself when named)
    custodian: str
    custodian_role: str | None
    location: dict[str, Any] | None  # the last place actually recorded (see `Place`)
    registered: dict[str, Any] | None  # {value, unit} as made (commission or transform)
    held: dict[str, Any] | None  # what is left with the custodian (None: unknown)
    in_transit_to: str | None
    recalled: bool  # still recalled now
    place: Place | None = None  # where *location* was recorded, when and how it is known
    holdings: LotHoldings | None = None  # who holds how much of it now

    @property
    def holder_lines(self) -> list[str]:
        """ "dc: 400 KGM", "farm: 350 KGM (100 KGM in transit to clinic)": each
        party holding some of the lot now (empty for a lot never shipped)."""
        held = self.holdings
        if held is None or not held.movements:
            return []
        lines = []
        for holder in held.current:
            line = f"{holder.party.name}: {held.text(holder.held)}"
            moving = ", ".join(
                f"{held.text(out.quantity)} in transit to {out.receiver.name}"
                for out in holder.shipments
            )
            lines.append(f"{line} ({moving})" if moving else line)
        return lines

    @property
    def relation(self) -> str:
        return "named" if self.uri in self.through else "downstream"

    def to_json(self) -> dict[str, Any]:
        return {
            "lot": self.uri,
            "gtin": self.gtin,
            "lot_code": self.lot,
            "product": self.product,
            "relation": self.relation,
            "through": [uri for uri in self.through if uri != self.uri],
            "custodian": self.custodian,
            "custodian_role": self.custodian_role,
            "location": self.location,
            "location_recorded": None if self.place is None else self.place.to_json(),
            "quantity": {"registered": self.registered, "held": self.held},
            "in_transit_to": self.in_transit_to,
            "recalled": self.recalled,
            "holdings": None if self.holdings is None else self.holdings.to_json(),
        }


@dataclass(frozen=True)
class RecallReport:
    lot: Lot  # the lot the report was asked for
    recall: RecallRecord  # the recall reported on (the newest in force, else the newest)
    history: list[RecallRecord]  # every recall that reached the lot
    affected: list[AffectedLot]
    scans: list[tuple[str, str, int]] = field(default_factory=list)  # day, place, count
    # per holder: notified, acknowledged, returned, destroyed, still out
    effectiveness: HolderReport | None = None

    @property
    def since_us(self) -> int:
        return parse_time(self.recall.time)

    @property
    def total_scans(self) -> int:
        return sum(count for _, _, count in self.scans)

    @property
    def holders(self) -> list[tuple[str, int]]:
        """(custodian, number of affected lots they hold), most first."""
        counts: dict[str, int] = {}
        for lot in self.affected:
            counts[lot.custodian] = counts.get(lot.custodian, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    @property
    def quantities_by_holder(self) -> list[dict[str, Any]]:
        """Per party holding some of an affected lot now: how much of each
        (in the lot's unit; wholes for a lot registered without a quantity),
        and how much of that is in transit."""
        parties: dict[str, dict[str, Any]] = {}
        for lot in self.affected:
            if lot.holdings is None:
                continue
            for holder in lot.holdings.current:
                entry = parties.setdefault(
                    holder.party.did,
                    {"party": holder.party.name, "role": holder.party.role, "lots": []},
                )
                entry["lots"].append(
                    {
                        "lot": lot.uri,
                        "held": number(holder.held),
                        "in_transit": number(holder.in_transit),
                        "unit": lot.holdings.unit,
                    }
                )
        return sorted(parties.values(), key=lambda entry: entry["party"])

    def to_json(self) -> dict[str, Any]:
        return {
            "lot": self.lot.uri,
            "recalled": self.lot.recalled,
            "recall": {**self.recall.to_json(), "active": self.recall.active},
            "history": [{**r.to_json(), "active": r.active} for r in self.history],
            "since": self.recall.time,
            "affected": [a.to_json() for a in self.affected],
            "holders": [{"custodian": name, "lots": n} for name, n in self.holders],
            "quantities_by_holder": self.quantities_by_holder,
            "scans": [{"day": d, "place": p, "count": n} for d, p, n in self.scans],
            "total_scans": self.total_scans,
            "effectiveness": None if self.effectiveness is None else self.effectiveness.to_json(),
        }

    def lots_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            [
                "lot",
                "gtin",
                "lot_code",
                "product",
                "relation",
                "through",
                "custodian",
                "custodian_role",
                "location",
                "registered",
                "held",
                "unit",
                "in_transit_to",
                "recalled_now",
                "holders",
            ]
        )
        for a in self.affected:
            registered, left = a.registered or {}, a.held or {}
            writer.writerow(
                [
                    a.uri,
                    a.gtin,
                    _cell(a.lot),
                    _cell(a.product),
                    a.relation,
                    " ".join(uri for uri in a.through if uri != a.uri),
                    _cell(a.custodian),
                    a.custodian_role or "",
                    _cell((a.location or {}).get("name", "")),
                    registered.get("value", ""),
                    left.get("value", ""),
                    registered.get("unit", left.get("unit", "")),
                    _cell(a.in_transit_to or ""),
                    "yes" if a.recalled else "no",
                    _cell("; ".join(a.holder_lines)),
                ]
            )
        return out.getvalue()

    def scans_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["day", "place", "scans"])
        writer.writerows(self.scans)
        return out.getvalue()


def _cell(text: str) -> str:
    """Keep a spreadsheet from running a cell as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@dataclass(frozen=True)
class Place:
    """Where a lot was last recorded, and how we know: *basis* "lot" (an event
    about the lot by its holder named the place), "holder" (the holder's
    receipt named no place: the holder's last recorded place on any lot) or
    "earlier" (only an earlier holder's place is known, e.g. the shipment's)."""

    location: dict[str, Any]
    time: str
    basis: str

    def to_json(self) -> dict[str, Any]:
        return {"location": self.location, "time": self.time, "basis": self.basis}


def last_place(
    events: Sequence[ask.PlaceRow],
    holder: int | None,
    holder_place: tuple[str, str] | None,
) -> Place | None:
    """The last place actually recorded for a lot held by *holder* (pure).
    *events*: the lot's custody events, newest first; *holder_place*: (time,
    place JSON) of the holder's newest event naming a place on any lot. A
    receipt that names no place does not leave the lot "at" the sender's
    shipping place: the holder's own last recorded place stands in."""
    for _, _, signer, time, place in events:
        if signer != holder:
            break  # custody came to the holder at the newer events: none named a place
        if place is not None:
            return Place(json.loads(place), time, "lot")
    if holder_place is not None:
        return Place(json.loads(holder_place[1]), holder_place[0], "holder")
    for _, _, _, time, place in events:
        if place is not None:
            return Place(json.loads(place), time, "earlier")
    return None


def lot_place(store: Store, lot_id: int, holder: int | None) -> Place | None:
    """`last_place` of one lot from the store: the lot page's "Last place" and
    the trace's "Where" say it as the recall report does."""
    return _place(store, lot_id, holder, {})


def _place(store: Store, lot_id: int, holder: int | None, cache: dict[int, Any]) -> Place | None:
    events = ask.lot_custody_events(store, lot_id)
    if holder is not None and holder not in cache:
        cache[holder] = ask.last_place_of_party(store, holder)
    return last_place(events, holder, cache.get(holder) if holder is not None else None)


def _affected(
    state: LotState,
    through: list[str],
    transit: dict[int, Any],
    place: Place | None = None,
    holdings: LotHoldings | None = None,
) -> AffectedLot:
    registered = quantity(state.quantity, state.unit)
    left = held(state)
    moving = transit.get(state.id)
    return AffectedLot(
        state.uri,
        state.gtin,
        state.lot,
        state.product,
        tuple(sorted(through)),
        state.custodian_name or state.custodian_did or "?",
        state.custodian_role,
        place.location if place is not None else state.location,
        None if registered is None else registered.to_json(),
        None if left is None else left.to_json(),
        None if moving is None else (moving[2] or moving[1]),
        state.recalled,
        place,
        holdings,
    )


def choose(records: list[RecallRecord]) -> RecallRecord:
    """The recall a report is about: the newest in force, else the newest."""
    active = [r for r in records if r.active]
    return (active or records)[-1]


def recall_report(
    store: Store, accounts: Accounts, lot: Lot, event_index: int | None = None
) -> RecallReport:
    """The report of a recall that reached *lot*: the one at *event_index*, else
    the newest in force, else the newest. Raises NotFound if none reached it."""
    with store.snapshot():
        history = recall_records(store, lot.id, lot.uri)
        if not history:
            raise NotFound(f"{lot.uri} has never been recalled")
        if event_index is None:
            chosen = choose(history)
        else:
            found = [r for r in history if r.event_index == event_index]
            if not found:
                raise NotFound(f"no recall at log index {event_index} reached {lot.uri}")
            chosen = found[-1]
        rows = list(store.recall_effects(chosen.event_index))  # (lot, source)
        affected, _states = _reached(store, rows)
    affected.sort(key=lambda a: (a.relation != "named", a.uri))
    scans = accounts.scans([a.uri for a in affected], parse_time(chosen.time))
    path = getattr(store, "path", None)
    record = default_delivery_log(path) if isinstance(path, Path) else None
    effectiveness = holder_report(
        store,
        chosen.event_id,
        notified=lambda event_id: {} if record is None else notified_parties(record, event_id),
    )
    return RecallReport(lot, chosen, history, affected, scans, effectiveness)


def _reached(store: Any, rows: list[tuple[int, int]]) -> tuple[list[Any], dict[int, Any]]:
    """The affected lots of (lot, source) rows a recall reached or would reach,
    and the lots' states by id: the report and the preview describe them alike."""
    ids = sorted({lot_id for lot_id, _ in rows} | {source for _, source in rows})
    states = {state.id: state for state in store.lot_states(ids)}
    sources: dict[int, list[str]] = {}
    for lot_id, source in rows:
        sources.setdefault(lot_id, []).append(states[source].uri)
    return _affected_lots(store, states, sources, store.open_shipments()), states


def _affected_lots(
    store: Store,
    states: dict[int, LotState],
    sources: dict[int, list[str]],
    transit: dict[int, Any],
) -> list[AffectedLot]:
    """Each lot a recall reaches, with its holder, quantities and last recorded
    place (inside the caller's snapshot)."""
    places: dict[int, Any] = {}
    out = []
    shares = holdings_by_id(store, sorted(sources))
    for lot_id, through in sorted(sources.items()):
        holder = store.identity_by_did(states[lot_id].custodian_did or "")
        place = _place(store, lot_id, None if holder is None else holder.id, places)
        out.append(_affected(states[lot_id], through, transit, place, shares.get(lot_id)))
    return out


@dataclass(frozen=True)
class RecallPreview:
    """What a recall of *named* would reach if signed now: the lots the
    regulator named and every lot made from them, each with its holder,
    quantities, place and open shipment. Computed by the cascade the recall
    itself records (`Store.recall_reach`)."""

    named: tuple[str, ...]
    affected: list[AffectedLot]
    unknown: tuple[str, ...] = ()  # named URIs the ledger does not know
    lot_ids: dict[str, int] = field(default_factory=dict)

    @property
    def downstream(self) -> list[AffectedLot]:
        return [a for a in self.affected if a.relation == "downstream"]

    @property
    def in_transit(self) -> list[AffectedLot]:
        return [a for a in self.affected if a.in_transit_to]

    @property
    def holders(self) -> list[tuple[str, int]]:
        counts: dict[str, int] = {}
        for lot in self.affected:
            counts[lot.custodian] = counts.get(lot.custodian, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def recall_preview(store: Store, uris: Sequence[str]) -> RecallPreview:
    """The reach of a recall of *uris* (canonical lot URIs), before it is signed."""
    with store.snapshot():
        named, unknown = [], []
        for uri in dict.fromkeys(uris):
            lot = store.lot_by_uri(uri)
            (unknown.append(uri) if lot is None else named.append(lot))
        affected, states = _reached(store, store.recall_reach([lot.id for lot in named]))
    affected.sort(key=lambda a: (a.relation != "named", a.uri))
    return RecallPreview(
        tuple(lot.uri for lot in named),
        affected,
        tuple(unknown),
        {state.uri: state.id for state in states.values()},
    )
