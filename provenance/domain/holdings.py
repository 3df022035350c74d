"""Who holds how much of a lot now (docs/protocol.md, "Quantities"): per
party, what it holds, what of that is in transit and to whom, what it has
dispensed and used in transforms; and every shipment of the lot with what
was shipped, received, damaged and short.

Pure: `summarise` takes the store's rows (provenance/store/holdings.py) and a
way to name identities. `provenance.ledger.holdings_view.holdings(store,
lot_uri)` feeds it from the store; the trace, the recall report and the lot
page show what it returns. Quantities are in the lot's unit; a lot registered
without one is counted in wholes (`unit` None: 1 is the whole lot).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from provenance.domain.custody import Lookup, Party


def number(value: float) -> float:
    """5.0 reads better as the 5 that was signed."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else round(value, 9)


def amount_text(value: float, unit: str | None) -> str:
    """ "400 KGM"; for a lot counted in wholes: "the whole lot" or "none"."""
    if unit is None:
        return "the whole lot" if value > 0 else "none"
    return f"{number(value):g} {unit}"


def _party_json(party: Party) -> dict[str, Any]:
    return {"did": party.did, "name": party.name, "role": party.role}


@dataclass(frozen=True)
class Outgoing:
    """Part of a holder's stock on its way to *receiver* (shipped, not received)."""

    receiver: Party
    quantity: float
    shipment_index: int  # log index of the ship


@dataclass(frozen=True)
class Holder:
    """One party's share of a lot."""

    party: Party
    held: float  # what it holds now, including what is in transit from it
    in_transit: float  # of that, shipped and not received yet
    dispensed: float
    used: float  # by its transforms
    shipments: tuple[Outgoing, ...] = ()  # what is in transit from it, to whom

    @property
    def free(self) -> float:
        """What it may still ship, dispense or use."""
        return max(self.held - self.in_transit, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "party": _party_json(self.party),
            "held": number(self.held),
            "in_transit": number(self.in_transit),
            "free": number(self.free),
            "dispensed": number(self.dispensed),
            "used": number(self.used),
            "in_transit_to": [
                {
                    "party": _party_json(out.receiver),
                    "quantity": number(out.quantity),
                    "shipment_index": out.shipment_index,
                }
                for out in self.shipments
            ],
        }


@dataclass(frozen=True)
class Movement:
    """The lot's part of one shipment."""

    shipment_index: int
    sender: Party
    receiver: Party
    shipped: float
    received: float | None  # None: in transit
    damaged: float | None
    receive_index: int | None

    @property
    def in_transit(self) -> bool:
        return self.receive_index is None

    @property
    def shortfall(self) -> float:
        """shipped − received − damaged, once received."""
        if self.received is None:
            return 0.0
        return max(self.shipped - self.received - (self.damaged or 0.0), 0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "shipment_index": self.shipment_index,
            "sender": _party_json(self.sender),
            "receiver": _party_json(self.receiver),
            "shipped": number(self.shipped),
            "received": None if self.received is None else number(self.received),
            "damaged": None if self.damaged is None else number(self.damaged),
            "shortfall": number(self.shortfall),
            "receive_index": self.receive_index,
        }


@dataclass(frozen=True)
class LotHoldings:
    """Who holds how much of one lot now, and how it moved."""

    lot_uri: str
    unit: str | None  # None: counted in wholes (registered without a quantity)
    registered: float | None
    holders: tuple[Holder, ...]  # every party that holds, held, dispensed or used some
    movements: tuple[Movement, ...]  # in log order

    def holder(self, name: str) -> Holder:
        """The holder called *name* (KeyError if none)."""
        for holder in self.holders:
            if holder.party.name == name:
                return holder
        raise KeyError(name)

    @property
    def current(self) -> tuple[Holder, ...]:
        """The parties holding some of it now."""
        return tuple(holder for holder in self.holders if holder.held > 0)

    @property
    def shortfall(self) -> float:
        return sum(movement.shortfall for movement in self.movements)

    @property
    def damaged(self) -> float:
        return sum(movement.damaged or 0.0 for movement in self.movements)

    def text(self, value: float) -> str:
        return amount_text(value, self.unit)

    def to_json(self) -> dict[str, Any]:
        return {
            "lot": self.lot_uri,
            "unit": self.unit,
            "registered": None if self.registered is None else number(self.registered),
            "holders": [holder.to_json() for holder in self.holders],
            "shipments": [movement.to_json() for movement in self.movements],
            "shortfall": number(self.shortfall),
            "damaged": number(self.damaged),
        }


def summarise(
    lot_uri: str,
    unit: str | None,
    registered: float | None,
    rows: Iterable[tuple[str, float, float, float]],
    movements: Iterable[tuple[int, str, str, float, float | None, float | None, int | None]],
    lookup: Lookup,
) -> LotHoldings:
    """*rows*: (party did, held, dispensed, used); *movements*: (ship index,
    sender did, receiver did, shipped, received, damaged, receive index), in
    log order. A holder's in-transit part is its open shipments'."""
    moves = tuple(
        Movement(index, lookup(sender), lookup(receiver), shipped, received, damaged, receipt)
        for index, sender, receiver, shipped, received, damaged, receipt in movements
    )
    outgoing: dict[str, list[Outgoing]] = {}
    for move in moves:
        if move.in_transit:
            outgoing.setdefault(move.sender.did, []).append(
                Outgoing(move.receiver, move.shipped, move.shipment_index)
            )
    holders = []
    for did, held, dispensed, used in rows:
        out = tuple(outgoing.get(did, ()))
        holders.append(
            Holder(lookup(did), held, sum(o.quantity for o in out), dispensed, used, out)
        )
    holders.sort(key=lambda h: (-h.held, h.party.name))
    return LotHoldings(lot_uri, unit, registered, tuple(holders), moves)
