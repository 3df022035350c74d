"""The anchorer: anchors an audit trail in the public log every *every* seconds,
in a thread of its own (`provenance serve --anchor-every`; docs/portal.md).

Bounded: at most one anchor per trail per round, a round at most every
MIN_EVERY_S, and `stop()` waits for the round in progress. Each anchor is one
transaction (`provenance.ledger.trail_anchors.anchor_trail`), so a stopped
anchorer leaves a whole anchor or none.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.errors import ProvenanceError
from provenance.ledger.append import Ledger
from provenance.ledger.trail_anchors import Head, anchor_trail
from provenance.store.errors import DATABASE_ERRORS

log = logging.getLogger(__name__)

DEFAULT_EVERY_S = 300.0  # `serve`: the portal trail's head goes into the log every 5 min
MIN_EVERY_S = 0.05  # the shortest cadence accepted: a bound on anchors per second
MAX_EVERY_S = 86_400.0  # the longest: a day (an unanchored tail is bounded too)
STOP_TIMEOUT_S = 30.0  # how long `stop()` waits for a round in progress


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
        if not MIN_EVERY_S <= self.every <= MAX_EVERY_S:
            raise ValueError(f"the anchor cadence must be {MIN_EVERY_S} to {MAX_EVERY_S} s")
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
        try:
            ledger = self.open_ledger()
        except (ProvenanceError, OSError, *DATABASE_ERRORS) as exc:
            self.failures += 1
            log.error("anchor: cannot open the ledger, the trail is not anchored: %s", exc)
            return
        try:
            while not self._stop.wait(self.every):
                try:
                    if anchor_trail(ledger, self.key, self.trail, self.head) is not None:
                        self.anchored += 1
                except (ProvenanceError, OSError, *DATABASE_ERRORS) as exc:
                    self.failures += 1
                    log.warning("anchor: round failed, will retry: %s", exc)
        finally:
            ledger.store.close()


__all__ = ["DEFAULT_EVERY_S", "MAX_EVERY_S", "MIN_EVERY_S", "STOP_TIMEOUT_S", "Anchorer"]
