"""The audit's replays of the log (provenance/ledger/audit.py runs them):
who could sign what, rebuilt from the registry events through each kind's
audit step in the kinds registry; the identities table checked against that;
and every event but readings appended again, through `Ledger.append` and so
the same kinds registry, to an empty store whose derived tables must equal
the store's.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.errors import ProvenanceError
from provenance.core.fields import text_as_signed
from provenance.ledger.append import Ledger
from provenance.ledger.kinds import KINDS, SIGNER_KINDS
from provenance.ledger.kinds.base import SignerHistory
from provenance.store.db import Store
from provenance.store.disclosures import disclosures_of
from provenance.store.migrations import (
    ACCESS_RULES_FROM,
    GLN_RULES_FROM,
    QUANTITY_RULES_FROM,
    RECALL_RULES_FROM,
    TIME_RULES_FROM,
)
from provenance.store.replay import STATE_TABLES
from provenance.store.rows import StoredEvent


class Problems(Protocol):
    """Where the replays put what they find (audit.Report)."""

    def add(self, message: str, event_id: str | None = None, index: int | None = None) -> None: ...


def signer_history(store: Store, report: Problems) -> SignerHistory:
    """Replay the events that change who may sign (read cheaply by kind), each
    through its kind's audit step."""
    history = SignerHistory()
    rows = store.event_rows(kinds=SIGNER_KINDS).fetchall()
    registrar = store.get_meta("registrar")
    for row in rows:
        try:
            stored = store.event_from_row(row)
            envelope = stored.envelope
            audit = KINDS[envelope.kind].audit
        except (ProvenanceError, ValueError, TypeError) as exc:
            report.add(f"registry event cannot be read back: {exc}", None, row[0])
            continue
        assert audit is not None  # SIGNER_KINDS are the kinds with an audit step
        problem = audit(history, envelope, stored.index, registrar)
        if problem is not None:
            report.add(problem, envelope.event_id, stored.index)
    return history


def check_identities(store: Store, registry: SignerHistory, report: Problems) -> None:
    """The identities table must be exactly what the log's enrolments and
    revocations say: a key swapped in the table is caught before it is used."""
    table = {identity.did: identity for identity in store.identities()}
    by_id = {identity.id: identity.did for identity in table.values()}
    for did, data in registry.enrolments.items():
        identity = table.pop(did, None)
        if identity is None:
            report.add(
                f"{did} ({data.get('name')}) is enrolled in the log but missing from the "
                "identities table",
                None,
                data["index"],
            )
            continue
        owner = by_id.get(identity.owner) if identity.owner is not None else None
        revoked = registry.revoked.get(did)
        expected = (
            data.get("type"),
            data.get("name"),
            data.get("role"),
            data.get("owner"),
            data["index"],
            revoked[2] if revoked else None,
        )
        actual = (
            identity.type,
            identity.name,
            identity.role,
            owner,
            identity.enrol_event,
            identity.revoked_from,
        )
        if expected != actual:
            report.add(
                f"identities table entry for {identity.name!r} differs from its enrolment "
                f"in the log (table {actual}, log {expected}): the registry was edited",
                None,
                data["index"],
            )
    for did, identity in table.items():
        report.add(
            f"identities table holds {identity.name!r} ({did}), which no enrolment in the "
            "log made: a key was swapped or added outside the ledger"
        )


def _as_sent(store: Store, stored: StoredEvent) -> dict[str, Any]:
    """A stored event as it was appended: the envelope, with its disclosures
    (docs/protocol.md §14) for a v2 one."""
    envelope = stored.envelope.to_json()
    if stored.envelope.version == 1:
        return envelope
    return {"envelope": envelope, "disclosures": disclosures_of(store, stored.index)}


def check_state(store: Store, report: Problems) -> None:
    """Replay every event but readings through the ledger's own rules into an
    empty in-memory store, then compare the derived tables. Catches edits of
    lots, custody, recall and hold state, flags, attachments and shipments — and any event the
    rules would refuse (the operator's ledger may have been misled by such an
    edit into accepting it)."""
    recorded = store.get_meta(TIME_RULES_FROM)
    if recorded is not None and int(recorded) > store.log_size():
        report.add(
            f"meta {TIME_RULES_FROM} is {recorded}, beyond the log ({store.log_size()} events): "
            "the time rules were switched off for events to come; it was edited"
        )
    recorded = store.get_meta(GLN_RULES_FROM)
    if recorded is not None and int(recorded) > store.log_size():
        report.add(
            f"meta {GLN_RULES_FROM} is {recorded}, beyond the log ({store.log_size()} events): "
            "the GLN check digit rule was switched off for events to come; it was edited"
        )
    replica = Store.memory()
    with replica.transaction():
        for key in ("origin", "registrar"):
            replica.set_meta(key, store.get_meta(key) or "")
        # The recall, access and time rules apply from log indexes of the store;
        # the replica's log lacks the readings, so the same boundaries are at
        # smaller indexes there.
        for boundary in (
            RECALL_RULES_FROM,
            ACCESS_RULES_FROM,
            TIME_RULES_FROM,
            QUANTITY_RULES_FROM,
        ):
            recorded = store.get_meta(boundary)
            if recorded is None and boundary != RECALL_RULES_FROM:
                recorded = str(store.log_size())  # not migrated yet: all of it is from before
            rules_from = int(recorded or 0)
            replica.set_meta(
                boundary, str(store.count_events_before(rules_from, other_than="reading"))
            )
    far_future = 250_000_000_000_000_000  # µs, year ~9892: no event is "in the future"
    ledger = Ledger(
        replica, Ed25519PrivateKey.generate(), clock=lambda: far_future, verify_threads=1
    )
    rows = store.event_rows(kinds=("reading",), exclude=True)
    batch: list[StoredEvent] = []
    # Events logged before the GLN check digit rule (docs/protocol.md §15) were
    # accepted with 13 digits alone: they are replayed with the schema rules
    # added later off, those after it with every rule.
    schema_rules_from = int(store.get_meta(GLN_RULES_FROM) or store.log_size())

    def replay() -> None:
        # As JSON, so that the replay validates every field again; a v2 event
        # with the disclosures the store keeps, which must match its digests.
        as_signed = batch[0].index < schema_rules_from
        with text_as_signed() if as_signed else nullcontext():
            results = ledger.append([_as_sent(store, stored) for stored in batch])
        for stored, result in zip(batch, results, strict=True):
            if result.status == "rejected":
                report.add(
                    f"the ledger's rules refuse this {stored.envelope.kind} on replay "
                    f"({result.reason}: {result.message})",
                    stored.envelope.event_id,
                    stored.index,
                )
        batch.clear()

    for row in rows:
        try:
            stored = store.event_from_row(row)
        except (ProvenanceError, ValueError, TypeError):
            continue  # reported by the event checks
        if batch and (batch[0].index < schema_rules_from) != (stored.index < schema_rules_from):
            replay()  # one batch never spans the boundary
        batch.append(stored)
        if len(batch) == 500:
            replay()
    if batch:
        replay()
    for table, describe in STATE_TABLES.items():
        derived, stored_rows = set(describe(replica)), set(describe(store))
        for row in sorted(stored_rows - derived, key=repr)[:20]:
            report.add(f"{table} table holds {row}, which the log does not produce: it was edited")
        for row in sorted(derived - stored_rows, key=repr)[:20]:
            report.add(f"{table} table lacks {row}, which the log produces: it was edited")
    ledger.close()
    replica.close()
