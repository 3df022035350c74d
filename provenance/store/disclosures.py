"""The disclosures of events' private fields (docs/protocol.md §14): kept
beside the log, never in it. A v2 event's envelope (in the log, the bundles,
the pages, the tiles) carries only the digests; the encoded disclosures are
here, one row per private field, readable only through the portal's and
CLI's checks of who may see them (provenance/ledger/disclosures.py).

Plain persistence: the ledger checks every disclosure against its event's
signed digests before it calls `insert_disclosures`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provenance.store.db import Store


def insert_disclosures(store: Store, rows: Iterable[tuple[int, str, str]]) -> None:
    """Store (log index, digest, encoded disclosure) rows, in the caller's transaction."""
    store.conn.executemany(
        "INSERT OR IGNORE INTO disclosures (idx, digest, disclosure) VALUES (?, ?, ?)",
        list(rows),
    )


def disclosures_of(store: Store, index: int) -> list[str]:
    """The encoded disclosures of the event at log *index*, by digest (none for v1)."""
    return [
        row[0]
        for row in store.conn.execute(
            "SELECT disclosure FROM disclosures WHERE idx = ? ORDER BY digest", (index,)
        )
    ]


def put_grant(store: Store, grantor: str, grantee: str, time: str, sig: str) -> None:
    """Record (or renew) a grant the ledger has checked the signature of."""
    with store.transaction():
        store.conn.execute(
            "INSERT INTO disclosure_grants (grantor, grantee, time, sig) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (grantor, grantee) DO UPDATE SET time = excluded.time, sig = excluded.sig",
            (grantor, grantee, time, sig),
        )


def drop_grant(store: Store, grantor: str, grantee: str) -> bool:
    """Withdraw a grant; whether there was one."""
    with store.transaction():
        cursor = store.conn.execute(
            "DELETE FROM disclosure_grants WHERE grantor = ? AND grantee = ?", (grantor, grantee)
        )
        return bool(cursor.rowcount)


def grant_of(store: Store, grantor: str, grantee: str) -> tuple[str, str] | None:
    """(time, sig) of *grantor*'s grant to *grantee*, if there is one."""
    row = store.conn.execute(
        "SELECT time, sig FROM disclosure_grants WHERE grantor = ? AND grantee = ?",
        (grantor, grantee),
    ).fetchone()
    return None if row is None else (row[0], row[1])
