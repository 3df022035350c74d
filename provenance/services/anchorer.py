"""Anchoring audit trails in the public log (docs/protocol.md §11, docs/portal.md).

`anchor_trail` signs, with the operator's registrar key (or the rules key), an
`anchor` event `{trail, count, head}` stating the trail's current head, when the
trail grew since its last anchor; `Anchorer` does that every *every* seconds in
a thread of its own (`provenance serve --anchor-every`), bounded: at most one
anchor per trail per round, a round at most every MIN_EVERY_S, and `stop()`
waits for the round in progress. An anchor is one event appended in one
transaction, so a stopped anchorer leaves either the whole anchor or none.

`verify_anchored` holds the trail against every anchor the log has for it
(`provenance portal audit --verify`): the operator can no longer rebuild the
trail unnoticed, only refuse to anchor its newest entries (which `verify`
reports as not yet anchored).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.errors import ProvenanceError
from provenance.core.kinds import REGISTRAR, RULES, anchor_chain
from provenance.core.signing import did_of
from provenance.core.trail import Anchor, TrailEntry, TrailReport, check_trail
from provenance.ledger.append import Appended, Ledger
from provenance.ledger.signer import Signer, Unsigned
from provenance.store.db import Store

log = logging.getLogger(__name__)

DEFAULT_EVERY_S = 300.0  # `serve`: the portal trail's head goes into the log every 5 min
MIN_EVERY_S = 0.05  # the shortest cadence accepted: a bound on anchors per second
STOP_TIMEOUT_S = 30.0  # how long `stop()` waits for a round in progress

Head = Callable[[], tuple[int, str]]  # (entries, head hash) of a trail


def last_anchor(store: Store, did: str, trail: str) -> int:
    """The count the signer *did* last anchored *trail* at (0: never)."""
    found = store.chain_by_subject(anchor_chain(did, trail))
    if found is None or found[3] == 0:
        return 0
    (stored,) = store.chain_events(found[0], from_pos=found[3] - 1)
    return int(stored.envelope.data["count"])


def anchor_trail(ledger: Ledger, key: Ed25519PrivateKey, trail: str, head: Head) -> Appended | None:
    """Anchor *trail* at its current *head* if it grew since its last anchor by
    this key; None when there was nothing new. Raises ProvenanceError when the
    ledger refuses the anchor (the message says why)."""
    count, digest = head()
    if count == 0 or count <= last_anchor(ledger.store, did_of(key), trail):
        return None
    event = Unsigned("anchor", {"trail": trail, "count": count, "head": digest})
    (result,) = Signer(ledger, key).sign_and_append([event], atomic=True, source="anchor")
    if result.status != "accepted":
        raise ProvenanceError(f"the log refused the anchor: {result.reason}: {result.message}")
    log.info("anchor: trail %s anchored at %d entries (log index %s)", trail, count, result.index)
    return result


@dataclass
class Anchorer:
    """Anchors *trail* every *every* seconds through a ledger that *open_ledger*
    opens in the anchorer's own thread (SQLite connections stay in theirs)."""

    open_ledger: Callable[[], Ledger]
    key: Ed25519PrivateKey
    trail: str
    head: Head
    every: float = DEFAULT_EVERY_S

    def __post_init__(self) -> None:
        if not self.every >= MIN_EVERY_S:
            raise ValueError(f"the anchor cadence must be at least {MIN_EVERY_S} s")
        self.anchored = 0  # anchors appended
        self.failures = 0  # rounds that failed (logged; the next round tries again)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Anchorer:
        self._thread = threading.Thread(target=self._run, name=f"anchor-{self.trail}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop after the round in progress; True when the thread ended in time."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        ledger = self.open_ledger()
        try:
            while not self._stop.wait(self.every):
                try:
                    if anchor_trail(ledger, self.key, self.trail, self.head) is not None:
                        self.anchored += 1
                except (ProvenanceError, OSError, sqlite3.Error) as exc:
                    self.failures += 1
                    log.warning("anchor: round failed, will retry: %s", exc)
        finally:
            ledger.store.close()


def trail_anchors(store: Store, trail: str) -> list[Anchor]:
    """Every anchor of *trail* in the log, by the registrar and any rules key."""
    anchors = []
    with store.snapshot():
        for identity in store.identities():
            if identity.type not in (REGISTRAR, RULES):
                continue
            found = store.chain_by_subject(anchor_chain(identity.did, trail))
            if found is None:
                continue
            for stored in store.chain_events(found[0]):
                data = stored.envelope.data
                anchors.append(
                    Anchor(data["count"], data["head"], stored.index, stored.envelope.time)
                )
    return anchors


def verify_anchored(entries: list[TrailEntry], store: Store, trail: str) -> TrailReport:
    """The trail's chain recomputed and held against every anchor in the log."""
    return check_trail(entries, trail_anchors(store, trail))


__all__ = [
    "DEFAULT_EVERY_S",
    "MIN_EVERY_S",
    "Anchorer",
    "anchor_trail",
    "last_anchor",
    "trail_anchors",
    "verify_anchored",
]
