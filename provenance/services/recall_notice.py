"""Recall notices: the retained MQTT message on `provenance/v1/recalls/{gtin}/{lot}`
that tells gateways in shops and clinics whether a lot is recalled now (pure).

A notice is the lot's *current* state, not one event: every recall in force
(direct, or through an ancestor the regulator named) and the recalls lifted
since. Publishing the current state, retained, means a subscriber that comes
late, or a notice published twice, still shows the truth; after a lift the
notice says `"recalled": false` and keeps the lifted recalls for the record.

The notice speaks for regulators, so it carries their word (v2,
docs/protocol.md §11): each recall and lift with the regulator's envelope exactly
as logged and its log index, the registrar's enrolment of each regulator, the
checkpoint the notice is as of and an inclusion proof of every envelope in it
(`add_evidence`). Subscribers check it offline with
`provenance.core.notice.verify_recall_notice` (`provenance verify --notice`).

`{lot}` in the topic is the lot as it appears in the canonical lot URI (GS1
percent-encoding), so that `/`, `+` or `#` in a lot code cannot break the topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from provenance.core import gs1, topics
from provenance.core.bundle import b64
from provenance.core.jcs import canonicalize
from provenance.core.merkle import ReadOnce, inclusion_proof
from provenance.core.notice import RECALL_FORMAT
from provenance.ledger.lineage import RecallRecord, held
from provenance.ledger.proofs import checkpoint_body
from provenance.store.db import Store
from provenance.store.rows import LotState


def notice_topic(lot_uri: str) -> str:
    """`provenance/v1/recalls/{gtin}/{lot}` for a canonical lot URI."""
    gtin, _ = gs1.parse_lot_uri(lot_uri)
    return topics.recall_topic(gtin, lot_uri.rsplit("/", 1)[1])


def build_notice(
    lot: LotState, records: Sequence[RecallRecord], *, origin: str, log_size: int
) -> dict[str, Any]:
    """The notice for *lot* given every recall that reached it (`recall_records`).
    *origin* names the log, *log_size* the log state the notice describes."""
    active = [record for record in records if record.active]
    lifted = [record for record in records if not record.active]
    remaining = held(lot)
    return {
        "format": RECALL_FORMAT,
        "lot": lot.uri,
        "gtin": lot.gtin,
        "lot_code": lot.lot,
        "product": lot.product,
        "recalled": bool(active),
        "recalls": [record.to_json() for record in active],
        "lifted": [record.to_json() for record in lifted],
        "custodian": {
            "did": lot.custodian_did,
            "name": lot.custodian_name,
            "role": lot.custodian_role,
        },
        "location": lot.location,
        "held": None if remaining is None else remaining.to_json(),
        "log": {"origin": origin, "size": log_size},
    }


class Evidence:
    """The signed envelopes, enrolments and proofs of the notices of one round,
    read from *store* inside the caller's snapshot (shared by the lots: one
    recall upstream reaches many)."""

    def __init__(self, store: Store):
        self.store = store
        note = store.latest_checkpoint()
        self.checkpoint = None
        if note is not None and checkpoint_body(note).size == store.log_size():
            self.checkpoint = note
        self.size = store.log_size()
        self.nodes = ReadOnce(store)
        self.envelopes: dict[int, dict[str, Any]] = {}
        self.proofs: dict[int, list[str]] = {}
        self.enrolments: dict[str, dict[str, Any]] = {}

    def envelope(self, index: int) -> dict[str, Any]:
        if index not in self.envelopes:
            stored = self.store.event_at(index)
            if stored is None:
                raise LookupError(f"no event at log index {index}")
            self.envelopes[index] = stored.envelope.to_json()
            if self.checkpoint is not None:
                self.proofs[index] = [b64(h) for h in inclusion_proof(self.nodes, index, self.size)]
        return self.envelopes[index]

    def enrolment(self, did: str) -> dict[str, Any] | None:
        if did not in self.enrolments:
            chain = self.store.chain_by_subject(did)
            events = [] if chain is None else self.store.chain_events(chain[0])
            for stored in events:
                envelope = stored.envelope
                if envelope.kind == "enrol" and envelope.data.get("subject") == did:
                    self.envelope(stored.index)
                    self.enrolments[did] = {
                        "log_index": stored.index,
                        "envelope": self.envelopes[stored.index],
                    }
                    break
        return self.enrolments.get(did)


def add_evidence(notice: dict[str, Any], evidence: Evidence) -> dict[str, Any]:
    """*notice* with the regulators' word in it: each recall's and lift's envelope,
    each regulator's enrolment, and the checkpoint with an inclusion proof of each."""
    used: list[int] = []
    regulators: list[str] = []
    for record in [*notice["recalls"], *notice["lifted"]]:
        record["envelope"] = evidence.envelope(record["log_index"])
        used.append(record["log_index"])
        regulators.append(record["regulator"]["did"])
        lift = record.get("lifted")
        if lift is not None:
            lift["envelope"] = evidence.envelope(lift["log_index"])
            used.append(lift["log_index"])
            regulators.append(lift["regulator"]["did"])
    enrolments = {}
    for did in dict.fromkeys(regulators):
        enrolment = evidence.enrolment(did)
        if enrolment is not None:
            enrolments[did] = enrolment
            used.append(enrolment["log_index"])
    notice["enrolments"] = enrolments
    if evidence.checkpoint is not None:
        notice["checkpoint"] = evidence.checkpoint
        notice["proofs"] = {str(index): evidence.proofs[index] for index in sorted(set(used))}
    return notice


def notice_bytes(notice: dict[str, Any]) -> bytes:
    """The payload: RFC 8785 canonical JSON (byte-identical for the same state)."""
    return canonicalize(notice)


__all__ = ["Evidence", "add_evidence", "build_notice", "notice_bytes", "notice_topic"]
