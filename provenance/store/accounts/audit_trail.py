"""The audit trail: who did what, with which parameters, and how it ended.
Append-only (triggers refuse UPDATE and DELETE) and hash-chained
(`provenance.core.trail`): each entry's hash covers the previous hash and the
entry, so `verify_audit` notices an entry edited or removed behind SQLite's
back. Its head (`audit_head`) is anchored in the public log at a fixed cadence
(`provenance.ledger.trail_anchors`), so that a trail rebuilt with every hash
recomputed is caught too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from provenance.core.trail import GENESIS, TrailEntry, check_trail, entry_hash
from provenance.store.accounts.db import AccountsDatabase
from provenance.store.accounts.models import AuditEntry

TRAIL = "portal"  # the trail's name in its `anchor` events


class AuditTrail(AccountsDatabase):
    """The hash-chained audit trail in the accounts database."""

    def audit(
        self,
        actor: str,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        role: str | None = None,
        party: str | None = None,
        outcome: str = "ok",
    ) -> AuditEntry:
        """Append one entry: who, what, with which parameters, and how it ended."""
        clean = json.loads(json.dumps(params or {}, default=str))  # JSON values only
        _, at = self._now()
        fields = {
            "at": at,
            "actor": actor,
            "role": role,
            "party": party,
            "action": action,
            "params": clean,
            "outcome": outcome[:2000],
        }
        with self._write() as conn:
            row = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            digest = entry_hash(row[0] if row else GENESIS, fields)
            cursor = conn.execute(
                "INSERT INTO audit (at, actor, role, party, action, params, outcome, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    at,
                    actor,
                    role,
                    party,
                    action,
                    json.dumps(clean, ensure_ascii=False, sort_keys=True),
                    fields["outcome"],
                    digest,
                ),
            )
        return AuditEntry(
            cursor.lastrowid or 0, at, actor, role, party, action, clean, fields["outcome"], digest
        )

    def audit_entries(
        self,
        *,
        limit: int = 100,
        before: int | None = None,
        action: str | None = None,
        actor: str | None = None,
    ) -> list[AuditEntry]:
        """Newest first; *before* pages back from an entry id."""
        where, params = [], []
        if before is not None:
            where.append("id < ?")
            params.append(before)
        if action:
            where.append("action = ?")
            params.append(action)
        if actor:
            where.append("actor = ?")
            params.append(actor)
        sql = "SELECT id, at, actor, role, party, action, params, outcome, hash FROM audit "
        if where:
            sql += "WHERE " + " AND ".join(where) + " "
        sql += "ORDER BY id DESC LIMIT ?"
        rows = self._read(sql, (*params, max(1, min(limit, 1000))))
        return [
            AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8])
            for r in rows
        ]

    def audit_head(self) -> tuple[int, str]:
        """(entries, the last entry's hash): what an `anchor` event states."""
        rows = self._read(
            "SELECT count(*), (SELECT hash FROM audit ORDER BY id DESC LIMIT 1) FROM audit"
        )
        count, head = rows[0]
        return count, head or GENESIS

    def trail_entries(self) -> Iterator[TrailEntry]:
        """Every entry in id order, as the hash chain covers it."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, at, actor, role, party, action, params, outcome, hash FROM audit "
                "ORDER BY id"
            ).fetchall()
        for row in rows:
            fields = {
                "at": row[1],
                "actor": row[2],
                "role": row[3],
                "party": row[4],
                "action": row[5],
                "params": json.loads(row[6]),
                "outcome": row[7],
            }
            yield TrailEntry(row[0], fields, row[8])

    def verify_audit(self) -> tuple[int, str | None]:
        """(entries checked, the first problem or None): recomputes the hash chain
        (against no anchors: see `provenance.ledger.trail_anchors.verify_anchored`)."""
        report = check_trail(self.trail_entries(), ())
        return report.checked, report.problem
