"""The portal's one way into the ledger: `Ledger.append`, behind a lock.

The consumer pages read the ledger through read-only connections; portal and
API actions write through one `Ledger` per app (a `Ledger` is not thread-safe,
so the web server's threads take turns). It needs the log key to sign the
checkpoint of each commit: ``{KEYS}/log.pem``, as the CLI and the ingest
service use. Without it the portal still reads, and every action answers 503
with what to configure.

Signing with a server-held party key and choosing its next seq (a
`provenance.ledger.signer.Signer`) happen under the same lock, so two requests
of one party never pick the same seq.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.errors import KeyFileError, ProvenanceError
from provenance.core.kinds import validate_data
from provenance.core.timefmt import format_time
from provenance.infra.keystore import KeyStore
from provenance.ledger.append import Appended, Ledger
from provenance.ledger.signer import Signer, Unsigned
from provenance.store.db import Store

LOG_KEY = "log"

Item = tuple[str, list[str] | None, dict[str, Any]]  # kind, batches, data


class WriteUnavailable(ProvenanceError):
    """This server cannot write to the ledger (no log key, no ledger)."""


class LedgerWriter:
    def __init__(
        self,
        database: str | Path,
        keys_dir: str | Path,
        clock: Callable[[], int],
    ):
        self.database = Path(database)
        self.keys_dir = Path(keys_dir)
        self.clock = clock
        self._lock = threading.Lock()
        self._ledger: Ledger | None = None
        self._prepared: dict[str, int] = {}  # did -> highest seq handed out by `prepare`

    def _open(self) -> Ledger:
        if self._ledger is None:
            keys = KeyStore(self.keys_dir)
            if not keys.exists(LOG_KEY):
                raise WriteUnavailable(
                    f"this server cannot write to the ledger: no log key at "
                    f"{keys.path(LOG_KEY)} (start `provenance serve` with the --keys folder "
                    "the ledger was made with)"
                )
            try:
                log_key = keys.load(LOG_KEY)
                store = Store(self.database, create=False)
                self._ledger = Ledger(store, log_key, clock=self.clock)
            except (KeyFileError, ProvenanceError) as exc:
                raise WriteUnavailable(f"this server cannot write to the ledger: {exc}") from exc
        return self._ledger

    def available(self) -> bool:
        return KeyStore(self.keys_dir).exists(LOG_KEY)

    def sign_and_append(
        self,
        key: Ed25519PrivateKey,
        items: Sequence[Item],
        *,
        source: str,
        time: str | None = None,
    ) -> list[Appended]:
        """Sign *items* as the holder of *key* with its next seqs, dated *time*
        (RFC 3339 UTC, e.g. a lot's production) or now, and append them all or
        nothing."""
        events = [Unsigned(kind, data, lots) for kind, lots, data in items]
        with self._lock:
            signer = Signer(self._open(), key, clock=self.clock)
            return signer.sign_and_append(events, atomic=True, source=source, time=time)

    def prepare(
        self, did: str, items: Sequence[Item], *, time: str | None = None
    ) -> list[dict[str, Any]]:
        """Unsigned envelopes of *items* for the holder of *did* to sign
        elsewhere (its browser): its next seqs, dated *time* or now, each
        `data` checked as the ledger will check it. Nothing is stored. Seqs
        handed out here are not handed out again by this server, so two
        actions prepared before either is signed do not collide (an action
        never signed leaves a gap, which the protocol allows)."""
        when = time or format_time(self.clock())
        for kind, lots, data in items:
            validate_data(kind, data, tuple(lots) if lots else None)
        with self._lock:
            seq = max(self._open().next_seq(did), self._prepared.get(did, -1) + 1)
            self._prepared[did] = seq + len(items) - 1
        envelopes = []
        for offset, (kind, lots, data) in enumerate(items):
            envelope: dict[str, Any] = {
                "v": 1,
                "kind": kind,
                "signer": did,
                "seq": seq + offset,
                "time": when,
            }
            if lots:
                envelope["batches"] = list(lots)
            envelope["data"] = data
            envelopes.append(envelope)
        return envelopes

    def run(self, work: Callable[[Ledger], Any]) -> Any:
        """*work* with the ledger, under the lock (an EPCIS capture signs and
        appends its events through `epcis_import.import_events` this way)."""
        with self._lock:
            return work(self._open())

    def append(self, items: Sequence[Any], *, atomic: bool, source: str) -> list[Appended]:
        """Append envelopes that were signed elsewhere, as they are."""
        with self._lock:
            return self._open().append(items, atomic=atomic, source=source)

    def close(self) -> None:
        with self._lock:
            if self._ledger is not None:
                self._ledger.close()
                self._ledger.store.close()
                self._ledger = None
