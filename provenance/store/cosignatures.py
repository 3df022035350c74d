"""Witnessing in the ledger's database: the witnesses and the quorum, the
cosignatures collected per checkpoint, and the checkpoint to show.

Plain persistence: the witnessing service (provenance/services/witnessing.py)
verifies every cosignature before it calls `record_cosignature`; nothing here
checks a signature.

**The checkpoint to show** (`shown_checkpoint`: `/log/v1/checkpoint`, the
retained MQTT checkpoint, the bundles): with witnesses configured, the newest
checkpoint that reached the quorum, its log signature followed by the
cosignature lines of the configured witnesses; while no checkpoint has yet, the
newest one the log signed, with what it has. Without witnesses, the newest
log-signed checkpoint, as before witnessing. So what is shown lags the log by
about one witnessing round (the cadence), and never goes backwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provenance.store.db import Store

QUORUM_KEY = "witness_quorum"  # meta: how many configured witnesses make a checkpoint shown


@dataclass(frozen=True)
class WitnessRow:
    """A configured witness: its name in the policy, submission prefix, verifier
    key, and the size it last cosigned for this log (None: not known yet)."""

    name: str
    url: str
    vkey: str
    cosigned_size: int | None = None


def configure_witnesses(store: Store, witnesses: list[WitnessRow], quorum: int) -> None:
    """Make *witnesses* the configured set, with *quorum*, in one transaction.

    A witness that stays with the same key keeps the size it last cosigned
    (also when its URL moved); one whose key changed, or a new one, starts
    from "not known" (its first answer, a 409 if need be, tells), and the
    cosignatures kept under its name are dropped (made by a key not trusted
    now, or not known to be the same): they never count towards the quorum
    nor are shown. Witnesses left out are removed, their cosignatures kept
    until the name is configured again; they count for nothing meanwhile."""
    with store.transaction():
        known = {w.name: w for w in configured_witnesses(store)}
        store.conn.execute("DELETE FROM witnesses")
        for w in witnesses:
            old = known.get(w.name)
            size = old.cosigned_size if old is not None and old.vkey == w.vkey else None
            if old is None or old.vkey != w.vkey:  # none made by a key not trusted now
                store.conn.execute("DELETE FROM cosignatures WHERE witness = ?", (w.name,))
            store.conn.execute(
                "INSERT INTO witnesses (name, url, vkey, cosigned_size) VALUES (?, ?, ?, ?)",
                (w.name, w.url, w.vkey, size),
            )
        store.set_meta(QUORUM_KEY, str(quorum))


def configured_witnesses(store: Store) -> list[WitnessRow]:
    """The configured witnesses, by name."""
    rows = store.conn.execute(
        "SELECT name, url, vkey, cosigned_size FROM witnesses ORDER BY name"
    ).fetchall()
    return [WitnessRow(*row) for row in rows]


def witness_quorum(store: Store) -> int:
    """How many configured witnesses must cosign a checkpoint for it to be shown
    (0: no witnessing)."""
    text = store.get_meta(QUORUM_KEY)
    return int(text) if text and text.isdigit() else 0


def set_cosigned_size(store: Store, witness: str, size: int) -> None:
    """Record the size *witness* last cosigned (from its 200, or its 409's body)."""
    with store.transaction():
        store.conn.execute("UPDATE witnesses SET cosigned_size = ? WHERE name = ?", (size, witness))


def record_cosignature(store: Store, size: int, witness: str, line: str, timestamp: int) -> None:
    """Keep *witness*'s verified cosignature *line* of the checkpoint of *size*,
    and that it cosigned *size*, in one transaction."""
    with store.transaction():
        store.conn.execute(
            "INSERT INTO cosignatures (size, witness, line, timestamp) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (size, witness) DO UPDATE SET line = excluded.line, "
            "timestamp = excluded.timestamp",
            (size, witness, line, timestamp),
        )
        store.conn.execute("UPDATE witnesses SET cosigned_size = ? WHERE name = ?", (size, witness))


def cosignatures_of(store: Store, size: int) -> dict[str, str]:
    """{witness name: cosignature line} for the checkpoint of *size*, configured
    witnesses only."""
    rows = store.conn.execute(
        "SELECT c.witness, c.line FROM cosignatures c JOIN witnesses w ON w.name = c.witness "
        "WHERE c.size = ? ORDER BY c.witness",
        (size,),
    ).fetchall()
    return dict(rows)


def quorum_size(store: Store) -> int | None:
    """The size of the newest checkpoint that reached the quorum, or None."""
    quorum = witness_quorum(store)
    if quorum <= 0:
        return None
    row = store.conn.execute(
        "SELECT c.size FROM cosignatures c JOIN witnesses w ON w.name = c.witness "
        "JOIN checkpoints k ON k.size = c.size "
        "GROUP BY c.size HAVING count(*) >= ? ORDER BY c.size DESC LIMIT 1",
        (quorum,),
    ).fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class ShownCheckpoint:
    """The checkpoint to show: the note with its cosignature lines appended,
    its size, and who cosigned it (witness names, sorted)."""

    note: str
    size: int
    cosigners: tuple[str, ...]
    quorum: int

    @property
    def witnessed(self) -> bool:
        """True if it reached the configured quorum (always, without witnesses)."""
        return len(self.cosigners) >= self.quorum


def shown_checkpoint(store: Store) -> ShownCheckpoint | None:
    """The checkpoint to show (module docstring), or None before the first."""
    size = quorum_size(store)
    if size is None:
        row = store.conn.execute(
            "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
    else:
        row = store.conn.execute(
            "SELECT size, note FROM checkpoints WHERE size = ?", (size,)
        ).fetchone()
    if row is None:
        return None
    size, note = row
    lines = cosignatures_of(store, size)
    return ShownCheckpoint(
        note + "".join(line + "\n" for line in lines.values()),
        size,
        tuple(lines),
        witness_quorum(store),
    )
