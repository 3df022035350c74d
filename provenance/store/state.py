"""What the store keeps about the world the events describe — identities, lots
and their custody, GS1 prefixes, lineage, recalls, holds and flags, attachments,
shipments — and the rejects and statistics: the reads and writes `Store` offers
on them (it inherits `DerivedState`). What an event does to the derived lot state
is `derive`, through the one table of provenance/store/derived.py (`EFFECTS`)
that the backfills replay too.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from provenance.core.kinds import KIND_CODES, KIND_NAMES
from provenance.store import rotation
from provenance.store.derived import (
    ANCESTORS,
    DESCENDANTS,
    EDGE,
    Data,
    Refs,
    derive,
    descendants,
    recall_reach,
    record_prefixes,
)
from provenance.store.holdings import HoldingsState
from provenance.store.rows import Identity, LineageEdge, Lot, LotState, parse_ids

MAX_REJECT_RAW = 4096  # bytes of a refused input kept with its reject row

# Every lot column a `Lot` holds; `lot_from_row` makes one of such a row.
LOT_SELECT = (
    "SELECT l.id, c.subject, l.gtin, l.lot, l.product, l.category, l.expiry, l.profile, "
    "l.custodian, l.commissioned_by, l.origin_event, l.recalled, l.held FROM lots l "
    "JOIN chains c ON c.id = l.id "
)


def lot_from_row(row: tuple[Any, ...]) -> Lot:
    return Lot(*row[:11], recalled=bool(row[11]), held=bool(row[12]))


class DerivedState(HoldingsState):
    """The derived tables' reads and writes, over the store's connection."""

    conn: sqlite3.Connection

    # --- identities

    _IDENTITY = (
        "SELECT id, did, type, name, role, owner, enrol_event, revoked_from FROM identities "
    )

    @staticmethod
    def _identity(row: tuple[Any, ...] | None) -> Identity | None:
        if row is None:
            return None
        from provenance.core.timefmt import parse_time

        identity = Identity(*row)
        if identity.revoked_from is not None:
            identity.revoked_from_us = parse_time(identity.revoked_from)
        return identity

    def identity_by_did(self, did: str) -> Identity | None:
        return self._identity(
            self.conn.execute(self._IDENTITY + "WHERE did = ?", (did,)).fetchone()
        )

    def identity_by_id(self, identity_id: int) -> Identity | None:
        return self._identity(
            self.conn.execute(self._IDENTITY + "WHERE id = ?", (identity_id,)).fetchone()
        )

    def identity_by_name(self, type_: str, name: str) -> Identity | None:
        return self._identity(
            self.conn.execute(
                self._IDENTITY + "WHERE type = ? AND name = ? AND rotated_to IS NULL",
                (type_, name),
            ).fetchone()
        )

    def identities(self) -> list[Identity]:
        rows = self.conn.execute(self._IDENTITY + "ORDER BY id").fetchall()
        return [identity for row in rows if (identity := self._identity(row))]

    def insert_identity(self, identity: Identity) -> None:
        self.conn.execute(
            "INSERT INTO identities (id, did, type, name, role, owner, enrol_event) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                identity.id,
                identity.did,
                identity.type,
                identity.name,
                identity.role,
                identity.owner,
                identity.enrol_event,
            ),
        )

    def revoke_identity(self, identity_id: int, revoked_from: str, event_index: int) -> None:
        self.conn.execute(
            "UPDATE identities SET revoked_from = ?, revoke_event = ? WHERE id = ?",
            (revoked_from, event_index, identity_id),
        )

    # --- key rotation (provenance/store/rotation.py)

    def rotated_to(self, identity_id: int) -> int | None:
        return rotation.rotated_to(self.conn, identity_id)

    def close_rotated(self, old: int, new: int, closed_from: str, event_index: int) -> None:
        rotation.close_rotated(self.conn, old, new, closed_from, event_index)

    def carry_over(self, old: int, new: int, at_us: int, event_index: int) -> None:
        rotation.carry_over(self.conn, old, new, at_us, event_index)

    def current_did(self, did: str) -> str:
        return rotation.current_did(self.conn, did)

    # --- lots

    def lot_by_uri(self, uri: str) -> Lot | None:
        row = self.conn.execute(LOT_SELECT + "WHERE c.subject = ?", (uri,)).fetchone()
        return lot_from_row(row) if row else None

    def lots(self) -> list[Lot]:
        return [lot_from_row(row) for row in self.conn.execute(LOT_SELECT + "ORDER BY l.id")]

    def lot_by_id(self, lot_id: int) -> Lot | None:
        row = self.conn.execute(LOT_SELECT + "WHERE l.id = ?", (lot_id,)).fetchone()
        return lot_from_row(row) if row else None

    def insert_lot(self, lot: Lot) -> None:
        self.conn.execute(
            "INSERT INTO lots (id, gtin, lot, product, category, expiry, profile, custodian, "
            "commissioned_by, origin_event, recalled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                lot.id,
                lot.gtin,
                lot.lot,
                lot.product,
                lot.category,
                lot.expiry,
                lot.profile,
                lot.custodian,
                lot.commissioned_by,
                lot.origin_event,
                int(lot.recalled),
            ),
        )
        self._add_custodian(lot.id, lot.commissioned_by)
        self._add_custodian(lot.id, lot.custodian)

    def set_custodian(self, lot_id: int, party_id: int) -> None:
        self.conn.execute("UPDATE lots SET custodian = ? WHERE id = ?", (party_id, lot_id))
        self._add_custodian(lot_id, party_id)

    def _add_custodian(self, lot_id: int, party_id: int) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO custodians (lot, party) VALUES (?, ?)", (lot_id, party_id)
        )

    def held_by(self, lot_id: int, party_id: int) -> bool:
        """Whether the party holds or ever held the lot (made it, or received it)."""
        return (
            self.conn.execute(
                "SELECT 1 FROM custodians WHERE lot = ? AND party = ?", (lot_id, party_id)
            ).fetchone()
            is not None
        )

    def custodian_history(self, lot_id: int) -> list[int]:
        """Identity ids of every party that held the lot, in id order."""
        return [
            row[0]
            for row in self.conn.execute(
                "SELECT party FROM custodians WHERE lot = ? ORDER BY party", (lot_id,)
            )
        ]

    # --- GS1 company prefixes (who may commission under which GTINs)

    def record_prefixes(self, party_id: int, prefixes: Sequence[str], event_index: int) -> None:
        record_prefixes(self.conn, party_id, prefixes, event_index)

    def prefixes(self, party_id: int) -> list[str]:
        """The GS1 company prefixes the party may commission under, sorted."""
        return [
            row[0]
            for row in self.conn.execute(
                "SELECT prefix FROM prefixes WHERE party = ? ORDER BY prefix", (party_id,)
            )
        ]

    def set_recalled(self, lot_id: int, recalled: bool) -> None:
        self.conn.execute("UPDATE lots SET recalled = ? WHERE id = ?", (int(recalled), lot_id))

    # --- what an event does to the derived lot state (`EFFECTS`, derived.py)

    def derive(
        self, kind: str, event_index: int, lot_ids: Sequence[int], data: Data, refs: Refs
    ) -> list[int]:
        """The effect of an accepted event of *kind* on the lots it names: the
        one writer the backfills replay too. Returns the lots it changed."""
        return derive(self.conn, kind, event_index, lot_ids, data, refs)

    # --- lineage and lot state (what a trace shows)

    def descendants(self, lot_id: int) -> list[int]:
        return descendants(self.conn, lot_id)

    def ancestors(self, lot_id: int) -> list[int]:
        return [
            row[0]
            for row in self.conn.execute(
                ANCESTORS + "SELECT id FROM up WHERE id <> ? ORDER BY id", (lot_id, lot_id)
            )
        ]

    def lineage_edge_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM lineage").fetchone()[0]

    def lineage_edges(self, lot_id: int, direction: str) -> list[LineageEdge]:
        """Every lineage edge upstream ("back") or downstream ("forward") of a
        lot, through one recursive query over the indexed edges."""
        if direction == "forward":
            sql = DESCENDANTS + EDGE + "WHERE parent IN (SELECT id FROM down)"
        elif direction == "back":
            sql = ANCESTORS + EDGE + "WHERE child IN (SELECT id FROM up)"
        else:
            raise ValueError(f"direction must be back or forward, not {direction!r}")
        return [LineageEdge(*row) for row in self.conn.execute(sql, (lot_id,))]

    def lot_states(self, lot_ids: Sequence[int]) -> list[LotState]:
        """What a trace shows of each lot (in no particular order)."""
        rows = self.conn.execute(
            "SELECT l.id, c.subject, l.gtin, l.lot, l.product, l.category, l.expiry, "
            "i.did, i.name, i.role, l.quantity, l.unit, l.used, l.used_other, l.location, "
            "l.recalled, l.origin_event FROM lots l JOIN chains c ON c.id = l.id "
            "LEFT JOIN identities i ON i.id = l.custodian "
            "WHERE l.id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(lot_ids)),),
        ).fetchall()
        return [
            LotState(
                *row[:13],
                bool(row[13]),
                None if row[14] is None else json.loads(row[14]),
                bool(row[15]),
                row[16],
            )
            for row in rows
        ]

    def open_shipments(self) -> dict[int, tuple[int, str | None, str | None, str | None]]:
        """lot id -> (ship event index, receiver did, name, role) of every lot in transit."""
        rows = self.conn.execute(
            "SELECT j.value, s.event, r.did, r.name, r.role FROM shipments s "
            "JOIN json_each(s.lots) j LEFT JOIN identities r ON r.id = s.receiver "
            "WHERE s.receive_event IS NULL"
        )
        return {row[0]: tuple(row[1:]) for row in rows}  # type: ignore[misc]

    def recall_reach(self, sources: Sequence[int]) -> list[tuple[int, int]]:
        """(lot, source) of every lot a recall of *sources* signed now would reach."""
        return recall_reach(self.conn, sources)

    def active_recalls(self, lot_id: int) -> list[tuple[int, int]]:
        """(source lot id, recall event index) of the lot's active recalls, oldest first."""
        return self.conn.execute(
            "SELECT source, event FROM recalls WHERE lot = ? AND lift_event IS NULL "
            "ORDER BY event, source",
            (lot_id,),
        ).fetchall()

    def recall_rows(self, lot_id: int) -> list[tuple[int, int, int | None]]:
        """(source, recall event, lift event or None) of every recall that reached the lot."""
        return self.conn.execute(
            "SELECT source, event, lift_event FROM recalls WHERE lot = ? ORDER BY event, source",
            (lot_id,),
        ).fetchall()

    def lots_of_recall_event(self, event_index: int) -> list[int]:
        """The lots a recall (or, for a lift's index, a lift) changed, by id."""
        return [
            row[0]
            for row in self.conn.execute(
                "SELECT lot FROM recalls WHERE event = ? UNION "
                "SELECT lot FROM recalls WHERE lift_event = ? ORDER BY 1",
                (event_index, event_index),
            )
        ]

    def recall_effects(self, event_index: int) -> list[tuple[int, int]]:
        """(lot, source) of every recall row a recall (or lift) at this index made (or ended)."""
        return self.conn.execute(
            "SELECT lot, source FROM recalls WHERE event = ? OR lift_event = ? "
            "ORDER BY lot, source",
            (event_index, event_index),
        ).fetchall()

    def recall_events_since(self, begin: int) -> list[int]:
        """Log indexes of recalls and lifts from *begin* on."""
        codes = f"{KIND_CODES['recall']},{KIND_CODES['recall-lift']}"
        return [
            row[0]
            for row in self.conn.execute(
                f"SELECT idx FROM events WHERE idx >= ? AND kind IN ({codes}) ORDER BY idx",
                (begin,),
            )
        ]

    def recalled_count(self, lot_ids: Sequence[int]) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM lots WHERE recalled = 1 "
            "AND id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(lot_ids)),),
        ).fetchone()[0]

    # --- holds and flags (what the rules key decided; docs/rules.md)

    def active_holds(self, lot_id: int) -> list[tuple[int, str]]:
        """(hold event index, rule) of the lot's holds in force, oldest first."""
        return self.conn.execute(
            "SELECT event, rule FROM holds WHERE lot = ? AND release_event IS NULL ORDER BY event",
            (lot_id,),
        ).fetchall()

    def hold_rows(self, lot_id: int) -> list[tuple[int, str, int | None]]:
        """(hold event index, rule, release event index or None) of every hold of the lot."""
        return self.conn.execute(
            "SELECT event, rule, release_event FROM holds WHERE lot = ? ORDER BY event", (lot_id,)
        ).fetchall()

    def held_lots(self) -> list[tuple[int, int]]:
        """(lot id, hold event index) of every hold in force, oldest first."""
        return self.conn.execute(
            "SELECT lot, event FROM holds WHERE release_event IS NULL ORDER BY event, lot"
        ).fetchall()

    def has_flag(self, lot_id: int, rule: str, key: str) -> bool:
        return (
            self.conn.execute(
                "SELECT 1 FROM flags WHERE lot = ? AND rule = ? AND key = ?", (lot_id, rule, key)
            ).fetchone()
            is not None
        )

    def issued_serials(self, lot_id: int, serials: Sequence[str]) -> set[str]:
        """Which of *serials* were already issued for the lot (`serials` events)."""
        found: set[str] = set()
        for start in range(0, len(serials), 500):
            chunk = list(serials[start : start + 500])
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self.conn.execute(
                    f"SELECT serial FROM serials WHERE lot = ? AND serial IN ({marks})",
                    (lot_id, *chunk),
                )
            )
        return found

    def serial_issue(self, lot_id: int, serial: str) -> int | None:
        """Log index of the `serials` event that issued *serial* for the lot, or None."""
        row = self.conn.execute(
            "SELECT event FROM serials WHERE lot = ? AND serial = ?", (lot_id, serial)
        ).fetchone()
        return None if row is None else row[0]

    def serials_of(self, lot_id: int, after: str = "", limit: int = 1000) -> list[tuple[str, int]]:
        """(serial, issuing event's log index) of the lot, by serial, those after *after*."""
        return self.conn.execute(
            "SELECT serial, event FROM serials WHERE lot = ? AND serial > ? ORDER BY serial "
            "LIMIT ?",
            (lot_id, after, limit),
        ).fetchall()

    def serial_count(self, lot_id: int) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM serials WHERE lot = ?", (lot_id,)
        ).fetchone()[0]

    def flag_rows(self, lot_id: int) -> list[tuple[int, str, str, str]]:
        """(flag event index, rule, signal, key) of every flag of the lot, oldest first."""
        return self.conn.execute(
            "SELECT event, rule, signal, key FROM flags WHERE lot = ? ORDER BY event", (lot_id,)
        ).fetchall()

    def recent_flags(self, limit: int = 100) -> list[tuple[int, int]]:
        """(lot id, flag event index) of the newest flags, newest first."""
        return self.conn.execute(
            "SELECT lot, event FROM flags ORDER BY event DESC, lot LIMIT ?", (limit,)
        ).fetchall()

    def hold_events_since(self, begin: int) -> list[tuple[int, str, list[int]]]:
        """(log index, kind, lot ids) of holds, releases and flags from *begin* on."""
        codes = ",".join(str(KIND_CODES[k]) for k in ("hold", "release", "flag"))
        return [
            (idx, KIND_NAMES[kind], parse_ids(lots or named or "[]"))
            for idx, kind, named, lots in self.conn.execute(
                f"SELECT idx, kind, batches, lots FROM events WHERE idx >= ? AND kind IN ({codes}) "
                "ORDER BY idx",
                (begin,),
            )
        ]

    def lot_events_since(
        self, begin: int, end: int, kinds: Sequence[str]
    ) -> list[tuple[int, str, int, str, list[int]]]:
        """(log index, kind, signer id, time, lot ids filed under) of events of *kinds*
        in [begin, end), in log order: what a follower of the ledger needs to know
        which lots an event touched, without rebuilding envelopes."""
        codes = ",".join(str(KIND_CODES[k]) for k in kinds)
        return [
            (idx, KIND_NAMES[kind], signer, time, parse_ids(lots or named or "[]"))
            for idx, kind, signer, time, named, lots in self.conn.execute(
                "SELECT idx, kind, signer, time, batches, lots FROM events "
                f"WHERE idx >= ? AND idx < ? AND kind IN ({codes}) ORDER BY idx",
                (begin, end),
            )
        ]

    def lot_readings(
        self, lot_id: int, from_pos: int = 0
    ) -> list[tuple[int, int, int, str, float | None, str | None]]:
        """(chain position, log index, device id, time, temperature °C or None, sensor
        or None) of the readings filed under the lot from chain position *from_pos*
        on, in chain order (a follower reads only what is new)."""
        return self.conn.execute(
            "SELECT l.pos, e.idx, e.signer, e.time, json_extract(e.data, '$.temperature_c'), "
            "json_extract(e.data, '$.sensor') "
            "FROM links l JOIN events e ON e.idx = l.event "
            "WHERE l.chain = ? AND l.pos >= ? AND e.kind = ? ORDER BY l.pos",
            (lot_id, from_pos, KIND_CODES["reading"]),
        ).fetchall()

    def lot_attachments(self, lot_id: int) -> list[tuple[int, int, int | None]]:
        """(device id, from µs, until µs or None) of every logger attached to the lot."""
        return self.conn.execute(
            "SELECT device, from_us, until_us FROM attachments WHERE lot = ? ORDER BY id",
            (lot_id,),
        ).fetchall()

    def open_attachments(self) -> list[tuple[int, int, int]]:
        """(lot id, device id, from µs) of every logger attached now."""
        return self.conn.execute(
            "SELECT lot, device, from_us FROM attachments WHERE until_us IS NULL ORDER BY id"
        ).fetchall()

    # --- attachments and shipments

    def attachments(self, device_id: int) -> list[list[Any]]:
        """[lot, from_us, until_us, attachment id] for a device, oldest first."""
        return [
            list(row)
            for row in self.conn.execute(
                "SELECT lot, from_us, until_us, id FROM attachments WHERE device = ? ORDER BY id",
                (device_id,),
            )
        ]

    def insert_attachment(self, device: int, lot: int, from_us: int, event_index: int) -> int:
        cursor = self.conn.execute(
            "INSERT INTO attachments (device, lot, from_us, attach_event) VALUES (?, ?, ?, ?)",
            (device, lot, from_us, event_index),
        )
        return cursor.lastrowid or 0

    def close_attachment(self, attachment_id: int, until_us: int, event_index: int) -> None:
        self.conn.execute(
            "UPDATE attachments SET until_us = ?, detach_event = ? WHERE id = ?",
            (until_us, event_index, attachment_id),
        )

    def insert_shipment(
        self, event_index: int, sender: int, receiver: int, lots: list[int]
    ) -> None:
        self.conn.execute(
            "INSERT INTO shipments (event, sender, receiver, lots) VALUES (?, ?, ?, ?)",
            (event_index, sender, receiver, json.dumps(sorted(lots))),
        )

    def shipment(self, event_index: int) -> tuple[int, int, list[int], int | None] | None:
        row = self.conn.execute(
            "SELECT sender, receiver, lots, receive_event FROM shipments WHERE event = ?",
            (event_index,),
        ).fetchone()
        return None if row is None else (row[0], row[1], json.loads(row[2]), row[3])

    def open_shipment_for(self, lot_id: int) -> int | None:
        row = self.conn.execute(
            "SELECT s.event FROM shipments s, json_each(s.lots) j "
            "WHERE s.receive_event IS NULL AND j.value = ? LIMIT 1",
            (lot_id,),
        ).fetchone()
        return row[0] if row else None

    def last_receive_of(self, lot_id: int) -> int | None:
        """Log index of the newest receive of a shipment that carried the lot
        (the lot's last handoff), or None if it was never received."""
        row = self.conn.execute(
            "SELECT max(s.receive_event) FROM shipments s, json_each(s.lots) j "
            "WHERE j.value = ? AND s.receive_event IS NOT NULL",
            (lot_id,),
        ).fetchone()
        return row[0] if row else None

    def close_shipment(self, event_index: int, receive_index: int) -> None:
        self.conn.execute(
            "UPDATE shipments SET receive_event = ? WHERE event = ?", (receive_index, event_index)
        )

    # --- rejects

    def insert_reject(
        self,
        at: str,
        reason: str,
        detail: str,
        source: str | None,
        event_id: str | None,
        raw: bytes | None,
        count: int = 1,
    ) -> int:
        """Record a refusal (or *count* of them: an aggregate row); its row id.
        Text is stored as valid UTF-8 (anything else escaped), raw bytes capped."""
        cursor = self.conn.execute(
            "INSERT INTO rejects (at, reason, detail, source, event_id, raw, count, last_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                at,
                _text(reason),
                _text(detail[:2000]),
                None if source is None else _text(source),
                event_id,
                None if raw is None else bytes(raw[:MAX_REJECT_RAW]),
                count,
                at,
            ),
        )
        return int(cursor.lastrowid or 0)

    def count_rejects(self, row: int, count: int, at: str) -> bool:
        """Add *count* refusals to aggregate row *row*; False if there is no such row."""
        cursor = self.conn.execute(
            "UPDATE rejects SET count = count + ?, last_at = ? WHERE id = ?", (count, at, row)
        )
        return cursor.rowcount == 1

    def rejects(self, limit: int = 100) -> list[tuple[Any, ...]]:
        """The newest reject rows: (at, reason, detail, source, event_id, count)."""
        return self.conn.execute(
            "SELECT at, reason, detail, source, event_id, count FROM rejects "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()


def _text(text: str) -> str:
    """*text* as valid UTF-8 (a lone surrogate, from input that was no text, escaped)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
