"""Recall notices: the retained MQTT message on `provenance/v1/recalls/{gtin}/{lot}`
that tells gateways in shops and clinics whether a lot is recalled now (pure).

A notice is the lot's *current* state, not one event: every recall in force
(direct, or through an ancestor the regulator named) and the recalls lifted
since. Publishing the current state, retained, means a subscriber that comes
late, or a notice published twice, still shows the truth; after a lift the
notice says `"recalled": false` and keeps the lifted recalls for the record.

`{lot}` in the topic is the lot as it appears in the canonical lot URI (GS1
percent-encoding), so that `/`, `+` or `#` in a lot code cannot break the topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from provenance.core import gs1, topics
from provenance.core.jcs import canonicalize
from provenance.ledger.lineage import RecallRecord, held
from provenance.store.rows import LotState

FORMAT = "provenance-recall-notice/v1"


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
        "format": FORMAT,
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


def notice_bytes(notice: dict[str, Any]) -> bytes:
    """The payload: RFC 8785 canonical JSON (byte-identical for the same state)."""
    return canonicalize(notice)


__all__ = ["FORMAT", "build_notice", "notice_bytes", "notice_topic"]
