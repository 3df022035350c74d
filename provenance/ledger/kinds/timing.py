"""The time rules of a lot (docs/protocol.md §3.1): nothing happens to a lot
before it exists, and a holder's events about a lot come after the handoff
that made it the holder. They apply from the log index the time rules came in
(`Ledger.time_rules_from`); what the log held before stays valid.
Here too: what an event is and when, in its append's batch or already
logged (`kind_at`, `time_at`, `TransactionRefs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from provenance.core.envelope import Envelope
from provenance.core.errors import RejectedEvent
from provenance.core.kinds import KIND_NAMES
from provenance.core.timefmt import format_time, parse_time
from provenance.ledger.kinds.base import Transaction
from provenance.ledger.reasons import BEFORE_COMMISSION, OUT_OF_ORDER
from provenance.store.rows import Identity, Lot

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


def kind_at(ledger: Ledger, index: int, txn: Transaction) -> str | None:
    """Kind of the event at log *index*, in this batch or already stored."""
    for row in reversed(txn.events):  # rows are in index order
        if row[0] == index:
            return KIND_NAMES[row[1]]
        if row[0] < index:
            break
    return ledger.store.event_kind(index)


class TransactionRefs:
    """`Refs` (provenance/store/derived.py) for one event being appended: what
    it names, found in its append transaction (not in `events` yet) or
    already logged. A kind's checks and its derived effect (`Store.derive`) use
    the same lookup, so a release of a hold earlier in the same transaction ends it."""

    __slots__ = ("_events", "ledger", "txn")

    def __init__(self, ledger: Ledger, txn: Transaction) -> None:
        self.ledger, self.txn = ledger, txn
        self._events: dict[tuple[bytes, str, int], int | None] = {}

    def chain(self, subject: str) -> int:
        lot = self.ledger.lot(subject)
        assert lot is not None, subject  # the kind's checks found or made it
        return lot.id

    def event(self, event_id: bytes, kind: str, before: int) -> int | None:
        key = (event_id, kind, before)
        if key not in self._events:
            index = self.txn.ids.get(event_id)
            if index is None:
                stored = self.ledger.store.find_event(event_id)
                index = None if stored is None else stored.index
            if index is not None and (
                index >= before or kind_at(self.ledger, index, self.txn) != kind
            ):
                index = None
            self._events[key] = index
        return self._events[key]


def time_at(ledger: Ledger, index: int, txn: Transaction) -> int:
    """`time` (µs) of the event at log *index*, in this batch or stored."""
    if txn.events and index >= txn.events[0][0]:  # rows are in index order
        for row in reversed(txn.events):
            if row[0] == index:
                return parse_time(row[4])
    stored = ledger.store.event_at(index)
    assert stored is not None, f"no event at log index {index}"
    return stored.envelope.time_us


def lot_by_id(ledger: Ledger, lot_id: int) -> Lot:
    lot = ledger.lots_by_id.get(lot_id) or ledger.store.lot_by_id(lot_id)
    assert lot is not None, f"no lot {lot_id}"
    return lot


def born_us_of(ledger: Ledger, lot_id: int, txn: Transaction) -> int:
    """When the lot came to be: the `time` of its commission, or of the
    transform that made it. Never changes, so it is kept."""
    born = ledger.born.get(lot_id)
    if born is None:
        lot = lot_by_id(ledger, lot_id)
        born = ledger.born[lot_id] = time_at(ledger, lot.origin_event, txn)
    return born


def not_before_birth(ledger: Ledger, env: Envelope, lots: Sequence[Lot], txn: Transaction) -> None:
    """Refuse an event about a lot dated before the lot existed."""
    for lot in lots:
        born = born_us_of(ledger, lot.id, txn)
        if env.time_us < born:
            if kind_at(ledger, lot.origin_event, txn) == "transform":
                how, fix = "was made by a transform", "date the transform when it happened"
            else:
                how = "was commissioned"
                fix = (
                    "date its commissioning at the real production time "
                    "(`provenance lot register --produced`, or Produced in the portal)"
                )
            raise RejectedEvent(
                BEFORE_COMMISSION,
                f"{env.kind} at {env.time} is dated before {lot.uri} {how} "
                f"({format_time(born)}): nothing happens to a lot before it exists. If the "
                f"lot existed earlier, {fix}; else check the signer's clock",
            )


def within_custody(
    ledger: Ledger,
    env: Envelope,
    signer: Identity | None,
    lots: Sequence[Lot],
    index: int,
    txn: Transaction,
) -> None:
    """The holder's events about its lots (ship, attach, detach, dispense,
    transform) are dated at or after it got them: the lot's commission or
    making, or the receive that made the signer its custodian. So a lot's
    handoffs are in time order in its chain. From the time-rules index on."""
    if index < ledger.time_rules_from:
        return
    not_before_birth(ledger, env, lots, txn)
    for lot in lots:
        if index >= ledger.quantity_rules_from and signer is not None:
            # several may hold a lot: the handoff that made the *signer* a holder
            received = ledger.store.last_receive_by(lot.id, signer.id)
        else:
            received = ledger.store.last_receive_of(lot.id)
        if received is None:
            continue  # held since its making, checked above
        since = time_at(ledger, received, txn)
        if env.time_us < since:
            who = signer.name if signer is not None else env.signer
            raise RejectedEvent(
                OUT_OF_ORDER,
                f"{env.kind} at {env.time} is dated before {who} received {lot.uri} "
                f"({format_time(since)}): a holder's events about a lot come after the "
                "handoff that made it the holder; check the signer's clock",
            )
