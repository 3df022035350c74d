"""The time rules of a lot (docs/protocol.md §3.1): nothing happens to a lot
before it exists, and a holder's events about a lot come after the handoff
that made it the holder. They apply from the log index the time rules came in
(`Ledger.time_rules_from`); what the log held before stays valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from provenance.core.envelope import Envelope
from provenance.core.errors import RejectedEvent
from provenance.core.kinds import KIND_NAMES
from provenance.core.timefmt import format_time, parse_time
from provenance.ledger.kinds.base import Batch
from provenance.ledger.reasons import BEFORE_COMMISSION, OUT_OF_ORDER
from provenance.store.rows import Identity, Lot

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


def kind_at(ledger: Ledger, index: int, batch: Batch) -> str | None:
    """Kind of the event at log *index*, in this batch or already stored."""
    for row in reversed(batch.events):  # rows are in index order
        if row[0] == index:
            return KIND_NAMES[row[1]]
        if row[0] < index:
            break
    return ledger.store.event_kind(index)


def time_at(ledger: Ledger, index: int, batch: Batch) -> int:
    """`time` (µs) of the event at log *index*, in this batch or stored."""
    if batch.events and index >= batch.events[0][0]:  # rows are in index order
        for row in reversed(batch.events):
            if row[0] == index:
                return parse_time(row[4])
    stored = ledger.store.event_at(index)
    assert stored is not None, f"no event at log index {index}"
    return stored.envelope.time_us


def lot_by_id(ledger: Ledger, lot_id: int) -> Lot:
    lot = ledger.lots_by_id.get(lot_id) or ledger.store.lot_by_id(lot_id)
    assert lot is not None, f"no lot {lot_id}"
    return lot


def born_us_of(ledger: Ledger, lot_id: int, batch: Batch) -> int:
    """When the lot came to be: the `time` of its commission, or of the
    transform that made it. Never changes, so it is kept."""
    born = ledger.born.get(lot_id)
    if born is None:
        lot = lot_by_id(ledger, lot_id)
        born = ledger.born[lot_id] = time_at(ledger, lot.origin_event, batch)
    return born


def not_before_birth(ledger: Ledger, env: Envelope, lots: Sequence[Lot], batch: Batch) -> None:
    """Refuse an event about a lot dated before the lot existed."""
    for lot in lots:
        born = born_us_of(ledger, lot.id, batch)
        if env.time_us < born:
            if kind_at(ledger, lot.origin_event, batch) == "transform":
                how, fix = "was made by a transform", "date the transform when it happened"
            else:
                how = "was commissioned"
                fix = (
                    "date its commissioning at the real production time "
                    "(`provenance batch register --produced`, or Produced in the portal)"
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
    batch: Batch,
) -> None:
    """The holder's events about its lots (ship, attach, detach, dispense,
    transform) are dated at or after it got them: the lot's commission or
    making, or the receive that made the signer its custodian. So a lot's
    handoffs are in time order in its chain. From the time-rules index on."""
    if index < ledger.time_rules_from:
        return
    not_before_birth(ledger, env, lots, batch)
    for lot in lots:
        received = ledger.store.last_receive_of(lot.id)
        if received is None:
            continue  # held since its making, checked above
        since = time_at(ledger, received, batch)
        if env.time_us < since:
            who = signer.name if signer is not None else env.signer
            raise RejectedEvent(
                OUT_OF_ORDER,
                f"{env.kind} at {env.time} is dated before {who} received {lot.uri} "
                f"({format_time(since)}): a holder's events about a lot come after the "
                "handoff that made it the holder; check the signer's clock",
            )
