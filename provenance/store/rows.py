"""The store's row models — what its reads hand back (identities, lots, lot
states, lineage edges, stored events) — and the encodings of its columns: chain
id lists as "[3,7]" and the event key (the first 8 bytes of an event id).

Plain values: no SQL here, nothing that decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provenance.core.envelope import Envelope


@dataclass
class Identity:
    id: int
    did: str
    type: str  # party | device | registrar
    name: str
    role: str | None
    owner: int | None
    enrol_event: int
    revoked_from: str | None = None
    revoked_from_us: int | None = None


@dataclass
class Lot:
    id: int
    uri: str
    gtin: str
    lot: str
    product: str
    category: str | None
    expiry: str | None
    profile: str | None
    custodian: int
    commissioned_by: int
    origin_event: int
    recalled: bool
    held: bool = False  # under an active hold (docs/rules.md)


@dataclass(frozen=True)
class LineageEdge:
    """One row of the lineage table: *parent* went into the transform at log
    index *event*, which made *child*."""

    parent: int
    child: int
    event: int
    in_value: float | None
    in_unit: str | None
    out_value: float | None
    out_unit: str | None


@dataclass(frozen=True)
class LotState:
    """A lot as a trace shows it (`Store.lot_states`)."""

    id: int
    uri: str
    gtin: str
    lot: str
    product: str
    category: str | None
    expiry: str | None
    custodian_did: str | None
    custodian_name: str | None
    custodian_role: str | None
    quantity: float | None  # registered by the commission or the transform that made it
    unit: str | None
    used: float  # used by transforms and dispensed since, in `unit`
    used_other: bool  # some use was stated in another unit
    location: dict[str, Any] | None  # the last location an event gave
    recalled: bool
    origin_event: int


@dataclass
class StoredEvent:
    index: int
    envelope: Envelope
    leaf: bytes
    lots: tuple[int, ...]  # chains the event is filed under


def parse_ids(text: str) -> list[int]:
    """Chain ids stored as "[3,7]" (faster than json.loads for this one shape)."""
    inner = text[1:-1]
    return [int(part) for part in inner.split(",")] if inner else []


def event_key(event_id: bytes) -> int:
    """The events table's lookup key: the first 8 bytes of the event id, signed."""
    return int.from_bytes(event_id[:8], "big", signed=True)
