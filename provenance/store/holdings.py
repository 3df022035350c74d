"""Holdings: how much of each lot each party holds, and what each shipment
carried (docs/protocol.md, "Quantities"). Written by the ledger's custody
and lot kinds once their checks pass, and by the 0011 backfill, which replays
the log through the same writers, so an old ledger ends up as a new one would.

Quantities are in the lot's unit: the unit of its registered quantity (its
commission's, or the transform output's that made it). A lot registered
without a quantity is counted in wholes: its holder holds `WHOLE` (1) and it
moves whole. A party's `held` includes what it has shipped and is not
received yet (it is still its custodian while in transit, as before
quantities); what is free to ship, dispense or use is `held` minus that.

The writers never refuse (the ledger's rules did, before): what they are given
beyond what is held is clamped at zero, which only happens replaying events
from before the quantity rules (meta `quantity_rules_from`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from provenance.core.kinds import KIND_CODES, KIND_NAMES
from provenance.store.rows import parse_ids

WHOLE = 1.0  # a lot registered without a quantity: held whole or not at all
EPSILON = 1e-9  # relative slack when comparing quantities (decimal values in binary floats)


class Measure(NamedTuple):
    """A lot's registered quantity and unit (None, None: counted in wholes)."""

    quantity: float | None
    unit: str | None

    @property
    def measured(self) -> bool:
        return self.quantity is not None and self.unit is not None


def measure(conn: sqlite3.Connection, lot_id: int) -> Measure:
    row = conn.execute("SELECT quantity, unit FROM lots WHERE id = ?", (lot_id,)).fetchone()
    return Measure(None, None) if row is None else Measure(row[0], row[1])


def at_most(value: float, limit: float) -> bool:
    """*value* ≤ *limit*, with slack for float rounding (0.1 + 0.2 of 0.3)."""
    return value <= limit + EPSILON * max(1.0, abs(limit))


def held(conn: sqlite3.Connection, lot_id: int, party: int) -> float:
    row = conn.execute(
        "SELECT held FROM holdings WHERE lot = ? AND party = ?", (lot_id, party)
    ).fetchone()
    return 0.0 if row is None else float(row[0])


def in_transit_from(conn: sqlite3.Connection, lot_id: int, party: int) -> float:
    """How much of the lot *party* has shipped that is not received yet."""
    row = conn.execute(
        "SELECT sum(q.shipped) FROM shipment_lots q JOIN shipments s ON s.event = q.shipment "
        "WHERE q.lot = ? AND s.sender = ? AND s.receive_event IS NULL",
        (lot_id, party),
    ).fetchone()
    return float(row[0] or 0)


def available(conn: sqlite3.Connection, lot_id: int, party: int) -> tuple[float, float]:
    """(held, in transit from it): what *party* may still ship, dispense or
    use is the difference."""
    return held(conn, lot_id, party), in_transit_from(conn, lot_id, party)


def _add(conn: sqlite3.Connection, lot_id: int, party: int, column: str, amount: float) -> None:
    assert column in ("held", "dispensed", "used")
    conn.execute(
        "INSERT OR IGNORE INTO holdings (lot, party, held) VALUES (?, ?, 0)", (lot_id, party)
    )
    conn.execute(
        f"UPDATE holdings SET {column} = {column} + ? WHERE lot = ? AND party = ?",
        (amount, lot_id, party),
    )


def _take(conn: sqlite3.Connection, lot_id: int, party: int, amount: float) -> float:
    """Take up to *amount* from what *party* holds; how much was taken."""
    taken = min(amount, held(conn, lot_id, party))
    if taken > 0:
        _add(conn, lot_id, party, "held", -taken)
    return max(taken, 0.0)


# --- the writers (ledger kinds and backfill)


def record_made(conn: sqlite3.Connection, lot_id: int, party: int) -> None:
    """A lot commissioned, or made by a transform: its maker holds all of it
    (an output that was just commissioned is replaced by what the transform made)."""
    quantity = measure(conn, lot_id)
    amount = quantity.quantity if quantity.measured else WHOLE
    conn.execute(
        "INSERT OR IGNORE INTO holdings (lot, party, held) VALUES (?, ?, 0)", (lot_id, party)
    )
    conn.execute(
        "UPDATE holdings SET held = ? WHERE lot = ? AND party = ?", (amount, lot_id, party)
    )


def asked_of(data: dict[str, Any], field: str, uri: str) -> dict[str, Any] | None:
    """The `{value, unit}` *data*[*field*] gives for lot *uri*, if any."""
    for item in data.get(field, ()):
        if item["batch"] == uri:
            return item["quantity"]  # type: ignore[no-any-return]
    return None


def shipped_amount(
    conn: sqlite3.Connection, lot_id: int, uri: str, sender: int, data: dict[str, Any]
) -> float:
    """What a ship moves of the lot: the quantity it names, else everything the
    sender holds that is not in transit (never below zero)."""
    asked = asked_of(data, "quantities", uri)
    if asked is not None and measure(conn, lot_id).measured:
        return float(asked["value"])
    have, moving = available(conn, lot_id, sender)
    return max(have - moving, 0.0)


def record_ship(
    conn: sqlite3.Connection,
    ship_index: int,
    sender: int,
    lots: Sequence[tuple[int, str]],
    data: dict[str, Any],
) -> None:
    """A shipment (its `shipments` row already written) carries, per lot
    (id, uri), what `shipped_amount` says."""
    rows = [
        (ship_index, lot_id, shipped_amount(conn, lot_id, uri, sender, data))
        for lot_id, uri in lots
    ]
    conn.executemany("INSERT INTO shipment_lots (shipment, lot, shipped) VALUES (?, ?, ?)", rows)


def received_amounts(
    conn: sqlite3.Connection, lot_id: int, uri: str, shipped: float, data: dict[str, Any]
) -> tuple[float, float]:
    """(received, damaged) of a lot a receive names: as it says, else all that
    was shipped less what it says was damaged."""
    if not measure(conn, lot_id).measured:
        return shipped, 0.0
    damaged_q = asked_of(data, "damaged", uri)
    damaged = float(damaged_q["value"]) if damaged_q is not None else 0.0
    received_q = asked_of(data, "quantities", uri)
    received = float(received_q["value"]) if received_q is not None else shipped - damaged
    return max(received, 0.0), max(damaged, 0.0)


def record_receive(
    conn: sqlite3.Connection,
    ship_index: int,
    receiver: int,
    lots: Sequence[tuple[int, str]],
    data: dict[str, Any],
) -> None:
    """A receive of the shipment at *ship_index*: the sender no longer holds
    what it shipped; the receiver holds what it received (not the damaged,
    not the shortfall: shipped − received − damaged, kept in `shipment_lots`)."""
    sender = conn.execute("SELECT sender FROM shipments WHERE event = ?", (ship_index,)).fetchone()[
        0
    ]
    for lot_id, uri in lots:
        row = conn.execute(
            "SELECT shipped FROM shipment_lots WHERE shipment = ? AND lot = ?",
            (ship_index, lot_id),
        ).fetchone()
        shipped = float(row[0]) if row else 0.0
        received, damaged = received_amounts(conn, lot_id, uri, shipped, data)
        conn.execute(
            "UPDATE shipment_lots SET received = ?, damaged = ? WHERE shipment = ? AND lot = ?",
            (received, damaged, ship_index, lot_id),
        )
        _take(conn, lot_id, sender, shipped)
        _add(conn, lot_id, receiver, "held", received)


def record_use(
    conn: sqlite3.Connection,
    lot_id: int,
    party: int,
    quantity: dict[str, Any],
    column: str,
) -> None:
    """*party* dispensed (*column* "dispensed") or used in a transform ("used")
    *quantity* of the lot: taken from what it holds. A lot counted in wholes,
    or a quantity in another unit (only before the quantity rules), takes
    nothing."""
    lot_measure = measure(conn, lot_id)
    if not lot_measure.measured or quantity["unit"] != lot_measure.unit:
        return
    taken = _take(conn, lot_id, party, float(quantity["value"]))
    _add(conn, lot_id, party, column, taken)


# --- reads


class Holding(NamedTuple):
    """One party's share of a lot (in the lot's unit; wholes if unmeasured)."""

    party: int
    held: float  # including what it shipped that is not received yet
    in_transit: float  # shipped by it, not received yet
    dispensed: float
    used: float  # by its transforms


class ShipmentPart(NamedTuple):
    """One lot's part of one shipment."""

    shipment: int  # log index of the ship
    sender: int
    receiver: int
    shipped: float
    received: float | None  # None: still in transit
    damaged: float | None
    receive_event: int | None

    @property
    def shortfall(self) -> float:
        if self.received is None:
            return 0.0
        return max(self.shipped - self.received - (self.damaged or 0.0), 0.0)


def holdings_of(conn: sqlite3.Connection, lot_id: int) -> list[Holding]:
    """Every party that holds, held, dispensed or used some of the lot."""
    rows = conn.execute(
        "SELECT party, held, dispensed, used FROM holdings WHERE lot = ? ORDER BY party",
        (lot_id,),
    ).fetchall()
    moving = dict(
        conn.execute(
            "SELECT s.sender, sum(q.shipped) FROM shipment_lots q "
            "JOIN shipments s ON s.event = q.shipment "
            "WHERE q.lot = ? AND s.receive_event IS NULL GROUP BY s.sender",
            (lot_id,),
        ).fetchall()
    )
    return [
        Holding(party, float(h), float(moving.get(party) or 0), float(d), float(u))
        for party, h, d, u in rows
    ]


def movements_of(conn: sqlite3.Connection, lot_id: int) -> list[ShipmentPart]:
    """The lot's part of every shipment that carried it, in log order."""
    return [
        ShipmentPart(*row)
        for row in conn.execute(
            "SELECT q.shipment, s.sender, s.receiver, q.shipped, q.received, q.damaged, "
            "s.receive_event FROM shipment_lots q JOIN shipments s ON s.event = q.shipment "
            "WHERE q.lot = ? ORDER BY q.shipment",
            (lot_id,),
        ).fetchall()
    ]


def last_receive_by(conn: sqlite3.Connection, lot_id: int, party: int) -> int | None:
    """Log index of *party*'s newest receive of a shipment that carried the lot."""
    row = conn.execute(
        "SELECT max(s.receive_event) FROM shipment_lots q JOIN shipments s "
        "ON s.event = q.shipment WHERE q.lot = ? AND s.receiver = ?",
        (lot_id, party),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def holds_any(conn: sqlite3.Connection, lot_id: int, party: int) -> bool:
    return held(conn, lot_id, party) > 0


def carry_over_holdings(conn: sqlite3.Connection, old: int, new: int) -> None:
    """A key rotation: what identity *old* holds is the new key's (what it
    dispensed and used stays on the old key's row, as its events do)."""
    for lot_id, amount in conn.execute(
        "SELECT lot, held FROM holdings WHERE party = ? AND held > 0 ORDER BY lot", (old,)
    ).fetchall():
        _add(conn, lot_id, new, "held", float(amount))
        conn.execute("UPDATE holdings SET held = 0 WHERE lot = ? AND party = ?", (lot_id, old))


# --- the backfill of migration 0011


def backfill_holdings(conn: sqlite3.Connection) -> None:
    """Replay the log's commissions, transforms, shipments, receipts and
    dispenses, in log order, through the writers above."""
    kinds = ("commission", "transform", "ship", "receive", "dispense", "rotate")
    codes = ",".join(str(KIND_CODES[kind]) for kind in kinds)
    rows = conn.execute(
        f"SELECT idx, kind, signer, batches, data FROM events WHERE kind IN ({codes}) ORDER BY idx"
    ).fetchall()
    chain_ids: dict[str, int] = {}

    def chain(uri: str) -> int:
        if uri not in chain_ids:
            chain_ids[uri] = conn.execute(
                "SELECT id FROM chains WHERE subject = ?", (uri,)
            ).fetchone()[0]
        return chain_ids[uri]

    subjects: dict[int, str] = {}
    for idx, code, signer, named, data_text in rows:
        if KIND_NAMES[code] == "rotate":
            _replay_rotation(conn, json.loads(data_text))
            continue
        ids = parse_ids(named) if named else []
        for lot_id in ids:
            if lot_id not in subjects:
                subjects[lot_id] = conn.execute(
                    "SELECT subject FROM chains WHERE id = ?", (lot_id,)
                ).fetchone()[0]
        uris = [subjects[lot_id] for lot_id in ids]
        apply_event(conn, KIND_NAMES[code], idx, signer, json.loads(data_text), chain, uris)


def apply_event(
    conn: sqlite3.Connection,
    kind: str,
    index: int,
    signer: int,
    data: dict[str, Any],
    chain: Callable[[str], int],
    uris: Sequence[str],
) -> None:
    """What one accepted event of *kind* does to the holdings (the ledger's
    kinds and the backfill both come through here). *chain* maps a lot URI
    to its id; *uris* are the envelope's batches."""
    if kind == "commission":
        record_made(conn, chain(uris[0]), signer)
    elif kind == "transform":
        for item in data["inputs"]:
            record_use(conn, chain(item["batch"]), signer, item["quantity"], "used")
        for item in data["outputs"]:
            record_made(conn, chain(item["batch"]), signer)
    elif kind == "ship":
        record_ship(conn, index, signer, [(chain(uri), uri) for uri in uris], data)
    elif kind == "receive":
        ship_index = _shipment_index(conn, index, data)
        if ship_index is not None:
            record_receive(conn, ship_index, signer, [(chain(uri), uri) for uri in uris], data)
    elif kind == "dispense":
        for uri in uris:
            record_use(conn, chain(uri), signer, data["quantity"], "dispensed")


def _replay_rotation(conn: sqlite3.Connection, data: dict[str, Any]) -> None:
    ids = [
        conn.execute("SELECT id FROM identities WHERE did = ?", (did,)).fetchone()
        for did in (data["subject"], data["key"])
    ]
    if ids[0] is not None and ids[1] is not None:
        carry_over_holdings(conn, ids[0][0], ids[1][0])


def _shipment_index(conn: sqlite3.Connection, index: int, _data: dict[str, Any]) -> int | None:
    row = conn.execute("SELECT event FROM shipments WHERE receive_event = ?", (index,)).fetchone()
    return None if row is None else int(row[0])


class HoldingsState:
    """The holdings as `Store` methods (a mixin of `DerivedState`): what the
    ledger's quantity rules and the readers ask, so no SQL leaves the store."""

    conn: sqlite3.Connection

    def lot_measure(self, lot_id: int) -> Measure:
        return measure(self.conn, lot_id)

    def holding(self, lot_id: int, party: int) -> tuple[float, float]:
        """(held, in transit from it) of *party*'s share of the lot."""
        return available(self.conn, lot_id, party)

    def received_of(self, lot_id: int, party: int) -> float | None:
        """How much of the lot *party* took in by its receives in all; None
        when it received none of it (the maker, or not a holder)."""
        row = self.conn.execute(
            "SELECT SUM(q.received) FROM shipment_lots q JOIN shipments s ON s.event = "
            "q.shipment WHERE q.lot = ? AND s.receiver = ? AND q.received IS NOT NULL",
            (lot_id, party),
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def holds_any(self, lot_id: int, party: int) -> bool:
        return holds_any(self.conn, lot_id, party)

    def last_receive_by(self, lot_id: int, party: int) -> int | None:
        return last_receive_by(self.conn, lot_id, party)

    def shipped_of(self, ship_index: int, lot_id: int) -> float:
        """How much of the lot the shipment at *ship_index* carried."""
        row = self.conn.execute(
            "SELECT shipped FROM shipment_lots WHERE shipment = ? AND lot = ?",
            (ship_index, lot_id),
        ).fetchone()
        return float(row[0]) if row else 0.0

    def holdings_of(self, lot_id: int) -> list[Holding]:
        return holdings_of(self.conn, lot_id)

    def movements_of(self, lot_id: int) -> list[ShipmentPart]:
        return movements_of(self.conn, lot_id)

    def record_holdings(
        self,
        kind: str,
        index: int,
        signer: int,
        data: dict[str, Any],
        chain: Callable[[str], int],
        uris: Sequence[str],
    ) -> None:
        """What an accepted event does to the holdings (`apply_event`)."""
        apply_event(self.conn, kind, index, signer, data, chain, uris)
