"""The logistic units' tables (`pallets`, `pallet_contents`, migration
0012_pallets): what the ledger's `pack`, `unpack`, `ship` and `receive` write
about cases and pallets, and what the pallet page, the trace and the recall
report read. Each function takes the store; the rules are the ledger's
(provenance/ledger/kinds/pallets.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class HasConnection(Protocol):
    """The store (provenance/store/db.py) or anything with its connection."""

    conn: sqlite3.Connection


@dataclass(frozen=True)
class Packed:
    """One lot on a unit and the quantity packed."""

    lot: int
    value: float
    unit: str


@dataclass
class Unit:
    """One case or pallet as the ledger knows it now."""

    sscc: str
    parent: str | None
    holder: int
    packed_by: int
    pack_event: int
    unpack_event: int | None
    shipment: int | None
    prefix_length: int | None
    contents: list[Packed] = field(default_factory=list)  # its own lots, not its cases'
    cases: list[str] = field(default_factory=list)  # SSCCs of the cases on it, open ones

    @property
    def open(self) -> bool:
        return self.unpack_event is None


_COLUMNS = "sscc, parent, holder, packed_by, pack_event, unpack_event, shipment, prefix_length"


def unit(store: HasConnection, sscc: str) -> Unit | None:
    """The unit *sscc*, with its own lots and its open cases; None if never packed."""
    row = store.conn.execute(f"SELECT {_COLUMNS} FROM pallets WHERE sscc = ?", (sscc,)).fetchone()
    if row is None:
        return None
    found = Unit(*row)
    found.contents = [
        Packed(*item)
        for item in store.conn.execute(
            "SELECT lot, value, unit FROM pallet_contents WHERE sscc = ? ORDER BY lot", (sscc,)
        )
    ]
    found.cases = [
        item[0]
        for item in store.conn.execute(
            "SELECT sscc FROM pallets WHERE parent = ? AND unpack_event IS NULL ORDER BY sscc",
            (sscc,),
        )
    ]
    return found


def all_contents(store: HasConnection, sscc: str) -> list[tuple[str, Packed]]:
    """(unit, packed lot) for every lot on *sscc*, all levels: its own, then its
    open cases'. A case on a pallet holds no case (MAX_DEPTH), so two levels."""
    found = unit(store, sscc)
    if found is None:
        return []
    rows = [(sscc, packed) for packed in found.contents]
    for case in found.cases:
        inner = unit(store, case)
        if inner is not None:
            rows.extend((case, packed) for packed in inner.contents)
    return rows


def open_unit_of(store: HasConnection, lot_id: int) -> str | None:
    """The SSCC of the open unit the lot is packed on (its innermost one), if any."""
    row = store.conn.execute(
        "SELECT c.sscc FROM pallet_contents c JOIN pallets p ON p.sscc = c.sscc "
        "WHERE c.lot = ? AND p.unpack_event IS NULL ORDER BY c.sscc LIMIT 1",
        (lot_id,),
    ).fetchone()
    return row[0] if row else None


def outermost(store: HasConnection, sscc: str) -> str:
    """The pallet a case is on, or the unit itself when it sits on nothing."""
    row = store.conn.execute("SELECT parent FROM pallets WHERE sscc = ?", (sscc,)).fetchone()
    return row[0] if row and row[0] else sscc


def insert_unit(
    store: HasConnection,
    sscc: str,
    *,
    parent: str | None,
    holder: int,
    event_index: int,
    prefix_length: int | None,
    contents: Sequence[Packed],
) -> None:
    store.conn.execute(
        "INSERT INTO pallets (sscc, parent, holder, packed_by, pack_event, prefix_length) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (sscc, parent, holder, holder, event_index, prefix_length),
    )
    store.conn.executemany(
        "INSERT INTO pallet_contents (sscc, lot, value, unit) VALUES (?, ?, ?, ?)",
        [(sscc, item.lot, item.value, item.unit) for item in contents],
    )


def unpack_unit(store: HasConnection, sscc: str, event_index: int) -> None:
    """*sscc* is unpacked; the cases on it stay packed and now sit on nothing."""
    store.conn.execute("UPDATE pallets SET unpack_event = ? WHERE sscc = ?", (event_index, sscc))
    store.conn.execute(
        "UPDATE pallets SET parent = NULL WHERE parent = ? AND unpack_event IS NULL", (sscc,)
    )


def ship_units(store: HasConnection, ssccs: Sequence[str], ship_index: int) -> None:
    """The pallets *ssccs* and the cases on them leave on the shipment at *ship_index*."""
    for sscc in ssccs:
        store.conn.execute(
            "UPDATE pallets SET shipment = ? WHERE (sscc = ? OR parent = ?) "
            "AND unpack_event IS NULL",
            (ship_index, sscc, sscc),
        )


def shipped_units(store: HasConnection, ship_index: int) -> list[str]:
    """The pallets (not their cases) the shipment at *ship_index* carries, while open."""
    return [
        row[0]
        for row in store.conn.execute(
            "SELECT sscc FROM pallets WHERE shipment = ? AND parent IS NULL ORDER BY sscc",
            (ship_index,),
        )
    ]


def receive_units(store: HasConnection, ship_index: int, receiver: int) -> None:
    """Everything the shipment at *ship_index* carried now belongs to *receiver*."""
    store.conn.execute(
        "UPDATE pallets SET holder = ?, shipment = NULL WHERE shipment = ?",
        (receiver, ship_index),
    )


def units_of_lot(store: HasConnection, lot_id: int) -> list[tuple[Any, ...]]:
    """(sscc, parent, holder, pack_event, unpack_event, shipment, value, unit) of
    every unit the lot was ever packed on, open ones first, newest first."""
    return store.conn.execute(
        "SELECT p.sscc, p.parent, p.holder, p.pack_event, p.unpack_event, p.shipment, "
        "c.value, c.unit FROM pallet_contents c JOIN pallets p ON p.sscc = c.sscc "
        "WHERE c.lot = ? ORDER BY CASE WHEN p.unpack_event IS NULL THEN 0 ELSE 1 END, "
        "p.pack_event DESC",
        (lot_id,),
    ).fetchall()
