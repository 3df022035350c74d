"""A lot's life in the words a consumer reads: custody steps and the legs
between handoffs. (Whether it is recalled is the store's to say: a recall can
reach a lot through an ancestor; see `provenance.ledger.lineage.recall_records`.)

Pure: give it the lot's chain (envelopes in chain order) and a way to name
identities; it does no I/O. `provenance.ledger.lot_view` feeds it from the store and the
web page renders what it returns.

Time (docs/protocol.md §3.1): steps are listed by their `time`, whenever they
arrived. Legs follow the handoffs in the order the ledger applied them (so the
last leg's holder is the custodian), each starting at its handoff's `time`.
The ledger refuses handoffs dated out of order, but a ledger from before those
rules may hold some; then a handoff dated after a later one is placed at the
later one's time, legs never run backwards, and a note says the times are
approximate. Nothing here raises on odd times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from provenance.core.disclosure import SD
from provenance.core.envelope import Envelope


class Party(NamedTuple):
    """Who signed or was named in an event, as the ledger enrolled them."""

    did: str
    name: str
    role: str | None  # producer, carrier, … ; "device" for loggers; None if unknown


def unknown_party(did: str) -> Party:
    return Party(did, "unknown signer " + did[-8:], None)


Lookup = Callable[[str], Party]

# Notes on what could not be placed plainly (stable codes; pages word them).
NOTE_BEFORE_ORIGIN = "dated-before-origin"  # events dated before the lot's commissioning
NOTE_OUT_OF_ORDER = "handoffs-out-of-order"  # handoffs dated out of the order they happened


@dataclass(frozen=True)
class Step:
    """One non-reading event of the lot, ready to show on a timeline."""

    kind: str  # the envelope kind: commission, ship, receive, …
    time_us: int
    actor: Party  # who signed it
    event_id: str
    index: int  # position in the transparency log
    counterpart: Party | None = None  # ship: the receiver; attach/detach: the logger
    location: dict[str, Any] | None = None  # {"name", "lat", "lon", "country", "gln"}
    details: dict[str, Any] = field(default_factory=dict)  # kind-specific, see `_details`


@dataclass(frozen=True)
class Leg:
    """A stretch of the lot's life with one holder, or in transit between two."""

    start_us: int
    end_us: int | None  # None: still going
    holder: Party  # the custodian, or the sender while in transit
    receiver: Party | None = None  # set while in transit

    @property
    def in_transit(self) -> bool:
        return self.receiver is not None

    def contains(self, time_us: int) -> bool:
        return self.start_us <= time_us and (self.end_us is None or time_us < self.end_us)


@dataclass(frozen=True)
class Custody:
    """What `read_custody` makes of a lot's chain."""

    steps: tuple[Step, ...]
    legs: tuple[Leg, ...]
    origin: dict[str, Any]  # the commission's (or transform output's) data for this lot
    producer: Party | None  # who commissioned or made the lot
    inputs: tuple[dict[str, Any], ...] = ()  # lots it was made from, with quantities
    outputs: tuple[dict[str, Any], ...] = ()  # lots made from it
    attached: tuple[Party, ...] = ()  # loggers still attached after the last event
    born_us: int | None = None  # `time` of its commission, or of the transform that made it
    notes: tuple[str, ...] = ()  # NOTE_* codes, in a fixed order


def read_custody(lot_uri: str, events: Iterable[tuple[int, Envelope]], lookup: Lookup) -> Custody:
    """Steps and legs of *lot_uri* from its chain, `(log index, envelope)` in
    chain order. Readings are skipped: they belong to the legs' charts."""
    builder = _Builder(lot_uri, lookup)
    for index, envelope in events:
        if envelope.kind != "reading":
            builder.add(index, envelope)
    return builder.finish()


class _Builder:
    def __init__(self, lot_uri: str, lookup: Lookup):
        self.lot_uri = lot_uri
        self.lookup = lookup
        self.steps: list[Step] = []
        self.origin: dict[str, Any] = {}
        self.producer: Party | None = None
        self.inputs: list[dict[str, Any]] = []
        self.outputs: list[dict[str, Any]] = []
        self.attached: dict[str, Party] = {}
        self.born_us: int | None = None
        # Handoffs in chain order: (time, holder, receiver while in transit).
        self.handoffs: list[tuple[int, Party, Party | None]] = []

    def add(self, index: int, envelope: Envelope) -> None:
        data = envelope.data
        actor = self.lookup(envelope.signer)
        time_us = envelope.time_us
        counterpart = None
        kind = envelope.kind
        if kind == "commission":
            self.origin = dict(data)
            self.producer = actor
            self._made(time_us)
            self.handoffs.append((time_us, actor, None))
        elif kind == "transform":
            self._on_transform(data, actor, time_us)
        elif kind == "ship":
            counterpart = self.lookup(data["to"])
            self.handoffs.append((time_us, actor, counterpart))
        elif kind == "receive":
            self.handoffs.append((time_us, actor, None))
        elif kind == "attach":
            counterpart = self.attached[data["device"]] = self.lookup(data["device"])
        elif kind == "detach":
            counterpart = self.lookup(data["device"])
            self.attached.pop(data["device"], None)
        self.steps.append(
            Step(
                kind,
                time_us,
                actor,
                envelope.event_id,
                index,
                counterpart,
                data.get("location") or (data.get("origin") if kind == "commission" else None),
                _details(kind, data, self.lot_uri),
            )
        )

    def _on_transform(self, data: dict[str, Any], actor: Party, time_us: int) -> None:
        produced = next((o for o in data["outputs"] if o["batch"] == self.lot_uri), None)
        if produced is not None:  # this lot was made here
            self.origin = {**produced, "location": data.get("location")}
            self.producer = actor
            self.inputs = list(data["inputs"])
            self._made(time_us)
            self.handoffs.append((time_us, actor, None))
        else:  # this lot went into something new
            self.outputs.extend(data["outputs"])

    def _made(self, time_us: int) -> None:
        if self.born_us is None:  # the first making (a commission before its transform)
            self.born_us = time_us

    def finish(self) -> Custody:
        legs, moved = _legs(self.handoffs)
        notes = []
        born = self.born_us
        if born is not None and any(step.time_us < born for step in self.steps):
            notes.append(NOTE_BEFORE_ORIGIN)
        if moved:
            notes.append(NOTE_OUT_OF_ORDER)
        return Custody(
            tuple(sorted(self.steps, key=lambda step: (step.time_us, step.index))),
            legs,
            self.origin,
            self.producer,
            tuple(self.inputs),
            tuple(self.outputs),
            tuple(self.attached.values()),
            born,
            tuple(notes),
        )


def _legs(handoffs: Sequence[tuple[int, Party, Party | None]]) -> tuple[tuple[Leg, ...], bool]:
    """Legs between the handoffs (in the order the ledger applied them), and
    whether a handoff had to be moved: one dated after a later handoff starts
    when that one does (a lot registered after the fact, its earlier handoffs
    recorded with their real times), so no leg ends before it starts."""
    starts = [time_us for time_us, _, _ in handoffs]
    for position in range(len(starts) - 2, -1, -1):
        starts[position] = min(starts[position], starts[position + 1])
    moved = any(start != time_us for start, (time_us, _, _) in zip(starts, handoffs, strict=True))
    legs = tuple(
        Leg(start, starts[n + 1] if n + 1 < len(starts) else None, holder, receiver)
        for n, (start, (_, holder, receiver)) in enumerate(zip(starts, handoffs, strict=True))
    )
    return legs, moved


def _details(kind: str, data: dict[str, Any], lot_uri: str) -> dict[str, Any]:
    """The few fields of *data* a timeline shows for each kind."""
    keep: Sequence[str] = {
        "commission": ("product", "produced", "quantity"),
        "ship": ("purpose",),
        "receive": ("condition",),
        "inspect": ("result", "notes", "document"),
        "recall": ("reason", "class", "instructions"),
        "recall-lift": ("reason",),
        "dispense": ("quantity",),
        "hold": ("rule", "reason"),
        "release": ("reason",),
        "flag": ("signal", "reason"),
        "pack": ("sscc", "parent"),
        "unpack": ("sscc",),
    }.get(kind, ())
    details = {name: data[name] for name in keep if name in data}
    if kind == "transform":
        made_here = any(o["batch"] == lot_uri for o in data["outputs"])
        details["role"] = "output" if made_here else "input"
        details["inputs"] = len(data["inputs"])
        details["outputs"] = len(data["outputs"])
    if data.get(SD):  # v2: how many fields the signer kept private (docs/protocol.md §14)
        details["private"] = len(data[SD])
    if kind == "serials":
        details["serials"] = len(data["serials"])
    return details
