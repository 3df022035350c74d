"""A lot's life in the words a consumer reads: custody steps and the legs
between handoffs. (Whether it is recalled is the store's to say: a recall can
reach a lot through an ancestor; see `provenance.lineage.recall_records`.)

Pure: give it the lot's chain (envelopes in chain order) and a way to name
identities; it does no I/O. `provenance.scan` feeds it from the store and the
web page renders what it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .envelope import Envelope


class Party(NamedTuple):
    """Who signed or was named in an event, as the ledger enrolled them."""

    did: str
    name: str
    role: str | None  # producer, carrier, … ; "device" for loggers; None if unknown


def unknown_party(did: str) -> Party:
    return Party(did, "unknown signer " + did[-8:], None)


Lookup = Callable[[str], Party]


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


def read_custody(lot_uri: str, events: Iterable[tuple[int, Envelope]], lookup: Lookup) -> Custody:
    """Steps, legs and recalls of *lot_uri* from its chain, `(log index, envelope)`
    in chain order. Readings are skipped: they belong to the legs' charts."""
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
        self.legs: list[Leg] = []
        self.origin: dict[str, Any] = {}
        self.producer: Party | None = None
        self.inputs: list[dict[str, Any]] = []
        self.outputs: list[dict[str, Any]] = []
        self.attached: dict[str, Party] = {}

    def add(self, index: int, envelope: Envelope) -> None:
        data = envelope.data
        actor = self.lookup(envelope.signer)
        time_us = envelope.time_us
        counterpart = None
        kind = envelope.kind
        if kind == "commission":
            self.origin = dict(data)
            self.producer = actor
            self._hand_to(time_us, actor)
        elif kind == "transform":
            self._on_transform(data, actor, time_us)
        elif kind == "ship":
            counterpart = self.lookup(data["to"])
            self._close(time_us)
            self.legs.append(Leg(time_us, None, actor, counterpart))
        elif kind == "receive":
            self._hand_to(time_us, actor)
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
            self._hand_to(time_us, actor)
        else:  # this lot went into something new
            self.outputs.extend(data["outputs"])

    def _close(self, time_us: int) -> None:
        if self.legs and self.legs[-1].end_us is None:
            last = self.legs[-1]
            self.legs[-1] = Leg(last.start_us, time_us, last.holder, last.receiver)

    def _hand_to(self, time_us: int, holder: Party) -> None:
        self._close(time_us)
        self.legs.append(Leg(time_us, None, holder))

    def finish(self) -> Custody:
        return Custody(
            tuple(self.steps),
            tuple(self.legs),
            self.origin,
            self.producer,
            tuple(self.inputs),
            tuple(self.outputs),
            tuple(self.attached.values()),
        )


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
    }.get(kind, ())
    details = {name: data[name] for name in keep if name in data}
    if kind == "transform":
        made_here = any(o["batch"] == lot_uri for o in data["outputs"])
        details["role"] = "output" if made_here else "input"
        details["inputs"] = len(data["inputs"])
        details["outputs"] = len(data["outputs"])
    return details
