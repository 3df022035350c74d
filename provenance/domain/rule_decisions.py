"""What the rules decided about a lot, as the scan page, the regulator and the notices show it.

:class:`Hold`, :class:`Flag` and :class:`Release` are the holds, flags and releases in force
for a lot (with who decided, why and when), as the ledger records them; an alert notice
(:func:`build_notice`, :func:`notice_bytes`, format ``provenance-alert-notice/v1``) carries a
lot's holds and newest flags to the retained MQTT topic :func:`alert_topic` names, in RFC 8785
canonical JSON so that the same state gives the same bytes. Pure: values in, values out
(docs/rules.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from provenance.core import gs1, topics
from provenance.core.jcs import canonicalize
from provenance.domain.custody import Party

__all__ = [
    "Flag",
    "Hold",
    "Release",
    "alert_topic",
    "build_notice",
    "notice_bytes",
]

NOTICE_FORMAT = "provenance-alert-notice/v1"


MAX_NOTICE_FLAGS = 20  # newest flags carried by an alert notice


# --- what the page, the regulator and the notices show


@dataclass(frozen=True)
class Release:
    event_index: int
    event_id: str
    time: str
    signer: Party
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "by": _party_json(self.signer),
            "time": self.time,
            "event_id": self.event_id,
            "log_index": self.event_index,
        }


@dataclass(frozen=True)
class Hold:
    """A hold of a lot by a rule: in force until `release`."""

    lot: str
    rule: str
    reason: str
    evidence: dict[str, Any]
    time: str
    event_index: int
    event_id: str
    signer: Party
    release: Release | None = None

    @property
    def active(self) -> bool:
        return self.release is None

    def to_json(self) -> dict[str, Any]:
        out = {
            "lot": self.lot,
            "rule": self.rule,
            "reason": self.reason,
            "evidence": self.evidence,
            "by": _party_json(self.signer),
            "time": self.time,
            "event_id": self.event_id,
            "log_index": self.event_index,
            "active": self.active,
        }
        if self.release is not None:
            out["released"] = self.release.to_json()
        return out


@dataclass(frozen=True)
class Flag:
    """A signal raised about a lot by a rule (it stops nothing)."""

    lot: str
    rule: str
    signal: str
    key: str
    reason: str
    evidence: dict[str, Any]
    time: str
    event_index: int
    event_id: str
    signer: Party

    def to_json(self) -> dict[str, Any]:
        return {
            "lot": self.lot,
            "rule": self.rule,
            "signal": self.signal,
            "key": self.key,
            "reason": self.reason,
            "evidence": self.evidence,
            "by": _party_json(self.signer),
            "time": self.time,
            "event_id": self.event_id,
            "log_index": self.event_index,
        }


def _party_json(party: Party) -> dict[str, Any]:
    return {"did": party.did, "name": party.name, "role": party.role}


def alert_topic(lot_uri: str) -> str:
    """`provenance/v1/alerts/{gtin}/{lot}`, the lot as percent-encoded in its URI."""
    gtin, _ = gs1.parse_lot_uri(lot_uri)
    return f"{topics.ROOT}/alerts/{gtin}/{lot_uri.rsplit('/', 1)[1]}"


def build_notice(
    lot_uri: str,
    product: str,
    holds: Sequence[Hold],
    flags: Sequence[Flag],
    *,
    origin: str,
    log_size: int,
) -> dict[str, Any]:
    """The retained alert notice of a lot: its current state (holds in force, the
    newest flags), so a late subscriber or a repeat still tells the truth."""
    gtin, lot_code = gs1.parse_lot_uri(lot_uri)
    active = [hold for hold in holds if hold.active]
    return {
        "format": NOTICE_FORMAT,
        "lot": lot_uri,
        "gtin": gtin,
        "lot_code": lot_code,
        "product": product,
        "held": bool(active),
        "holds": [hold.to_json() for hold in active],
        "flags": [flag.to_json() for flag in list(flags)[-MAX_NOTICE_FLAGS:]],
        "log": {"origin": origin, "size": log_size},
    }


def notice_bytes(notice: dict[str, Any]) -> bytes:
    """RFC 8785 canonical JSON: the same state gives the same bytes."""
    return canonicalize(notice)
