"""The places registry and the parties' GS1 identifiers (docs/protocol.md §15):
the `places` table (one row per GLN, from the newest `place` event on it) and
the `pgln`/`address` columns of `identities` (from a party's enrolment). Reads
and writes over a store's connection, as the other derived tables; written by
the ledger's `place` and `enrol` kinds (provenance/ledger/kinds/).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provenance.store.db import Store


@dataclass(frozen=True)
class RegisteredPlace:
    """A registered place: its GLN, name, the party that operates it (identity id,
    did and name), and what its newest registration says."""

    gln: str
    name: str
    party: int
    party_did: str
    party_name: str
    address: dict[str, str] | None
    lat: float | None
    lon: float | None
    type: str | None
    event: int  # log index of the registration in force

    def as_location(self) -> dict[str, Any]:
        """The place as an event's `location` gives it (name, gln, address, lat/lon)."""
        location: dict[str, Any] = {"name": self.name, "gln": self.gln}
        if self.address:
            location["address"] = dict(self.address)
        if self.lat is not None and self.lon is not None:
            location["lat"], location["lon"] = self.lat, self.lon
        return location


@dataclass(frozen=True)
class PartyDetails:
    """What a party's enrolment says of its GS1 identity: its PGLN and address."""

    pgln: str | None = None
    address: dict[str, str] | None = None


_PLACE = (
    "SELECT p.gln, p.name, p.party, i.did, i.name, p.address, p.lat, p.lon, p.type, p.event "
    "FROM places p JOIN identities i ON i.id = p.party "
)


def _place(row: tuple[Any, ...] | None) -> RegisteredPlace | None:
    if row is None:
        return None
    gln, name, party, did, party_name, address, lat, lon, type_, event = row
    return RegisteredPlace(
        gln, name, party, did, party_name, json.loads(address) if address else None, lat, lon,
        type_, event,
    )  # fmt: skip


def record_place(store: Store, party: int, data: dict[str, Any], index: int) -> None:
    """A `place` event at log *index* by identity *party*: the GLN's row says what
    this registration says (a later one replaces an earlier one whole)."""
    address = data.get("address")
    store.conn.execute(
        "INSERT INTO places (gln, party, name, address, lat, lon, type, event) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (gln) DO UPDATE SET party = excluded.party, "
        "name = excluded.name, address = excluded.address, lat = excluded.lat, "
        "lon = excluded.lon, type = excluded.type, event = excluded.event",
        (
            data["gln"],
            party,
            data["name"],
            json.dumps(address, sort_keys=True, ensure_ascii=False) if address else None,
            data.get("lat"),
            data.get("lon"),
            data.get("type"),
            index,
        ),
    )


def record_party_details(store: Store, identity: int, data: dict[str, Any]) -> None:
    """A party's PGLN and address from its enrolment's data (when it gives them)."""
    address = data.get("address")
    if "pgln" in data or address:
        store.conn.execute(
            "UPDATE identities SET pgln = ?, address = ? WHERE id = ?",
            (
                data.get("pgln"),
                json.dumps(address, sort_keys=True, ensure_ascii=False) if address else None,
                identity,
            ),
        )


def carry_over(conn: sqlite3.Connection, old: int, new: int) -> None:
    """A rotation: the new key's identity keeps the old one's PGLN, address and places."""
    conn.execute(
        "UPDATE identities SET pgln = (SELECT pgln FROM identities WHERE id = ?), "
        "address = (SELECT address FROM identities WHERE id = ?) WHERE id = ?",
        (old, old, new),
    )
    conn.execute("UPDATE places SET party = ? WHERE party = ?", (new, old))


def place(store: Store, gln: str) -> RegisteredPlace | None:
    return _place(store.conn.execute(_PLACE + "WHERE p.gln = ?", (gln,)).fetchone())


def places(store: Store, party: int | None = None) -> list[RegisteredPlace]:
    """Every registered place (or *party*'s), by GLN."""
    where, params = ("WHERE p.party = ? ", (party,)) if party is not None else ("", ())
    rows = store.conn.execute(_PLACE + where + "ORDER BY p.gln", params).fetchall()
    return [found for row in rows if (found := _place(row))]


def party_details(store: Store, identity: int) -> PartyDetails:
    row = store.conn.execute(
        "SELECT pgln, address FROM identities WHERE id = ?", (identity,)
    ).fetchone()
    if row is None:
        return PartyDetails()
    return PartyDetails(row[0], json.loads(row[1]) if row[1] else None)


def party_with_pgln(store: Store, pgln: str) -> int | None:
    """The identity (not rotated away from) whose enrolment gave *pgln*, if any."""
    row = store.conn.execute(
        "SELECT id FROM identities WHERE pgln = ? AND rotated_to IS NULL", (pgln,)
    ).fetchone()
    return row[0] if row else None
