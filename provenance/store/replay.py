"""The derived tables as verification compares them: each table's rows named in
the log's own terms (lot subjects, signer dids, events as "did #seq"), since ids
and log indexes differ between a ledger and its replay into a fresh store
(`provenance.ledger.audit` replays every event but the readings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provenance.core.kinds import KIND_CODES
from provenance.store.rows import parse_ids

if TYPE_CHECKING:
    from provenance.store.db import Store


def _lot_state(store: Store) -> list[tuple[Any, ...]]:
    return store.conn.execute(
        "SELECT c.subject, l.product, l.category, l.expiry, l.profile, cu.did, co.did, l.recalled, "
        "l.quantity, l.unit, l.used, l.used_other, l.location, l.held "
        "FROM lots l JOIN chains c ON c.id = l.id LEFT JOIN identities cu ON cu.id = l.custodian "
        "LEFT JOIN identities co ON co.id = l.commissioned_by"
    ).fetchall()


# Events are named by (signer, seq) below: log indexes differ in the replica,
# which replays everything but the readings.
_EVENT_NAME = "(SELECT i.did || ' #' || e.seq FROM events e JOIN identities i ON i.id = e.signer "


def _lineage_state(store: Store) -> list[tuple[Any, ...]]:
    return store.conn.execute(
        "SELECT p.subject, c.subject, "
        + _EVENT_NAME
        + "WHERE e.idx = l.event), l.in_value, l.in_unit, l.out_value, l.out_unit "
        "FROM lineage l LEFT JOIN chains p ON p.id = l.parent LEFT JOIN chains c ON c.id = l.child"
    ).fetchall()


def _recall_state(store: Store) -> list[tuple[Any, ...]]:
    return store.conn.execute(
        "SELECT l.subject, s.subject, "
        + _EVENT_NAME
        + "WHERE e.idx = r.event), "
        + _EVENT_NAME
        + "WHERE e.idx = r.lift_event) "
        "FROM recalls r LEFT JOIN chains l ON l.id = r.lot LEFT JOIN chains s ON s.id = r.source"
    ).fetchall()


def _hold_state(store: Store) -> list[tuple[Any, ...]]:
    return store.conn.execute(
        "SELECT l.subject, h.rule, "
        + _EVENT_NAME
        + "WHERE e.idx = h.event), "
        + _EVENT_NAME
        + "WHERE e.idx = h.release_event) "
        "FROM holds h LEFT JOIN chains l ON l.id = h.lot"
    ).fetchall()


def _flag_state(store: Store) -> list[tuple[Any, ...]]:
    return store.conn.execute(
        "SELECT l.subject, f.rule, f.key, f.signal, "
        + _EVENT_NAME
        + "WHERE e.idx = f.event) FROM flags f LEFT JOIN chains l ON l.id = f.lot"
    ).fetchall()


def _custody_state(store: Store) -> list[tuple[Any, ...]]:
    """Every party that held each lot: it decides who may sign inspections and
    who sees the lot in the portal."""
    return store.conn.execute(
        "SELECT c.subject, i.did FROM custodians k LEFT JOIN chains c ON c.id = k.lot "
        "LEFT JOIN identities i ON i.id = k.party"
    ).fetchall()


def _prefix_state(store: Store) -> list[tuple[Any, ...]]:
    """The GS1 company prefixes of each party, and the event that gave each."""
    return store.conn.execute(
        "SELECT i.did, p.prefix, "
        + _EVENT_NAME
        + "WHERE e.idx = p.event) FROM prefixes p LEFT JOIN identities i ON i.id = p.party"
    ).fetchall()


def _filing_state(store: Store) -> list[tuple[Any, ...]]:
    """Where recalls, lifts, EPCIS imports and prefix grants were filed: the
    ledger decides that from its state (the cascade, the signer's stream, the
    grantee's prefix chain), not the envelope's batches."""
    codes = ",".join(str(KIND_CODES[k]) for k in ("recall", "recall-lift", "epcis", "grant"))
    rows = store.conn.execute(
        f"SELECT i.did, e.seq, e.idx FROM events e JOIN identities i ON i.id = e.signer "
        f"WHERE e.kind IN ({codes})"
    ).fetchall()
    filed: dict[int, list[str]] = {}
    if rows:
        for chain_id, event_index in store.conn.execute(
            f"SELECT l.chain, l.event FROM links l JOIN events e ON e.idx = l.event "
            f"WHERE e.kind IN ({codes})"
        ):
            filed.setdefault(event_index, []).append(store.subject(chain_id))
    return [(did, seq, tuple(sorted(filed.get(index, ())))) for did, seq, index in rows]


def _recall_ack_state(store: Store) -> list[tuple[Any, ...]]:
    """Each recall acknowledgement: the lot, the recall it answers, who and how much."""
    return store.conn.execute(
        "SELECT l.subject, "
        + _EVENT_NAME
        + "WHERE e.idx = a.event), "
        + _EVENT_NAME
        + "WHERE e.idx = a.recall), i.did, a.returned_value, a.returned_unit, "
        "a.destroyed_value, a.destroyed_unit FROM recall_acks a "
        "LEFT JOIN chains l ON l.id = a.lot LEFT JOIN identities i ON i.id = a.party"
    ).fetchall()


def _attachment_state(store: Store) -> list[tuple[Any, ...]]:
    return store.conn.execute(
        "SELECT d.did, c.subject, a.from_us, a.until_us FROM attachments a "
        "LEFT JOIN identities d ON d.id = a.device LEFT JOIN chains c ON c.id = a.lot"
    ).fetchall()


def _shipment_state(store: Store) -> list[tuple[Any, ...]]:
    rows = store.conn.execute(
        "SELECT s.lots, f.did, t.did, s.receive_event IS NOT NULL FROM shipments s "
        "LEFT JOIN identities f ON f.id = s.sender LEFT JOIN identities t ON t.id = s.receiver"
    ).fetchall()
    return [
        (tuple(sorted(store.subject(i) for i in parse_ids(lots))), sender, receiver, received)
        for lots, sender, receiver, received in rows
    ]


def _rotation_state(store: Store) -> list[tuple[Any, ...]]:
    """Which key each rotated identity moved to, and who owns each device now
    (a party's rotation moves its devices), by did."""
    return store.conn.execute(
        "SELECT o.did, n.did, w.did FROM identities o "
        "LEFT JOIN identities n ON n.id = o.rotated_to LEFT JOIN identities w ON w.id = o.owner"
    ).fetchall()


def _holding_state(store: Store) -> list[tuple[Any, ...]]:
    """How much of each lot each party holds, dispensed and used."""
    return store.conn.execute(
        "SELECT c.subject, i.did, h.held, h.dispensed, h.used FROM holdings h "
        "LEFT JOIN chains c ON c.id = h.lot LEFT JOIN identities i ON i.id = h.party"
    ).fetchall()


def _shipment_lot_state(store: Store) -> list[tuple[Any, ...]]:
    """What each shipment carried of each lot, and what was received and damaged."""
    return store.conn.execute(
        "SELECT "
        + _EVENT_NAME
        + "WHERE e.idx = q.shipment), c.subject, q.shipped, q.received, q.damaged "
        "FROM shipment_lots q LEFT JOIN chains c ON c.id = q.lot"
    ).fetchall()


def _place_state(store: Store) -> list[tuple[Any, ...]]:
    """The places registry and the parties' PGLNs and addresses (docs/protocol.md §15)."""
    places = store.conn.execute(
        "SELECT p.gln, i.did, p.name, p.address, p.lat, p.lon, p.type, "
        + _EVENT_NAME
        + "WHERE e.idx = p.event) FROM places p LEFT JOIN identities i ON i.id = p.party"
    ).fetchall()
    parties = store.conn.execute(
        "SELECT did, pgln, address FROM identities WHERE pgln IS NOT NULL OR address IS NOT NULL"
    ).fetchall()
    return [("place", *row) for row in places] + [("party", *row) for row in parties]


def _pallet_state(store: Store) -> list[tuple[Any, ...]]:
    """Every case and pallet (docs/protocol.md, "Pallets and cases"): where it
    sits, who has it, whether it is unpacked or in transit, and what is on it."""
    units = store.conn.execute(
        "SELECT p.sscc, p.parent, h.did, k.did, p.unpack_event IS NOT NULL, "
        "p.shipment IS NOT NULL, p.prefix_length FROM pallets p "
        "LEFT JOIN identities h ON h.id = p.holder LEFT JOIN identities k ON k.id = p.packed_by"
    ).fetchall()
    contents = store.conn.execute(
        "SELECT c.sscc, l.subject, c.value, c.unit FROM pallet_contents c "
        "LEFT JOIN chains l ON l.id = c.lot"
    ).fetchall()
    return [*units, *contents]


def _serial_state(store: Store) -> list[tuple[Any, ...]]:
    return store.conn.execute(
        "SELECT c.subject, s.serial, " + _EVENT_NAME + "WHERE e.idx = s.event) "
        "FROM serials s LEFT JOIN chains c ON c.id = s.lot"
    ).fetchall()


STATE_TABLES: dict[str, Callable[[Store], list[tuple[Any, ...]]]] = {
    "lots": _lot_state,
    "attachments": _attachment_state,
    "shipments": _shipment_state,
    "lineage": _lineage_state,
    "recalls": _recall_state,
    "holds": _hold_state,
    "flags": _flag_state,
    "custodians": _custody_state,
    "prefixes": _prefix_state,
    "links (recall, lift and EPCIS filing)": _filing_state,
    "identities (rotations, owners)": _rotation_state,
    "holdings": _holding_state,
    "shipment_lots": _shipment_lot_state,
    "places (and parties' PGLNs)": _place_state,
    "pallets": _pallet_state,
    "recall_acks": _recall_ack_state,
    "serials": _serial_state,
}
