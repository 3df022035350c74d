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
from dataclasses import dataclass, field
from typing import Any

from provenance.core.errors import NotFound
from provenance.core.timefmt import parse_time
from provenance.ledger.lineage import RecallRecord, held, quantity, recall_records
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
    location: dict[str, Any] | None
    registered: dict[str, Any] | None  # {value, unit} as made (commission or transform)
    held: dict[str, Any] | None  # what is left with the custodian (None: unknown)
    in_transit_to: str | None
    recalled: bool  # still recalled now

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
            "quantity": {"registered": self.registered, "held": self.held},
            "in_transit_to": self.in_transit_to,
            "recalled": self.recalled,
        }


@dataclass(frozen=True)
class RecallReport:
    lot: Lot  # the lot the report was asked for
    recall: RecallRecord  # the recall reported on (the newest in force, else the newest)
    history: list[RecallRecord]  # every recall that reached the lot
    affected: list[AffectedLot]
    scans: list[tuple[str, str, int]] = field(default_factory=list)  # day, place, count

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

    def to_json(self) -> dict[str, Any]:
        return {
            "lot": self.lot.uri,
            "recalled": self.lot.recalled,
            "recall": {**self.recall.to_json(), "active": self.recall.active},
            "history": [{**r.to_json(), "active": r.active} for r in self.history],
            "since": self.recall.time,
            "affected": [a.to_json() for a in self.affected],
            "holders": [{"custodian": name, "lots": n} for name, n in self.holders],
            "scans": [{"day": d, "place": p, "count": n} for d, p, n in self.scans],
            "total_scans": self.total_scans,
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


def _affected(state: LotState, through: list[str], transit: dict[int, Any]) -> AffectedLot:
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
        state.location,
        None if registered is None else registered.to_json(),
        None if left is None else left.to_json(),
        None if moving is None else (moving[2] or moving[1]),
        state.recalled,
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
        ids = sorted({lot_id for lot_id, _ in rows} | {source for _, source in rows})
        states = {state.id: state for state in store.lot_states(ids)}
        transit = store.open_shipments()
        sources: dict[int, list[str]] = {}
        for lot_id, source in rows:
            sources.setdefault(lot_id, []).append(states[source].uri)
        affected = [
            _affected(states[lot_id], through, transit)
            for lot_id, through in sorted(sources.items())
        ]
    affected.sort(key=lambda a: (a.relation != "named", a.uri))
    scans = accounts.scans([a.uri for a in affected], parse_time(chosen.time))
    return RecallReport(lot, chosen, history, affected, scans)
