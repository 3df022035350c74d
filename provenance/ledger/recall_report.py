"""The recall report: for one recall, every lot it reached and, per holder of
each lot, whether it was notified, when it acknowledged, what it returned and
destroyed, and what is still out (docs/lineage.md, "Recall acknowledgements").

`recall_report` reads the store (one snapshot) and hands the rows to
`build_recall_report` (pure). What each holder holds is an input (`holdings`):
a mapping (lot URI, party did) -> Quantity, or None where it is not known. By
default it comes from today's custody (`custody_holdings`): lots move whole,
so the custodian holds what is left of the lot and a past holder holds none.
Per-holder quantities (the `quantities` work) replace that one call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provenance.core.errors import NotFound
from provenance.domain.custody import Party, unknown_party
from provenance.ledger.holdings_view import holdings_by_id
from provenance.ledger.lineage import Quantity, RecallRecord, held, quantity, recall_records
from provenance.store.db import Store
from provenance.store.recall_acks import AckRow, acks_for_lots
from provenance.store.rows import LotState

Holdings = Mapping[tuple[str, str], Quantity | None]  # (lot URI, party did) -> held now
Notified = Mapping[tuple[str, str], str]  # (lot URI, party did) -> when a notice reached it


@dataclass(frozen=True)
class Ack:
    """One acknowledgement as the report shows it."""

    event_index: int
    event_id: str
    time: str
    recall_index: int  # the recall it answers (returns count whatever the recall)
    returned: Quantity | None
    destroyed: Quantity | None
    notes: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "log_index": self.event_index,
            "event_id": self.event_id,
            "time": self.time,
            "recall_log_index": self.recall_index,
            "returned": None if self.returned is None else self.returned.to_json(),
            "destroyed": None if self.destroyed is None else self.destroyed.to_json(),
            "notes": self.notes,
        }


@dataclass(frozen=True)
class HolderLine:
    """One party that holds, held or is about to receive a recalled lot."""

    party: Party
    holds_now: bool  # the lot's custodian today
    in_transit: bool  # a shipment of the lot to it is not yet received
    notified: str | None  # when a notice reached it (webhook or e-mail), if recorded
    acks: tuple[Ack, ...]
    held: Quantity | None  # what it holds now (`holdings`); None: not known
    returned: Quantity | None
    destroyed: Quantity | None
    still_out: Quantity | None  # held less returned and destroyed; None: not known

    @property
    def acknowledged(self) -> str | None:
        return self.acks[0].time if self.acks else None

    def to_json(self) -> dict[str, Any]:
        return {
            "party": {"did": self.party.did, "name": self.party.name, "role": self.party.role},
            "holds_now": self.holds_now,
            "in_transit": self.in_transit,
            "notified": self.notified,
            "acknowledged": self.acknowledged,
            "acks": [ack.to_json() for ack in self.acks],
            "held": _q(self.held),
            "returned": _q(self.returned),
            "destroyed": _q(self.destroyed),
            "still_out": _q(self.still_out),
        }


@dataclass(frozen=True)
class LotLine:
    uri: str
    product: str
    through: str | None  # the named lot the recall reached it through; None: named itself
    holders: tuple[HolderLine, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "product": self.product,
            "through": self.through,
            "holders": [line.to_json() for line in self.holders],
        }


@dataclass(frozen=True)
class RecallEffectiveness:
    recall: RecallRecord  # as recorded on the first lot it names
    lots: tuple[LotLine, ...]

    def lines(self) -> list[HolderLine]:
        return [line for lot in self.lots for line in lot.holders]

    def totals(self) -> dict[str, Any]:
        """Holders, how many acknowledged, and quantities recovered and still
        out per unit (a holder whose quantity is unknown is counted apart)."""
        lines = self.lines()
        recovered: dict[str, float] = {}
        out: dict[str, float] = {}
        for line in lines:
            for q in (line.returned, line.destroyed):
                if q is not None:
                    recovered[q.unit] = recovered.get(q.unit, 0) + q.value
            if line.still_out is not None:
                out[line.still_out.unit] = out.get(line.still_out.unit, 0) + line.still_out.value
        return {
            "holders": len(lines),
            "acknowledged": sum(1 for line in lines if line.acks),
            "recovered": [Quantity(v, u).to_json() for u, v in sorted(recovered.items())],
            "still_out": [Quantity(v, u).to_json() for u, v in sorted(out.items()) if v > 0],
            "still_out_unknown": sum(
                1 for line in lines if line.still_out is None and not line.in_transit
            ),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "recall": self.recall.to_json(),
            "lots": [lot.to_json() for lot in self.lots],
            "totals": self.totals(),
        }


def _q(value: Quantity | None) -> dict[str, Any] | None:
    return None if value is None else value.to_json()


def _sum(quantities: Sequence[Quantity]) -> Quantity | None:
    """The sum of *quantities* if they share a unit; None if there are none or
    they do not (the ledger refuses mixed units where the lot's unit is known)."""
    if not quantities or len({q.unit for q in quantities}) != 1:
        return None
    return Quantity(sum(q.value for q in quantities), quantities[0].unit)


def custody_holdings(
    states: Sequence[LotState], holders: Mapping[int, Sequence[Party]]
) -> dict[tuple[str, str], Quantity | None]:
    """What each holder holds now as today's custody says (lots move whole):
    the custodian what is left of the lot (unknown without a registered
    quantity), every past holder none."""
    out: dict[tuple[str, str], Quantity | None] = {}
    for state in states:
        left = held(state)
        for party in holders.get(state.id, ()):
            if party.did == state.custodian_did:
                out[(state.uri, party.did)] = left
            else:
                out[(state.uri, party.did)] = None if left is None else Quantity(0, left.unit)
    return out


def ledger_holdings(
    store: Store, states: Sequence[LotState], holders: Mapping[int, Sequence[Party]]
) -> dict[tuple[str, str], Quantity | None]:
    """What each holder holds now, from the ledger's per-holder quantities
    (docs/protocol.md §13) for a lot with a unit; today's custody
    (`custody_holdings`) for a lot counted in wholes."""
    out = custody_holdings(states, holders)
    by_lot = holdings_by_id(store, [state.id for state in states])
    for state in states:
        lot = by_lot.get(state.id)
        if lot is None or lot.unit is None:
            continue
        held_now = {holder.party.did: holder.held for holder in lot.holders}
        for party in holders.get(state.id, ()):
            out[(state.uri, party.did)] = Quantity(held_now.get(party.did, 0.0), lot.unit)
    return out


def build_recall_report(
    recall: RecallRecord,
    states: Sequence[LotState],
    sources: Mapping[int, str],
    holders: Mapping[int, Sequence[Party]],
    transit: Mapping[int, Party],
    acks: Mapping[tuple[int, str], Sequence[Ack]],
    holdings: Holdings,
    notified: Notified,
) -> RecallEffectiveness:
    """The report from its rows (pure). *sources*: lot id -> the URI of the
    named lot the recall reached it through; *holders*: lot id -> parties that
    hold or held it; *transit*: lot id -> the party a shipment is on its way to;
    *acks*: (lot id, party did) -> its acknowledgements, oldest first;
    *notified*: (lot URI, party did) -> when a notice reached it."""
    lots = []
    for state in sorted(states, key=lambda s: (s.uri != recall.lot, s.uri)):
        lines = []
        parties = list(holders.get(state.id, ()))
        moving = transit.get(state.id)
        if moving is not None and all(p.did != moving.did for p in parties):
            parties.append(moving)
        for party in parties:
            mine = tuple(acks.get((state.id, party.did), ()))
            returned = _sum([a.returned for a in mine if a.returned is not None])
            destroyed = _sum([a.destroyed for a in mine if a.destroyed is not None])
            has = holdings.get((state.uri, party.did))
            lines.append(
                HolderLine(
                    party,
                    party.did == state.custodian_did,
                    moving is not None and moving.did == party.did,
                    notified.get((state.uri, party.did)),
                    mine,
                    has,
                    returned,
                    destroyed,
                    _still_out(has, returned, destroyed),
                )
            )
        lines.sort(key=lambda line: (not line.holds_now, line.party.name))
        source = sources.get(state.id)
        lots.append(
            LotLine(state.uri, state.product, None if source == state.uri else source, tuple(lines))
        )
    return RecallEffectiveness(recall, tuple(lots))


def _still_out(
    has: Quantity | None, returned: Quantity | None, destroyed: Quantity | None
) -> Quantity | None:
    if has is None:
        return None
    left = has.value
    for q in (returned, destroyed):
        if q is None:
            continue
        if q.unit != has.unit:
            return None
        left -= q.value
    return Quantity(max(0, left), has.unit)


# --- reading from the store


def find_recall(store: Store, ref: str) -> int:
    """The log index of the recall *ref* names: its event id (hex) or a lot
    URI (the newest recall in force on that lot, else the newest that reached
    it). Inside the caller's snapshot. Raises NotFound."""
    if ref.startswith(("http://", "https://")):
        lot = store.lot_by_uri(ref)
        if lot is None:
            raise NotFound(f"no lot {ref} in this ledger")
        rows = store.recall_rows(lot.id)
        if not rows:
            raise NotFound(f"{ref} was never recalled")
        active = [event for _, event, lift in rows if lift is None]
        return max(active) if active else max(event for _, event, _ in rows)
    try:
        event_id = bytes.fromhex(ref)
    except ValueError:
        message = f"{ref!r} is neither a recall event id (64 hex digits) nor a lot URI"
        raise NotFound(message) from None
    stored = store.find_event(event_id) if len(event_id) == 32 else None
    if stored is None or stored.envelope.kind != "recall":
        raise NotFound(f"no recall event {ref} in this ledger")
    return stored.index


def recall_report(
    store: Store,
    ref: str,
    holdings: Holdings | None = None,
    notified: Notified | Callable[[str], Notified] | None = None,
) -> RecallEffectiveness:
    """The report of the recall *ref* names (`find_recall`). *holdings*: what
    each holder holds now; None: from today's custody (`custody_holdings`).
    *notified*: (lot URI, party did) -> when a notice of the recall reached the
    party (the notifier's delivery record), or a function of the recall's
    event id that gives it."""
    with store.snapshot():
        index = find_recall(store, ref)
        rows = [(lot, source) for lot, source in store.recall_effects(index)]
        lot_ids = sorted({lot for lot, _ in rows})
        states = store.lot_states(lot_ids)
        by_id = {state.id: state for state in states}
        sources = {lot: store.subject(source) for lot, source in rows}
        people: dict[int, Party] = {}

        def party(identity_id: int) -> Party:
            if identity_id not in people:
                found = store.identity_by_id(identity_id)
                people[identity_id] = (
                    Party(found.did, found.name, found.role)
                    if found
                    else unknown_party(str(identity_id))
                )
            return people[identity_id]

        holders = {lot: [party(i) for i in store.custodian_history(lot)] for lot in lot_ids}
        transit: dict[int, Party] = {}
        for lot, (_, did, name, role) in store.open_shipments().items():
            if lot in by_id and did:
                transit[lot] = Party(did, name, role) if name else unknown_party(did)
        acks = _acks(store, acks_for_lots(store, lot_ids), party)
        named = min(rows, key=lambda row: (row[0] != row[1], row[0]))[1] if rows else None
        first = by_id.get(named) if named is not None else None
        records = recall_records(store, first.id, first.uri) if first else []
        record = next(r for r in records if r.event_index == index)
    if holdings is None:
        holdings = ledger_holdings(store, states, holders)
    if callable(notified):
        notified = notified(record.event_id)
    return build_recall_report(
        record, states, sources, holders, transit, acks, holdings, notified or {}
    )


def _acks(store: Store, rows: Sequence[AckRow], party: Any) -> dict[tuple[int, str], list[Ack]]:
    """Every acknowledgement about the lots, by (lot, party did): what came back
    counts whatever recall it answered (a unit is returned once)."""
    out: dict[tuple[int, str], list[Ack]] = {}
    for row in rows:
        stored = store.event_at(row.event)
        if stored is None:  # pragma: no cover - the table follows the log
            continue
        data = stored.envelope.data
        ack = Ack(
            row.event,
            stored.envelope.event_id,
            stored.envelope.time,
            row.recall,
            None if row.returned is None else quantity(*row.returned),
            None if row.destroyed is None else quantity(*row.destroyed),
            data.get("notes"),
        )
        out.setdefault((row.lot, party(row.party).did), []).append(ack)
    return out


__all__ = [
    "Ack",
    "HolderLine",
    "Holdings",
    "LotLine",
    "Notified",
    "RecallEffectiveness",
    "build_recall_report",
    "custody_holdings",
    "find_recall",
    "recall_report",
]
