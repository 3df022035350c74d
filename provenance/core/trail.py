"""Audit trails, hash-chained and anchored in the log (pure; docs/protocol.md §11).

Each entry's hash is ``SHA-256(previous hash (64 hex digits, ASCII) ‖ the entry's
RFC 8785 JSON)``, the first entry's previous hash being 64 zeros. At a fixed
cadence the operator signs an `anchor` event (`{trail, count, head}`: the trail
held `count` entries whose chain ended at `head`) into the public log; from
then on the operator cannot rewrite, remove or reorder any of those entries,
nor rebuild the trail with every hash recomputed, without `check_trail`
noticing: it recomputes the chain and compares it with every anchor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from provenance.core.jcs import canonicalize

GENESIS = "0" * 64


def entry_hash(previous: str, entry: Mapping[str, Any]) -> str:
    """The hash of one trail entry after the entry whose hash is *previous*."""
    return hashlib.sha256(previous.encode("ascii") + canonicalize(dict(entry))).hexdigest()


@dataclass(frozen=True)
class TrailEntry:
    """One entry as stored: its row id, its fields (what the hash covers) and the
    hash stored beside it."""

    id: int
    fields: Mapping[str, Any]
    stored_hash: str


@dataclass(frozen=True)
class Anchor:
    """An `anchor` event as logged: the trail had *count* entries ending at *head*."""

    count: int
    head: str
    log_index: int
    time: str


@dataclass
class TrailReport:
    checked: int = 0  # entries recomputed
    anchors: int = 0  # anchors that matched
    anchored: int = 0  # entries covered by the last matching anchor
    problem: str | None = None  # the first thing that does not match

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def unanchored(self) -> int:
        return self.checked - self.anchored


def check_trail(entries: Iterable[TrailEntry], anchors: Iterable[Anchor]) -> TrailReport:
    """Recompute the trail's chain in order and hold it against *anchors*; stops at
    the first problem, naming the entry (its id and position) where it can: an
    edited entry whose hash was not recomputed, a removed row (ids never skip),
    or, when every hash was recomputed, the entries between the last anchor
    that matches and the first that does not."""
    pending = sorted(anchors, key=lambda anchor: anchor.count)
    report = TrailReport()
    previous, last_id, position = GENESIS, 0, 0
    since = (1, None)  # (position, id) of the first entry after the last matching anchor
    for entry in entries:
        position += 1
        if entry.id != last_id + 1:
            gone = (
                f"audit entry {last_id + 1} is"
                if entry.id == last_id + 2
                else f"audit entries {last_id + 1}–{entry.id - 1} are"
            )
            report.problem = f"{gone} missing (removed): ids never skip"
            return report
        recomputed = entry_hash(previous, entry.fields)
        if recomputed != entry.stored_hash:
            report.problem = (
                f"audit entry {entry.id} (#{position}) was changed, or one before it removed: "
                "its stored hash does not follow from the entries before it"
            )
            return report
        previous, last_id, report.checked = recomputed, entry.id, position
        if since[1] is None:
            since = (position, entry.id)
        while pending and pending[0].count == position:
            anchor = pending.pop(0)
            if anchor.head != recomputed:
                first = since[1]
                where = (
                    f"audit entry {first}"
                    if first == entry.id
                    else f"one of audit entries {first}–{entry.id} (#{since[0]}–#{position})"
                )
                report.problem = (
                    f"{where} was rewritten or removed: the anchor at log index "
                    f"{anchor.log_index} ({anchor.time}) says entry #{position} ends the chain at "
                    f"{anchor.head}, the trail gives {recomputed}"
                )
                return report
            report.anchors += 1
            report.anchored = position
            since = (position + 1, None)
    if pending:
        anchor = pending[-1]
        report.problem = (
            f"the trail has {position} entries but the anchor at log index {anchor.log_index} "
            f"({anchor.time}) covers {anchor.count}: entries #{position + 1}–#{anchor.count} "
            "were removed"
        )
    return report


__all__ = ["GENESIS", "Anchor", "TrailEntry", "TrailReport", "check_trail", "entry_hash"]
