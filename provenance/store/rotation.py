"""What a key rotation writes (docs/protocol.md, "Key rotation"): the old
identity is closed from the rotation's time and linked to its successor, and
what the old key held carries over to the new one — custody, open shipments
(sent or offered), custody history (who held what, for the access rules), GS1
prefixes, owned devices and, for a device, its open attachments (from the
rotation's time on). Recalls,
holds and flags are on lots and stay with them. Events signed by the old key
keep pointing at the old identity, so they rebuild with the key that signed
them.
"""

from __future__ import annotations

import sqlite3

from provenance.store import places
from provenance.store.holdings import carry_over_holdings


def rotated_to(conn: sqlite3.Connection, identity_id: int) -> int | None:
    """The identity that *identity_id* rotated to, or None."""
    row = conn.execute("SELECT rotated_to FROM identities WHERE id = ?", (identity_id,)).fetchone()
    return None if row is None else row[0]


def close_rotated(
    conn: sqlite3.Connection, old: int, new: int, closed_from: str, event_index: int
) -> None:
    """Close identity *old* from *closed_from* (an earlier revocation stays) and
    link it to *new*; first, so that the new identity may take its name."""
    conn.execute(
        "UPDATE identities SET rotated_to = ?, rotate_event = ?, "
        "revoke_event = CASE WHEN revoked_from IS NULL THEN ? ELSE revoke_event END, "
        "revoked_from = coalesce(revoked_from, ?) WHERE id = ?",
        (new, event_index, event_index, closed_from, old),
    )


def carry_over(conn: sqlite3.Connection, old: int, new: int, at_us: int, event_index: int) -> None:
    """Move what identity *old* held to identity *new* (inserted by now); the
    rotation is dated *at_us* and logged at *event_index*."""
    conn.execute("UPDATE lots SET custodian = ? WHERE custodian = ?", (new, old))
    conn.execute(
        "UPDATE shipments SET sender = ? WHERE sender = ? AND receive_event IS NULL", (new, old)
    )
    conn.execute(
        "UPDATE shipments SET receiver = ? WHERE receiver = ? AND receive_event IS NULL",
        (new, old),
    )
    conn.execute(
        "INSERT OR IGNORE INTO custodians (lot, party) SELECT lot, ? FROM custodians "
        "WHERE party = ?",
        (new, old),
    )
    conn.execute(
        "INSERT OR IGNORE INTO prefixes (party, prefix, event) SELECT ?, prefix, event "
        "FROM prefixes WHERE party = ?",
        (new, old),
    )
    conn.execute("UPDATE identities SET owner = ? WHERE owner = ? AND id != ?", (new, old, new))
    carry_over_holdings(conn, old, new)
    places.carry_over(conn, old, new)  # its PGLN, address and places (docs/protocol.md §15)
    # A device's open attachments end for the old key at the rotation's time and
    # go on for the new key from then: the old key's readings dated before it
    # (buffered by a gateway, say) are still filed under the lots they rode with.
    for row_id, lot, from_us in conn.execute(
        "SELECT id, lot, from_us FROM attachments WHERE device = ? AND until_us IS NULL",
        (old,),
    ).fetchall():
        if from_us >= at_us:  # attached after the rotation's time: all the new key's
            conn.execute("UPDATE attachments SET device = ? WHERE id = ?", (new, row_id))
            continue
        conn.execute(
            "UPDATE attachments SET until_us = ?, detach_event = ? WHERE id = ?",
            (at_us, event_index, row_id),
        )
        conn.execute(
            "INSERT INTO attachments (device, lot, from_us, attach_event) VALUES (?, ?, ?, ?)",
            (new, lot, at_us, event_index),
        )


MAX_ROTATIONS = 1000  # a bound on following rotations (each is a logged event)


def current_did(conn: sqlite3.Connection, did: str) -> str:
    """The did an identity has now: *did*, or the key it was rotated to, and so on."""
    for _ in range(MAX_ROTATIONS):
        row = conn.execute(
            "SELECT n.did FROM identities o JOIN identities n ON n.id = o.rotated_to "
            "WHERE o.did = ?",
            (did,),
        ).fetchone()
        if row is None:
            return did
        did = row[0]
    return did
