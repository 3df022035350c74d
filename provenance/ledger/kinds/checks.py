"""The checks several kinds share: the lots an event names, whose they are and
who may sign about them, the parties and devices it names, the GS1 prefixes a
commissioner holds, and the recalls and holds in force on a lot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from provenance.core.envelope import Envelope
from provenance.core.errors import RejectedEvent
from provenance.core.identity import OVERSIGHT_ROLES
from provenance.core.kinds import RECALL_RETURN, company_prefix_digits, under_prefix
from provenance.ledger.kinds.base import Transaction
from provenance.ledger.reasons import (
    CONFLICT,
    HELD,
    NOT_CUSTODIAN,
    RECALLED,
    UNAUTHORISED,
    UNKNOWN_DEVICE,
    UNKNOWN_LOT,
    UNKNOWN_PARTY,
)
from provenance.store.rows import Identity, Lot

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


def lots_of(ledger: Ledger, env: Envelope) -> list[Lot]:
    found = []
    for uri in env.lots or ():
        lot = ledger.lot(uri)
        if lot is None:
            raise RejectedEvent(UNKNOWN_LOT, f"{uri} is not registered: commission it first")
        found.append(lot)
    return found


def custodian_of(
    ledger: Ledger, env: Envelope, signer: Identity | None, lots: Sequence[Lot]
) -> None:
    assert signer is not None
    for lot in lots:
        if lot.custodian != signer.id:
            holder = ledger.identities_by_id.get(lot.custodian) or ledger.store.identity_by_id(
                lot.custodian
            )
            raise RejectedEvent(
                NOT_CUSTODIAN,
                f"{signer.name} does not hold {lot.uri} (custodian: "
                f"{holder.name if holder else lot.custodian}); "
                f"only the custodian may {env.kind}",
            )


def party(ledger: Ledger, did: str) -> Identity:
    found = ledger.identity(did)
    if found is None or found.type != "party":
        raise RejectedEvent(UNKNOWN_PARTY, f"{did} is not an enrolled party")
    return found


def device(ledger: Ledger, did: str) -> Identity:
    found = ledger.identity(did)
    if found is None or found.type != "device":
        raise RejectedEvent(UNKNOWN_DEVICE, f"{did} is not an enrolled device")
    return found


def may_commission(
    ledger: Ledger,
    signer: Identity,
    gtin14: str,
    uri: str,
    index: int,
    verb: str = "commission",
) -> None:
    """A party commissions lots (and states its products' stability, *verb*) only
    under the GS1 company prefixes it was enrolled or granted with (from
    `access_rules_from` on)."""
    if index < ledger.access_from:
        return
    prefixes = ledger.prefixes_of(signer.id)
    if under_prefix(gtin14, prefixes):
        return
    digits = company_prefix_digits(gtin14)
    guess = digits[:7]  # the GTIN does not say how long its company prefix is
    held = ", ".join(sorted(prefixes)) or "none"
    raise RejectedEvent(
        UNAUTHORISED,
        f"{signer.name} may not {verb} {uri}: GTIN {gtin14} is not under a GS1 company "
        f"prefix granted to {signer.name} (granted: {held}). If the brand is yours, ask the "
        f"registrar to grant prefix {guess} (or the one GS1 issued you: the first 6 to 12 "
        f"of the digits {digits}): provenance party grant "
        f'"{signer.name}" --prefix {guess}',
    )


def may_sign_about(
    ledger: Ledger, env: Envelope, signer: Identity | None, lots: Sequence[Lot]
) -> None:
    """Inspections and EPCIS records about a lot come from the parties that
    hold or held it, accredited inspectors and regulators; having signed
    something about a lot grants nothing (docs/protocol.md §3)."""
    assert signer is not None
    if signer.role in OVERSIGHT_ROLES:
        return
    for lot in lots:
        if lot.custodian != signer.id and not ledger.store.held_by(lot.id, signer.id):
            raise RejectedEvent(
                NOT_CUSTODIAN,
                f"{signer.name} ({signer.role}) never held {lot.uri}: only its custodians "
                f"past and present, inspectors and regulators may sign {env.kind} events "
                "about it (an accredited lab or inspector is enrolled with role inspector)",
            )


# --- recalls and holds in force (docs/lineage.md, docs/rules.md)


def not_recalled(
    ledger: Ledger, lots: Sequence[Lot], index: int, txn: Transaction, verb: str, hint: str = ""
) -> None:
    """Refuse to act on a recalled lot, naming the recall (regulator, reason,
    event, source lot). Applies from the log index the recall rules came in."""
    if index < ledger.rules_from:
        return
    for lot in lots:
        if lot.recalled:
            raise RejectedEvent(RECALLED, _recall_message(ledger, lot, txn, verb) + hint)


def only_recalled(lots: Sequence[Lot]) -> None:
    """A recall return ships recalled lots only."""
    for lot in lots:
        if not lot.recalled:
            raise RejectedEvent(
                CONFLICT,
                f"{lot.uri} is not recalled: a shipment with purpose "
                f"{RECALL_RETURN!r} carries recalled lots only; ship it without "
                "a purpose",
            )


def _recall_message(ledger: Ledger, lot: Lot, txn: Transaction, verb: str) -> str:
    active = ledger.store.active_recalls(lot.id)
    if not active:  # pragma: no cover - the recalls table always backs the flag
        return f"{lot.uri} is recalled; it cannot be {verb} until the recall is lifted"
    source, event_index = active[0]
    envelope, who = _decision(ledger, event_index, txn.recalls)
    through = "" if source == lot.id else f" through {ledger.store.subject(source)}"
    more = f" (and {len(active) - 1} more active recalls)" if len(active) > 1 else ""
    data = envelope.data
    return (
        f"{lot.uri} is recalled{through}: class {data.get('class')} recall by {who}, "
        f"event {envelope.event_id}, reason: {data.get('reason')}{more}; it cannot be "
        f"{verb} until the recall is lifted"
    )


def _decision(
    ledger: Ledger, event_index: int, pending: dict[int, Envelope]
) -> tuple[Envelope, str]:
    """The recall or hold event at *event_index* (from this batch or the
    store) and the name of who signed it."""
    envelope = pending.get(event_index)
    if envelope is None:
        stored = ledger.store.event_at(event_index)
        assert stored is not None
        envelope = stored.envelope
    signer = ledger.identity(envelope.signer)
    return envelope, signer.name if signer else envelope.signer


def not_held(ledger: Ledger, lots: Sequence[Lot], txn: Transaction, verb: str) -> None:
    """Refuse to act on a held lot, naming the hold (rule, reason, signer, event)."""
    for lot in lots:
        if lot.held:
            raise RejectedEvent(HELD, _hold_message(ledger, lot, txn, verb))


def _hold_message(ledger: Ledger, lot: Lot, txn: Transaction, verb: str) -> str:
    active = ledger.store.active_holds(lot.id)
    if not active:  # pragma: no cover - the holds table always backs the flag
        return f"{lot.uri} is on hold; it cannot be {verb} until the hold is released"
    event_index, rule = active[0]
    envelope, who = _decision(ledger, event_index, txn.holds)
    more = f" (and {len(active) - 1} more holds)" if len(active) > 1 else ""
    return (
        f"{lot.uri} is on hold by rule {rule} ({who}, {envelope.time}, event "
        f"{envelope.event_id}): {envelope.data.get('reason')}{more}; it cannot be {verb} "
        "until the hold is released by a regulator or the rules key"
    )
