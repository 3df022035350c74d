"""What an entry of the kinds registry is (`Kind`), what its steps are given:
the work buffered in one append transaction (`Transaction`) and, for the audit, who
could sign what as the log itself says (`SignerHistory`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provenance.core.envelope import Envelope
from provenance.store.rows import Identity

if TYPE_CHECKING:
    from provenance.ledger.append import Ledger


@dataclass
class Transaction:
    """Work buffered during one append transaction."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    links: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    nodes: list[tuple[int, int, bytes]] = field(default_factory=list)
    seqs: dict[tuple[int, int], bytes] = field(default_factory=dict)
    ids: dict[bytes, int] = field(default_factory=dict)
    moved: set[int] = field(default_factory=set)
    recalls: dict[int, Envelope] = field(default_factory=dict)  # recalls not yet flushed
    holds: dict[int, Envelope] = field(default_factory=dict)  # holds not yet flushed
    anchors: dict[str, int] = field(default_factory=dict)  # anchor chain -> count, this batch
    disclosures: list[tuple[int, str, str]] = field(default_factory=list)  # idx, digest, text


@dataclass
class SignerHistory:
    """Who could sign what, as the log itself says (not the identities table)."""

    enrolled: dict[str, tuple[int, str]] = field(default_factory=dict)  # did -> (index, role)
    revoked: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # idx, from_us, text
    enrolments: dict[str, dict[str, Any]] = field(default_factory=dict)  # did -> enrol data


# (ledger, envelope, its signer — None only for the genesis enrolment — its log
# index, the transaction) -> ids of the chains the event is filed under. Raises
# RejectedEvent (provenance/core/errors.py) with a reason of
# provenance/ledger/reasons.py; checks everything before it changes anything.
Apply = Callable[["Ledger", Envelope, Identity | None, int, Transaction], list[int]]

# (history, envelope, log index, the registrar's did) -> a problem, or None.
Audit = Callable[[SignerHistory, Envelope, int, str | None], str | None]


@dataclass(frozen=True)
class Kind:
    """One event kind's effects. Its `data` schema and who may sign it are
    the pure validation of provenance/core/kinds.py; here is what it does."""

    name: str
    apply: Apply  # Ledger.append (and so the audit's replay): rules, then state
    audit: Audit | None = None  # the audit's replay of who may sign, if it changes that
