"""The kinds that record what was observed about lots and change no state:
`reading` (a device's sensor values, filed under the lots it rides with),
`inspect` (a custodian's, inspector's or regulator's finding), `epcis` (an
imported EPCIS 2.0 event, carried verbatim) and `cool` (FSMA 204 cooling, by the
lot's custodian).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provenance.core.envelope import Envelope
from provenance.core.errors import RejectedEvent
from provenance.core.kinds import epcis_stream
from provenance.ledger.kinds import checks, timing
from provenance.ledger.kinds.base import Kind, Transaction
from provenance.ledger.reasons import NOT_ATTACHED
from provenance.store.rows import Identity

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


def _reading(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, txn: Transaction
) -> list[int]:
    """Filed under the lots the device is attached to at `time` (or the named
    ones, which it must be attached to then) that existed then: a reading
    dated before a lot's commissioning is not about that lot. Readings are
    checked by their own `time`, whenever they arrive (store-and-forward)."""
    assert signer is not None
    attached = {
        lot_id
        for lot_id, start, until, _ in ledger.attachments_of(signer.id)
        if start <= env.time_us and (until is None or env.time_us < until)
    }
    if env.lots is None:
        if not attached:
            raise RejectedEvent(
                NOT_ATTACHED,
                f"device {signer.name} is attached to no lot at {env.time}: attach it first "
                "or name the lots in batches",
            )
        if index < ledger.time_rules_from:
            return sorted(attached)
        existing = [i for i in attached if timing.born_us_of(ledger, i, txn) <= env.time_us]
        if not existing:
            timing.not_before_birth(
                ledger, env, [timing.lot_by_id(ledger, i) for i in sorted(attached)], txn
            )
        return sorted(existing)
    lots = checks.lots_of(ledger, env)
    if index >= ledger.time_rules_from:
        timing.not_before_birth(ledger, env, lots, txn)
    for lot in lots:
        if lot.id not in attached:
            raise RejectedEvent(
                NOT_ATTACHED, f"device {signer.name} is not attached to {lot.uri} at {env.time}"
            )
    return [lot.id for lot in lots]


def _inspect(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, _txn: Transaction
) -> list[int]:
    lots = checks.lots_of(ledger, env)
    if index >= ledger.access_from:
        checks.may_sign_about(ledger, env, signer, lots)
    return [lot.id for lot in lots]


def _epcis(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, _txn: Transaction
) -> list[int]:
    """An imported EPCIS 2.0 event, carried verbatim. With `batches` it is
    filed under those lots (each must exist, and the signer must be allowed
    to sign about each, as for `inspect`); without, under the signer's
    EPCIS stream chain `{did}#epcis`, made on first use."""
    assert signer is not None
    if env.lots is not None:
        lots = checks.lots_of(ledger, env)
        if index >= ledger.access_from:
            checks.may_sign_about(ledger, env, signer, lots)
        return [lot.id for lot in lots]
    subject = epcis_stream(signer.did)
    chain_id = ledger.streams.get(subject)
    if chain_id is None:
        found = ledger.store.chain_by_subject(subject)
        chain_id = found[0] if found else ledger.new_chain(subject)
        ledger.streams[subject] = chain_id
    return [chain_id]


def _cool(
    ledger: Ledger, env: Envelope, signer: Identity | None, index: int, txn: Transaction
) -> list[int]:
    """FSMA 204 cooling (docs/fsma204.md): the lot's custodian records that it cooled
    the lot, dated within its custody; it changes no state."""
    lots = checks.lots_of(ledger, env)
    checks.custodian_of(ledger, env, signer, lots)
    timing.within_custody(ledger, env, signer, lots, index, txn)
    return [lot.id for lot in lots]


READING = Kind("reading", _reading)
INSPECT = Kind("inspect", _inspect)
EPCIS = Kind("epcis", _epcis)
COOL = Kind("cool", _cool)
