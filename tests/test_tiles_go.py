"""Our tiles read by a tile client the project did not write: Go's
golang.org/x/mod/sumdb/tlog (tiles of height 8), through tests/go/tilecheck.

tilecheck opens the folder's checkpoint with note.Open, reads every hash through
tlog.TileHashReader (which authenticates each tile it reads against the signed
tree hash), computes tlog.TreeHash, checks that every entry of every bundle is
tlog.RecordHash'ed into its level-0 tile, proves and checks inclusion of sampled
entries (tlog.ProveRecord / CheckRecord) and consistency with older checkpoints
(tlog.ProveTree / CheckTree). Tiles are written by the real writer, from a real
ledger and from synthetic leaves past 65,536 (three tile levels), at sizes that
turn partial tiles into full ones; a tampered tile is refused.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.tiles import SyntheticLog, build_go, synthetic_leaves
from support.world import World

from provenance.core.tiles import partial_tiles
from provenance.infra.tile_files import TileDirectory, note_checkpoint
from provenance.ledger.tiles import publish_tiles

pytestmark = pytest.mark.external  # a Go build and a Go process

RUN_TIMEOUT = 300


@pytest.fixture(scope="module")
def tilecheck():
    binary = build_go("tilecheck")
    if isinstance(binary, str):
        pytest.skip(binary)

    def run(folder: Path, verifier_key: str, indexes=(), old_trees=()) -> dict[str, Any]:
        request = {
            "dir": str(folder),
            "verifier_key": verifier_key,
            "indexes": list(indexes),
            "old_trees": [
                {"size": size, "hash": base64.b64encode(root).decode()} for size, root in old_trees
            ],
        }
        done = subprocess.run(
            [str(binary)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return run


def agree(reply: dict[str, Any], size: int, root: bytes) -> None:
    assert reply["error"] == "", reply["error"]
    assert reply["size"] == size
    assert base64.b64decode(reply["tree_hash"]) == base64.b64decode(reply["hash"]) == root
    assert reply["entries"] == size
    assert all(r == "" for r in reply["records"]), reply["records"]
    assert all(t == "" for t in reply["trees"] or []), reply["trees"]


def test_go_reads_a_growing_ledgers_tiles(tmp_path, tilecheck):
    """A real ledger, caught up after each commit: sizes that cross 256 and 512,
    so partial level-0 and level-1 tiles become full ones between runs."""
    world = World.create(tmp_path)
    directory = TileDirectory(tmp_path / "tiles")
    verifier_key = world.store.get_meta("log_verifier_key")
    seen: list[tuple[int, bytes]] = []
    hours = 1.0
    for batch in (5, 200, 60, 1, 300, 255, 1):
        envelopes = []
        for _ in range(batch):
            hours += 0.001
            envelopes.append(world.reading(hours, 3.0, lots=[world.lot]))
        assert all(r.status == "accepted" for r in world.ledger.append(envelopes))
        publish_tiles(world.store, directory)
        cp = note_checkpoint(directory.checkpoint())
        indexes = sorted({0, 1, cp.size // 2, cp.size - 1, *(s - 1 for s, _ in seen)})
        reply = tilecheck(directory.root, verifier_key, indexes, seen)
        agree(reply, cp.size, cp.root_hash)
        assert any(".p/" in p for p in reply["tile_paths"]) == bool(
            [t for t in partial_tiles(cp.size) if t.level == 0]
        )
        seen.append((cp.size, cp.root_hash))
    assert seen[-1][0] > 512 + 256
    assert not (directory.root / "tile" / "0" / "000.p").exists()  # replaced by the full tile


def test_go_reads_three_levels_and_x_paths_of_synthetic_tiles(tmp_path, tilecheck):
    log = SyntheticLog()
    directory = TileDirectory(tmp_path / "tiles", durable=False)
    old = []
    # 257,000 leaves: level-0 tile 1003 is written x001/003, as Go's paths are.
    for size in (65_535, 65_536, 70_000, 257_000):
        directory.catch_up(log.note(size), synthetic_leaves)
        reply = tilecheck(directory.root, log.verifier_key, [0, 255, 256, 65_534, size - 1], old)
        agree(reply, size, log.root(size))
        assert any("/x001/" in p for p in reply["tile_paths"]) == (size > 256_000)
        old.append((size, log.root(size)))
    assert (directory.root / "tile/2/000.p/3").is_file()
    assert (directory.root / "tile/0/x001/003.p/232").is_file()


def test_go_refuses_a_tampered_tile_and_a_tampered_entry(tmp_path, tilecheck):
    log = SyntheticLog()
    directory = TileDirectory(tmp_path / "tiles", durable=False)
    directory.catch_up(log.note(1000), synthetic_leaves)
    for path, offset in (("tile/0/001", 40), ("tile/1/000.p/3", 5), ("tile/entries/002", 7)):
        target = directory.root / path
        original = target.read_bytes()
        target.write_bytes(
            original[:offset] + bytes([original[offset] ^ 1]) + original[offset + 1 :]
        )
        reply = tilecheck(directory.root, log.verifier_key, [300, 999])
        assert reply["error"] != "" or any(reply["records"]), path
        target.write_bytes(original)
    agree(tilecheck(directory.root, log.verifier_key, [300, 999]), 1000, log.root(1000))
