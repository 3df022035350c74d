"""The ledger's log as C2SP tlog-tiles in a folder (docs/protocol.md, "Tiles").

`publish_tiles(store, directory)` catches the folder up with the store's newest
signed checkpoint: it reads only the leaves the folder lacks, through the store's
public methods, and checks each event's stored leaf hash against its envelope.
`TileFollower` does that in a thread of its own whenever the log grew (`provenance
ingest --tiles DIR`, `provenance serve --tiles DIR`); `provenance log tiles --out
DIR` does it once.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from provenance.core.errors import ProvenanceError
from provenance.core.merkle import hash_leaf
from provenance.infra.tile_files import TileDirectory, TileError, note_checkpoint
from provenance.store.cosignatures import shown_checkpoint
from provenance.store.db import Store

log = logging.getLogger(__name__)

FOLLOW_INTERVAL_S = 0.5  # how often the follower looks for a newer checkpoint
STOP_TIMEOUT_S = 30.0


def store_leaves(store: Store) -> Callable[[int, int], list[tuple[bytes, bytes]]]:
    """leaves(begin, end) for TileDirectory.catch_up: each event's id and canonical
    envelope bytes, after checking that the id hashes to the stored leaf."""

    def leaves(begin: int, end: int) -> list[tuple[bytes, bytes]]:
        out = []
        for event in store.events(begin, end):
            envelope = event.envelope
            if hash_leaf(envelope.id_bytes) != event.leaf:
                raise TileError(
                    f"event {event.index}'s stored leaf hash is not its envelope's: "
                    "run `provenance verify`"
                )
            out.append((envelope.id_bytes, envelope.canonical_bytes()))
        return out

    return leaves


def checkpoint_to_publish(store: Store) -> str | None:
    """The newest signed checkpoint, with its witnesses' cosignatures once the
    quorum cosigned it (docs/protocol.md)."""
    note = store.latest_checkpoint()
    if note is None:
        return None
    shown = shown_checkpoint(store)
    if shown is not None and shown.size == note_checkpoint(note).size:
        return shown.note
    return note


def publish_tiles(store: Store, directory: TileDirectory) -> int:
    """Catch ``directory`` up with the store's newest checkpoint; the leaves added."""
    note = checkpoint_to_publish(store)
    if note is None:
        raise TileError("the log has no signed checkpoint yet: run `provenance init`")
    return directory.catch_up(note, store_leaves(store))


class TileFollower:
    """Keeps a tiles folder caught up with a ledger, in its own thread: every
    ``interval`` seconds (or at once after :meth:`poke`), on a read-only store
    opened in that thread. Errors are logged (once per distinct one) and retried
    at the next round; the service that runs it keeps running."""

    def __init__(
        self, db_path: str | Path, directory: TileDirectory, interval: float = FOLLOW_INTERVAL_S
    ):
        self.db_path = Path(db_path)
        self.directory = directory
        self.interval = interval
        self.error: str | None = None
        self.rounds = 0
        self._wake = threading.Condition()
        self._stopped = False
        self._poked = False
        self._thread = threading.Thread(target=self._main, name="tiles", daemon=True)

    def start(self) -> TileFollower:
        self._thread.start()
        return self

    def poke(self) -> None:
        """The log may have grown: look now."""
        with self._wake:
            self._poked = True
            self._wake.notify_all()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop after the round in progress (one last round catches up)."""
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        self._thread.join(timeout)

    def _main(self) -> None:
        store: Store | None = None
        try:
            while True:
                store = self._round(store)
                with self._wake:
                    if not self._stopped and not self._poked:
                        self._wake.wait(self.interval)
                    self._poked = False
                    if self._stopped:
                        break
            store = self._round(store)  # after stop(): what was committed until then
        finally:
            if store is not None:
                store.close()

    def _round(self, store: Store | None) -> Store | None:
        try:
            if store is None:
                store = Store(self.db_path, create=False, readonly=True)
            added = publish_tiles(store, self.directory)
        except (ProvenanceError, sqlite3.Error, OSError) as exc:
            if str(exc) != self.error:
                log.warning("tiles: %s not caught up: %s", self.directory.root, exc)
            self.error = str(exc)
            if store is not None:
                store.close()
            return None
        if added:
            log.info("tiles: %s: %d leaves added", self.directory.root, added)
        self.error = None
        self.rounds += 1
        return store
