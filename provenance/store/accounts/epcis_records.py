"""The EPCIS REST interface's records in the accounts database (migration
0004_epcis_interface): capture jobs and their outcome, named queries and their
subscriptions, each kept per owner (docs/epcis.md, "Capture" and "Named
queries and subscriptions")."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from provenance.store.accounts.db import AccountsDatabase

MAX_QUERIES_PER_OWNER = 100
MAX_SUBSCRIPTIONS_PER_OWNER = 20
MAX_JOBS_KEPT = 1000  # per owner: the oldest finished ones go first


@dataclass(frozen=True)
class CaptureJob:
    id: str
    owner: str
    created_at: str
    finished_at: str | None
    running: bool
    success: bool
    behaviour: str
    errors: list[dict[str, Any]]
    events: list[dict[str, Any]]  # per event: eventID, status, ledger event id

    def to_json(self) -> dict[str, Any]:
        """The binding's CaptureJob (plus our `events`: what became of each)."""
        out: dict[str, Any] = {
            "captureID": self.id,
            "createdAt": self.created_at,
            "running": self.running,
            "success": self.success,
            "captureErrorBehaviour": self.behaviour,
            "errors": self.errors,
        }
        if self.finished_at:
            out["finishedAt"] = self.finished_at
        out["events"] = self.events
        return out


@dataclass(frozen=True)
class NamedQuery:
    owner: str
    name: str
    query: dict[str, Any]
    created_at: str


@dataclass(frozen=True)
class Subscription:
    id: str
    owner: str
    query_name: str
    dest: str
    secret: str | None
    stream: bool
    schedule: dict[str, str] | None
    report_if_empty: bool
    created_at: str
    delivered_size: int
    next_due_us: int | None
    failures: int
    last_error: str | None
    principal: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The binding's subscription answer; never the secret."""
        out: dict[str, Any] = {
            "subscriptionID": self.id,
            "createdAt": self.created_at,
            "dest": self.dest,
            "reportIfEmpty": self.report_if_empty,
        }
        if self.stream:
            out["stream"] = True
        if self.schedule is not None:
            out["schedule"] = self.schedule
        if self.last_error:
            out["lastError"] = self.last_error
        return out


_SUB_COLUMNS = (
    "id, owner, query_name, dest, secret, stream, schedule, report_if_empty, created_at, "
    "delivered_size, next_due_us, failures, last_error, principal"
)


def _subscription(row: tuple[Any, ...]) -> Subscription:
    return Subscription(
        id=row[0],
        owner=row[1],
        query_name=row[2],
        dest=row[3],
        secret=row[4],
        stream=bool(row[5]),
        schedule=json.loads(row[6]) if row[6] else None,
        report_if_empty=bool(row[7]),
        created_at=row[8],
        delivered_size=row[9],
        next_due_us=row[10],
        failures=row[11],
        last_error=row[12],
        principal=json.loads(row[13]),
    )


class EpcisRecords(AccountsDatabase):
    """Capture jobs, named queries and subscriptions."""

    # --- capture jobs

    def start_capture(self, owner: str, behaviour: str) -> CaptureJob:
        """A new running job, written before any event is appended, so a job
        is never lost even if the server stops half-way."""
        _, at = self._now()
        job_id = "cj" + secrets.token_hex(12)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO epcis_capture_jobs (id, owner, created_at, running, success, "
                "behaviour, errors, events) VALUES (?, ?, ?, 1, 1, ?, '[]', '[]')",
                (job_id, owner, at, behaviour),
            )
            old = conn.execute(
                "SELECT id FROM epcis_capture_jobs WHERE owner = ? AND running = 0 "
                "ORDER BY created_at DESC, id LIMIT -1 OFFSET ?",
                (owner, MAX_JOBS_KEPT),
            ).fetchall()
            conn.executemany("DELETE FROM epcis_capture_jobs WHERE id = ?", old)
        return CaptureJob(job_id, owner, at, None, True, True, behaviour, [], [])

    def finish_capture(
        self, job_id: str, *, success: bool, errors: list[dict[str, Any]], events: list[Any]
    ) -> None:
        _, at = self._now()
        with self._write() as conn:
            conn.execute(
                "UPDATE epcis_capture_jobs SET running = 0, success = ?, finished_at = ?, "
                "errors = ?, events = ? WHERE id = ?",
                (1 if success else 0, at, json.dumps(errors), json.dumps(events), job_id),
            )

    def capture_job(self, owner: str, job_id: str) -> CaptureJob | None:
        rows = self._read(
            "SELECT id, owner, created_at, finished_at, running, success, behaviour, errors, "
            "events FROM epcis_capture_jobs WHERE owner = ? AND id = ?",
            (owner, job_id),
        )
        return _job(rows[0]) if rows else None

    def capture_jobs(self, owner: str, *, limit: int, offset: int) -> list[CaptureJob]:
        rows = self._read(
            "SELECT id, owner, created_at, finished_at, running, success, behaviour, errors, "
            "events FROM epcis_capture_jobs WHERE owner = ? ORDER BY created_at DESC, id "
            "LIMIT ? OFFSET ?",
            (owner, limit, offset),
        )
        return [_job(row) for row in rows]

    # --- named queries

    def add_query(self, owner: str, name: str, query: dict[str, Any]) -> bool:
        """Store a named query; False if *owner* already has one of that name.
        `ValueError` past MAX_QUERIES_PER_OWNER."""
        _, at = self._now()
        with self._write() as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM epcis_queries WHERE owner = ?", (owner,)
            ).fetchone()
            if count >= MAX_QUERIES_PER_OWNER:
                raise ValueError(f"at most {MAX_QUERIES_PER_OWNER} named queries per party")
            cursor = conn.execute(
                "INSERT OR IGNORE INTO epcis_queries (owner, name, query, created_at) "
                "VALUES (?, ?, ?, ?)",
                (owner, name, json.dumps(query, sort_keys=True), at),
            )
            return cursor.rowcount == 1

    def named_query(self, owner: str, name: str) -> NamedQuery | None:
        rows = self._read(
            "SELECT owner, name, query, created_at FROM epcis_queries WHERE owner = ? AND name = ?",
            (owner, name),
        )
        return (
            NamedQuery(rows[0][0], rows[0][1], json.loads(rows[0][2]), rows[0][3]) if rows else None
        )

    def named_queries(self, owner: str) -> list[NamedQuery]:
        rows = self._read(
            "SELECT owner, name, query, created_at FROM epcis_queries WHERE owner = ? "
            "ORDER BY name",
            (owner,),
        )
        return [NamedQuery(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    def delete_query(self, owner: str, name: str) -> bool:
        """Remove a named query and every subscription to it."""
        with self._write() as conn:
            conn.execute(
                "DELETE FROM epcis_subscriptions WHERE owner = ? AND query_name = ?", (owner, name)
            )
            cursor = conn.execute(
                "DELETE FROM epcis_queries WHERE owner = ? AND name = ?", (owner, name)
            )
            return cursor.rowcount == 1

    # --- subscriptions

    def add_subscription(
        self,
        owner: str,
        query_name: str,
        *,
        dest: str,
        secret: str | None,
        stream: bool,
        schedule: dict[str, str] | None,
        report_if_empty: bool,
        delivered_size: int,
        next_due_us: int | None,
        principal: dict[str, Any],
    ) -> Subscription:
        _, at = self._now()
        sub_id = "sub" + secrets.token_hex(12)
        with self._write() as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM epcis_subscriptions WHERE owner = ?", (owner,)
            ).fetchone()
            if count >= MAX_SUBSCRIPTIONS_PER_OWNER:
                raise ValueError(f"at most {MAX_SUBSCRIPTIONS_PER_OWNER} subscriptions per party")
            conn.execute(
                f"INSERT INTO epcis_subscriptions ({_SUB_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, ?)",
                (
                    sub_id,
                    owner,
                    query_name,
                    dest,
                    secret,
                    1 if stream else 0,
                    json.dumps(schedule) if schedule is not None else None,
                    1 if report_if_empty else 0,
                    at,
                    delivered_size,
                    next_due_us,
                    json.dumps(principal),
                ),
            )
        found = self.subscription(owner, query_name, sub_id)
        assert found is not None
        return found

    def subscription(self, owner: str, query_name: str, sub_id: str) -> Subscription | None:
        rows = self._read(
            f"SELECT {_SUB_COLUMNS} FROM epcis_subscriptions "
            "WHERE owner = ? AND query_name = ? AND id = ?",
            (owner, query_name, sub_id),
        )
        return _subscription(rows[0]) if rows else None

    def subscriptions(
        self, owner: str | None = None, query_name: str | None = None
    ) -> list[Subscription]:
        """One owner's subscriptions to one query, or (no arguments) all of them."""
        if owner is None:
            rows = self._read(f"SELECT {_SUB_COLUMNS} FROM epcis_subscriptions ORDER BY id")
        else:
            rows = self._read(
                f"SELECT {_SUB_COLUMNS} FROM epcis_subscriptions WHERE owner = ? AND "
                "query_name = ? ORDER BY created_at, id",
                (owner, query_name),
            )
        return [_subscription(row) for row in rows]

    def delete_subscription(self, owner: str, query_name: str, sub_id: str) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM epcis_subscriptions WHERE owner = ? AND query_name = ? AND id = ?",
                (owner, query_name, sub_id),
            )
            return cursor.rowcount == 1

    def subscription_delivered(
        self, sub_id: str, *, delivered_size: int, next_due_us: int | None
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE epcis_subscriptions SET delivered_size = ?, next_due_us = ?, "
                "failures = 0, last_error = NULL WHERE id = ?",
                (delivered_size, next_due_us, sub_id),
            )

    def subscription_failed(self, sub_id: str, error: str, next_due_us: int) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE epcis_subscriptions SET failures = failures + 1, last_error = ?, "
                "next_due_us = ? WHERE id = ?",
                (error[:500], next_due_us, sub_id),
            )

    def token_revoked(self, token_id: int | None) -> bool:
        """Whether API token *token_id* is revoked or gone (None: not a token)."""
        if token_id is None:
            return False
        rows = self._read("SELECT revoked_at FROM tokens WHERE id = ?", (token_id,))
        return not rows or rows[0][0] is not None


def _job(row: tuple[Any, ...]) -> CaptureJob:
    return CaptureJob(
        id=row[0],
        owner=row[1],
        created_at=row[2],
        finished_at=row[3],
        running=bool(row[4]),
        success=bool(row[5]),
        behaviour=row[6],
        errors=json.loads(row[7]),
        events=json.loads(row[8]),
    )
