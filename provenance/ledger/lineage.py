"""Lineage and recalls: where a lot came from, what was made from it, who holds
each of those lots now, and which recalls reach it.

The graph is the store's `lineage` table: one edge per input x output of every
`transform`, written by `Ledger.append` in the same transaction as the event
(docs/lineage.md). `trace` reads it with one recursive query per direction plus
one query for the lots' state, then `build_trace` (pure) works out depths,
origins and quantities. `active_recalls` / `recall_history` read the `recalls`
table: a lot may be recalled directly and through several ancestors at once,
and each recall is kept with the lot (the *source*) the regulator named.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from provenance.core.errors import NotFound
from provenance.domain.custody import Party, unknown_party
from provenance.domain.holdings import LotHoldings
from provenance.ledger.holdings_view import holdings_by_id
from provenance.store.db import Store
from provenance.store.rows import LineageEdge, LotState

BACK = "back"
FORWARD = "forward"
BOTH = "both"
DIRECTIONS = (BACK, FORWARD, BOTH)


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit}


def quantity(value: float | None, unit: str | None) -> Quantity | None:
    if value is None or unit is None:
        return None
    return Quantity(_number(value), unit)


def _number(value: float) -> float:
    """SQLite gives REALs back as floats: 5.0 reads better as the 5 that was signed."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def held(state: LotState) -> Quantity | None:
    """What the custodian still holds: the registered quantity (commission, or
    the transform that made the lot) less what transforms used and what was
    dispensed, never below zero. Unknown (None) without a registered quantity
    or when some use was stated in another unit."""
    if state.quantity is None or state.unit is None or state.used_other:
        return None
    return Quantity(_number(max(0.0, state.quantity - state.used)), state.unit)


@dataclass(frozen=True)
class TracedLot:
    """One lot of a trace and who holds it now."""

    uri: str
    gtin: str
    lot: str
    product: str
    depth: int  # steps from the traced lot: 0 itself, then 1, 2, … up or down
    custodian: Party
    in_transit_to: Party | None  # shipped, not yet received: custody has not moved
    location: dict[str, Any] | None  # last location an event gave (commission origin, ship, …)
    registered: Quantity | None
    held: Quantity | None  # see `held`
    recalled: bool
    category: str | None = None
    expiry: str | None = None
    parents: tuple[str, ...] = ()  # lots it was made from (those in this trace)
    children: tuple[str, ...] = ()  # lots made from it (those in this trace)
    holdings: LotHoldings | None = None  # who holds how much of it now

    def to_json(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "gtin": self.gtin,
            "lot": self.lot,
            "product": self.product,
            "category": self.category,
            "expiry": self.expiry,
            "depth": self.depth,
            "custodian": _party_json(self.custodian),
            "in_transit_to": _party_json(self.in_transit_to),
            "location": self.location,
            "quantity": {
                "registered": None if self.registered is None else self.registered.to_json(),
                "held": None if self.held is None else self.held.to_json(),
            },
            "recalled": self.recalled,
            "parents": list(self.parents),
            "children": list(self.children),
            "holdings": None if self.holdings is None else self.holdings.to_json(),
        }


@dataclass(frozen=True)
class TraceEdge:
    """*parent* went into the transform at log index *event_index*, which made
    *child*. The event states how much of each input it used and how much of
    each output it made, not how inputs split among outputs."""

    parent: str
    child: str
    event_index: int
    event_id: str
    used: Quantity | None  # of the parent, by this transform
    made: Quantity | None  # of the child

    def to_json(self) -> dict[str, Any]:
        return {
            "parent": self.parent,
            "child": self.child,
            "event_index": self.event_index,
            "event_id": self.event_id,
            "used": None if self.used is None else self.used.to_json(),
            "made": None if self.made is None else self.made.to_json(),
        }


@dataclass(frozen=True)
class Trace:
    lot: TracedLot  # the traced lot (depth 0)
    direction: str
    upstream: tuple[TracedLot, ...]  # by depth, then URI
    downstream: tuple[TracedLot, ...]
    origins: tuple[str, ...]  # upstream lots made from nothing we know (back/both only)
    edges: tuple[TraceEdge, ...]
    lots: Mapping[str, TracedLot] = field(default_factory=dict)  # every lot above, by URI

    def to_json(self) -> dict[str, Any]:
        return {
            "lot": self.lot.to_json(),
            "direction": self.direction,
            "origins": list(self.origins),
            "upstream": [lot.to_json() for lot in self.upstream],
            "downstream": [lot.to_json() for lot in self.downstream],
            "edges": [edge.to_json() for edge in self.edges],
        }


def _party_json(party: Party | None) -> dict[str, Any] | None:
    return None if party is None else {"did": party.did, "name": party.name, "role": party.role}


# --- reading from the store


def trace(store: Store, lot_uri: str, direction: str = BOTH) -> Trace:
    """Trace *lot_uri* back to its origins, forward to every lot made from it,
    or both. Raises NotFound for a lot the ledger does not know."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    with store.snapshot():
        root = store.lot_by_uri(lot_uri)
        if root is None:
            raise NotFound(f"no lot {lot_uri} in this ledger")
        up = store.lineage_edges(root.id, BACK) if direction != FORWARD else []
        down = store.lineage_edges(root.id, FORWARD) if direction != BACK else []
        ids = {root.id}
        for edge in (*up, *down):
            ids.update((edge.parent, edge.child))
        states = store.lot_states(sorted(ids))
        transit = store.open_shipments()
        event_ids = store.event_ids([edge.event for edge in (*up, *down)])
        held = holdings_by_id(store, sorted(ids))
    return build_trace(root.id, direction, up, down, states, transit, event_ids, held)


def build_trace(
    root: int,
    direction: str,
    up: Sequence[LineageEdge],
    down: Sequence[LineageEdge],
    states: Iterable[LotState],
    transit: Mapping[int, tuple[Any, ...]],
    event_ids: Mapping[int, str],
    holdings: Mapping[int, LotHoldings] | None = None,
) -> Trace:
    """The trace from the store's rows (pure). *transit*: lot id -> (ship event,
    receiver did, name, role) for lots in transit; *holdings*: lot id -> who
    holds how much of it."""
    by_id = {state.id: state for state in states}
    up_depth = _depths(root, _adjacency(up, reverse=True))
    down_depth = _depths(root, _adjacency(down, reverse=False))
    parents: dict[int, list[int]] = {}
    children: dict[int, list[int]] = {}
    for edge in {(e.parent, e.child): e for e in (*up, *down)}.values():
        parents.setdefault(edge.child, []).append(edge.parent)
        children.setdefault(edge.parent, []).append(edge.child)

    def uri(lot_id: int) -> str:
        return by_id[lot_id].uri

    def traced(lot_id: int, depth: int) -> TracedLot:
        state = by_id[lot_id]
        moving = transit.get(lot_id)
        receiver = None
        if moving is not None:
            _, did, name, role = moving
            receiver = Party(did, name, role) if did and name else unknown_party(did or "?")
        custodian = (
            Party(state.custodian_did, state.custodian_name, state.custodian_role)
            if state.custodian_did and state.custodian_name
            else unknown_party(state.custodian_did or "?")
        )
        return TracedLot(
            state.uri,
            state.gtin,
            state.lot,
            state.product,
            depth,
            custodian,
            receiver,
            state.location,
            quantity(state.quantity, state.unit),
            _left(state, (holdings or {}).get(lot_id)),
            state.recalled,
            state.category,
            state.expiry,
            tuple(sorted(uri(p) for p in parents.get(lot_id, ()))),
            tuple(sorted(uri(c) for c in children.get(lot_id, ()))),
            (holdings or {}).get(lot_id),
        )

    def ordered(depths: Mapping[int, int]) -> tuple[TracedLot, ...]:
        lots = [traced(lot_id, depth) for lot_id, depth in depths.items() if lot_id != root]
        return tuple(sorted(lots, key=lambda lot: (lot.depth, lot.uri)))

    upstream, downstream = ordered(up_depth), ordered(down_depth)
    origins: tuple[str, ...] = ()
    if direction != FORWARD:
        origins = tuple(sorted(uri(i) for i in up_depth if i != root and i not in parents))
        if not origins and root not in parents:
            origins = (uri(root),)  # nothing upstream: the lot is its own origin
    edges = tuple(
        TraceEdge(
            uri(e.parent),
            uri(e.child),
            e.event,
            event_ids.get(e.event, ""),
            quantity(e.in_value, e.in_unit),
            quantity(e.out_value, e.out_unit),
        )
        for e in sorted({(e.parent, e.child): e for e in (*up, *down)}.values(), key=_edge_key)
    )
    me = traced(root, 0)
    everything = {lot.uri: lot for lot in (me, *upstream, *downstream)}
    return Trace(me, direction, upstream, downstream, origins, edges, everything)


def _left(state: LotState, shares: LotHoldings | None) -> Quantity | None:
    """What is left of the lot: what its holders hold together (received
    short or damaged is gone), else `held`."""
    left = held(state)
    if left is None or shares is None or shares.unit != left.unit:
        return left
    return Quantity(_number(sum(holder.held for holder in shares.holders)), left.unit)


def _edge_key(edge: LineageEdge) -> tuple[int, int, int]:
    return (edge.event, edge.parent, edge.child)


def _adjacency(edges: Iterable[LineageEdge], *, reverse: bool) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for edge in edges:
        start, end = (edge.child, edge.parent) if reverse else (edge.parent, edge.child)
        out.setdefault(start, []).append(end)
    return out


def _depths(root: int, adjacency: Mapping[int, Sequence[int]]) -> dict[int, int]:
    """Shortest number of steps from *root* to every lot it reaches."""
    depths = {root: 0}
    queue = deque([root])
    while queue:
        lot_id = queue.popleft()
        for nxt in adjacency.get(lot_id, ()):
            if nxt not in depths:
                depths[nxt] = depths[lot_id] + 1
                queue.append(nxt)
    return depths


# --- recalls


@dataclass(frozen=True)
class Lift:
    event_index: int
    event_id: str
    time: str
    regulator: Party
    reason: str


@dataclass(frozen=True)
class RecallRecord:
    """One recall that reached a lot: directly (source is the lot) or through an
    ancestor the regulator named (source is that ancestor)."""

    lot: str
    source: str
    event_index: int
    event_id: str
    time: str
    regulator: Party
    reason: str
    recall_class: str | None
    instructions: str | None
    lift: Lift | None = None

    @property
    def active(self) -> bool:
        return self.lift is None

    @property
    def direct(self) -> bool:
        return self.source == self.lot

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "direct": self.direct,
            "class": self.recall_class,
            "reason": self.reason,
            "instructions": self.instructions,
            "regulator": _party_json(self.regulator),
            "time": self.time,
            "event_id": self.event_id,
            "log_index": self.event_index,
        }
        if self.lift is not None:
            out["lifted"] = {
                "reason": self.lift.reason,
                "regulator": _party_json(self.lift.regulator),
                "time": self.lift.time,
                "event_id": self.lift.event_id,
                "log_index": self.lift.event_index,
            }
        return out


def active_recalls(store: Store, lot_uri: str) -> list[RecallRecord]:
    """The recalls in force on a lot, oldest first (empty: not recalled).
    Raises NotFound for an unknown lot."""
    return [record for record in recall_history(store, lot_uri) if record.active]


def recall_history(store: Store, lot_uri: str) -> list[RecallRecord]:
    """Every recall that reached the lot, with its lift if it was lifted, oldest first."""
    with store.snapshot():
        lot = store.lot_by_uri(lot_uri)
        if lot is None:
            raise NotFound(f"no lot {lot_uri} in this ledger")
        return recall_records(store, lot.id, lot_uri)


def recall_records(
    store: Store, lot_id: int, lot_uri: str, cache: dict[Any, Any] | None = None
) -> list[RecallRecord]:
    """`recall_history` for a lot id (inside the caller's snapshot or
    transaction). Pass the same *cache* dict for many lots of one snapshot: a
    cascade's lots share their recall events and regulators."""
    cache = {} if cache is None else cache
    people: dict[str, Party] = cache.setdefault("people", {})

    def who(did: str) -> Party:
        if did not in people:
            identity = store.identity_by_did(did)
            people[did] = (
                Party(did, identity.name, identity.role) if identity else unknown_party(did)
            )
        return people[did]

    events: dict[int, Any] = cache.setdefault("events", {})

    def envelope(index: int) -> Any:
        if index not in events:
            stored = store.event_at(index)
            if stored is None:
                raise NotFound(f"recall event at log index {index} is missing")
            events[index] = stored.envelope
        return events[index]

    records = []
    for source, event_index, lift_index in store.recall_rows(lot_id):
        recall = envelope(event_index)
        lift = None
        if lift_index is not None:
            ended = envelope(lift_index)
            lift = Lift(
                lift_index, ended.event_id, ended.time, who(ended.signer), ended.data["reason"]
            )
        records.append(
            RecallRecord(
                lot_uri,
                store.subject(source),
                event_index,
                recall.event_id,
                recall.time,
                who(recall.signer),
                recall.data["reason"],
                recall.data.get("class"),
                recall.data.get("instructions"),
                lift,
            )
        )
    return records


__all__ = [
    "BACK",
    "BOTH",
    "DIRECTIONS",
    "FORWARD",
    "Lift",
    "Quantity",
    "RecallRecord",
    "Trace",
    "TraceEdge",
    "TracedLot",
    "active_recalls",
    "build_trace",
    "held",
    "recall_history",
    "recall_records",
    "trace",
]
