"""`provenance ingest --tiles DIR` as a process against a real broker: the folder's
tlog-tiles follow the commits, end at the last one when the service stops on
SIGTERM, and give the ledger's checkpoint root."""

from __future__ import annotations

import pytest
from support.ingest_process import SETTLE, Ingest, Ledger, Stream, wait_until, wire

from provenance.infra.tile_files import TileDirectory, note_checkpoint
from provenance.store.db import Store

pytestmark = pytest.mark.external


def test_ingest_writes_the_tiles_as_it_commits(tmp_path, broker):
    ledger = Ledger(tmp_path)
    published = ledger.readings(700)
    ledger.close_writer()
    folder = tmp_path / "www"
    ingest = Ingest(ledger, broker.url, "--tiles", str(folder))
    try:
        ingest.wait_for_line("subscribed to")
        stream = Stream(broker, [wire(e) for e in published])
        stream.start()
        stream.wait_acknowledged()
        wait_until(lambda: ledger.count() >= len(published), SETTLE, "every reading")
        directory = TileDirectory(folder)

        def caught_up() -> bool:
            store = Store(ledger.db, readonly=True)
            try:
                return directory.size() == store.log_size()
            finally:
                store.close()

        wait_until(caught_up, SETTLE, "the tiles to catch up")  # before any SIGTERM
        assert ingest.terminate() == 0, ingest.output
        stream.close()
    finally:
        ingest.close()
    store = Store(ledger.db, readonly=True)
    try:
        note = store.latest_checkpoint()
        size = store.log_size()
    finally:
        store.close()
    checkpoint = note_checkpoint(directory.checkpoint())
    assert checkpoint.size == size == note_checkpoint(note).size
    assert directory.hashes(size).root() == checkpoint.root_hash
    assert (folder / "tile/0/000").is_file() and (folder / "tile/entries/001").is_file()
