"""`provenance backup`: an online, checked copy of a SQLite ledger
(provenance/store/backup.py)."""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner
from support.world import World

from provenance.cli.main import main
from provenance.store.backup import backup
from provenance.store.db import Store, StoreError


@pytest.fixture
def world(tmp_path):
    world = World.create(tmp_path)
    world.ledger.append([world.reading(h, 4.0) for h in range(1, 40)])
    return world


def test_a_backup_taken_while_a_writer_is_open_is_a_checked_copy(world, tmp_path):
    # a writer holds the ledger open (and keeps writing after the copy)
    size = world.store.log_size()
    done = backup(tmp_path / "ledger.db", tmp_path / "copy.db")
    world.ledger.append([world.reading(50, 4.0)])
    assert done.log_size == size and done.bytes > 0
    copy = Store(tmp_path / "copy.db", create=False, readonly=True)
    try:
        assert copy.log_size() == size
        assert copy.latest_checkpoint() is not None
        assert [e.envelope.event_id for e in copy.events()] == [
            e.envelope.event_id for e in world.store.events()
        ][:size]
    finally:
        copy.close()
    assert not (tmp_path / "copy.db.partial").exists()


def test_a_backup_never_overwrites_and_never_copies_what_is_not_a_ledger(world, tmp_path):
    (tmp_path / "taken.db").write_bytes(b"keep me")
    with pytest.raises(StoreError, match="exists already"):
        backup(tmp_path / "ledger.db", tmp_path / "taken.db")
    assert (tmp_path / "taken.db").read_bytes() == b"keep me"
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match="not a Provenance ledger"):
        backup(other, tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()
    with pytest.raises(StoreError, match="no folder"):
        backup(tmp_path / "ledger.db", tmp_path / "missing" / "copy.db")


def test_the_command_says_what_it_kept_or_what_to_do(world, tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "ledger.db")
    done = runner.invoke(main, ["--db", db, "backup", str(tmp_path / "b.db")])
    assert done.exit_code == 0, done.output
    assert f"{world.store.log_size()} log entries" in done.output and "checked" in done.output
    again = runner.invoke(main, ["--db", db, "backup", str(tmp_path / "b.db")])
    assert again.exit_code == 1 and again.output.startswith("Error: ")
    assert "exists already" in again.output and "Traceback" not in again.output
    missing = runner.invoke(main, ["--db", str(tmp_path / "none.db"), "backup", "x.db"])
    assert missing.exit_code == 1 and "provenance init" in missing.output
