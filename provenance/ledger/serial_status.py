"""What a scan of one pack (`/01/{gtin}/10/{lot}/21/{serial}`) learns about its serial:
issued for the lot by its maker (who, when, in which event), or never issued — a
counterfeit signal (docs/protocol.md §19, docs/scan.md). A lot with no serials issued at
all says nothing either way (its maker does not serialise in this ledger), so the page
stays silent rather than cry wolf. Reads the store; no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provenance.store.db import Store
from provenance.store.rows import Lot

__all__ = ["SerialStatus", "serial_status"]


@dataclass(frozen=True)
class SerialStatus:
    """One serial of one lot. ``issued`` False: the lot has serials, but not this one."""

    serial: str
    issued: bool
    issued_count: int  # serials issued for the lot in all
    issuer: str | None = None  # the maker's name
    issuer_did: str | None = None
    time: str | None = None  # the issuing event's time
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"serial": self.serial, "issued": self.issued}
        if self.issued:
            body["issued_by"] = {"name": self.issuer, "did": self.issuer_did}
            body["time"], body["event_id"] = self.time, self.event_id
        else:
            body["warning"] = "never-issued"  # a possible counterfeit
        return body


def serial_status(store: Store, lot: Lot, serial: str) -> SerialStatus | None:
    """The serial's status for *lot*, or None when the lot has no serials issued."""
    index = store.serial_issue(lot.id, serial)
    if index is None:
        count = store.serial_count(lot.id)
        return None if count == 0 else SerialStatus(serial, False, count)
    stored = store.event_at(index)
    if stored is None:  # pragma: no cover - the table names logged events only
        return None
    envelope = stored.envelope
    signer = store.identity_by_did(envelope.signer)
    return SerialStatus(
        serial,
        True,
        store.serial_count(lot.id),
        signer.name if signer else None,
        envelope.signer,
        envelope.time,
        envelope.event_id,
    )
