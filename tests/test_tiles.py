"""C2SP tlog-tiles: the pure tile math (provenance/core/tiles.py), the folder writer
(provenance/infra/tile_files.py, provenance/ledger/tiles.py), `provenance log tiles`
and `/log/tiles/` of `provenance serve`. Go's tlog reads the same folders in
tests/test_tiles_go.py."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from support.ingest_process import wait_until
from support.tiles import SyntheticLog, synthetic_leaf, synthetic_leaves
from support.world import at

from provenance.core.errors import ProofError, ValidationError
from provenance.core.merkle import (
    MemoryTree,
    consistency_proof,
    hash_leaf,
    inclusion_proof,
    root_from_leaf_hashes,
)
from provenance.core.tiles import (
    ENVELOPE_PREFIX,
    Tile,
    TileEdge,
    TileHashes,
    decode_bundle,
    encode_bundle,
    entry_bundle_path,
    envelope_bundle_path,
    extend,
    parse_tile_path,
    partial_tiles,
    tile_path,
)
from provenance.infra import tile_files
from provenance.infra.tile_files import TileDirectory, TileError, note_checkpoint
from provenance.ledger.tiles import TileFollower, publish_tiles

# --- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "index", "width", "path"),
    [
        (0, 0, 256, "tile/0/000"),
        (0, 1234067, 256, "tile/0/x001/x234/067"),
        (1, 5, 17, "tile/1/005.p/17"),
        (2, 1000, 1, "tile/2/x001/000.p/1"),
        (63, 999, 255, "tile/63/999.p/255"),
    ],
)
def test_tile_paths_are_the_specs(level, index, width, path):
    assert tile_path(level, index, width) == path
    assert parse_tile_path(path) == (level, index, width)
    assert entry_bundle_path(index, width) == "tile/entries/" + path.split("/", 2)[2]
    assert envelope_bundle_path(index, width) == "envelopes/" + path.split("/", 2)[2]


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1",  # not three digits
        "tile/0/x000/001",  # a leading zero group
        "tile/0/001.p/256",  # 256 wide is full, never .p
        "tile/0/001.p/0",
        "tile/0/001.p/07",
        "tile/64/000",
        "tile/01/000",
        "tile/0/../checkpoint",
        "tile/0/001/",
        "tile/data/000",
        "tile/8/0/000",  # Go's sumdb layout, with the height
        "envelopes/x001",
        "/etc/passwd",
        "",
    ],
)
def test_other_paths_are_refused(path):
    with pytest.raises(ValidationError):
        parse_tile_path(path)


def test_partial_tiles_are_the_specs_example():
    """c2sp.org/tlog-tiles: a tree of 70,000 has a partial level-0 tile of width 112,
    a partial level-1 tile of 17 and a partial level-2 tile of 1; a tree of 256 a
    partial level-1 tile of width 1."""
    assert partial_tiles(70_000) == [Tile(0, 273, 112), Tile(1, 1, 17), Tile(2, 0, 1)]
    assert partial_tiles(256) == [Tile(1, 0, 1)]
    assert partial_tiles(0) == []
    assert partial_tiles(65_536) == [Tile(2, 0, 1)]


def test_bundles_round_trip_and_truncation_is_refused():
    entries = [b"", b"a", bytes(32), bytes(range(256)) * 3]
    data = encode_bundle(entries)
    assert data[:2] == b"\x00\x00" and decode_bundle(data) == entries
    assert decode_bundle(encode_bundle(entries, ENVELOPE_PREFIX), ENVELOPE_PREFIX) == entries
    for cut in range(1, len(data)):
        if cut in (2, 5, 39):  # the ends of whole entries
            continue
        with pytest.raises(ValidationError):
            decode_bundle(data[:cut])
    with pytest.raises(ValidationError):
        encode_bundle([bytes(65_536)])


# --- the integrator's step ----------------------------------------------------------------------


def grow(sizes: list[int]) -> tuple[dict[str, bytes], list[TileEdge]]:
    """Extend a tiled tree through ``sizes``; the files written (each path once,
    or with the same bytes) and the edge after each step."""
    files: dict[str, bytes] = {}
    edges = [TileEdge()]
    for size in sizes:
        step = extend(edges[-1], synthetic_leaves(edges[-1].size, size))
        paths = [p for p, _ in step.files]
        assert len(paths) == len(set(paths))
        for path, data in step.files:
            assert files.setdefault(path, data) == data, f"{path} rewritten with other bytes"
        edges.append(step.edge)
    return files, edges


def reader(files: dict[str, bytes], size: int) -> TileHashes:
    def read(tile: Tile) -> bytes:
        return files[tile.path]

    return TileHashes(size, read)


def test_every_size_up_to_600_gives_the_roots_and_proofs_of_the_reference_tree():
    files, _ = grow(list(range(1, 601)))
    leaves = [hash_leaf(synthetic_leaf(i)[0]) for i in range(600)]
    tree = MemoryTree()
    for leaf in leaves:
        tree.append(leaf)
    for size in range(1, 601):
        tiles = reader(files, size)
        assert tiles.root() == root_from_leaf_hashes(leaves[:size]), size
        for index in {0, size // 2, size - 1}:
            assert inclusion_proof(tiles, index, size) == inclusion_proof(tree, index, size)
        for old in {1, size // 3 or 1, size}:
            assert consistency_proof(tiles, old, size) == consistency_proof(tree, old, size)


def test_random_steps_to_70000_write_each_full_tile_once():
    rnd = random.Random(14)
    sizes, size = [], 0
    while size < 70_000:
        size = min(70_000, size + rnd.choice([1, 3, 255, 256, 257, 1000, 9000]))
        sizes.append(size)
    files, edges = grow(sizes)
    assert reader(files, 70_000).root() == root_from_leaf_hashes(
        hash_leaf(synthetic_leaf(i)[0]) for i in range(70_000)
    )
    full = [p for p in files if ".p/" not in p]
    assert len([p for p in full if p.startswith("tile/0/")]) == 273
    assert [p for p in full if p.startswith("tile/1/")] == ["tile/1/000"]
    # Every partial tile of every size reached is there: clients holding any of
    # those checkpoints find what they need.
    for edge in edges[1:]:
        for tile in partial_tiles(edge.size):
            assert tile.path in files
            assert files[tile.path] == edge.hashes[tile.level]
    # A full bundle's entries hash to its tile's hashes; envelopes are the leaves'.
    bundle = decode_bundle(files[entry_bundle_path(7)])
    assert b"".join(hash_leaf(e) for e in bundle) == files[tile_path(0, 7)]
    envelopes = decode_bundle(files[envelope_bundle_path(7)], ENVELOPE_PREFIX)
    assert envelopes == [synthetic_leaf(7 * 256 + i)[1] for i in range(256)]


def test_an_edge_that_does_not_fit_its_size_is_refused():
    _, edges = grow([300])
    edge = edges[-1]
    for bad in (
        TileEdge(edge.size + 1, edge.hashes, edge.entries, edge.envelopes),
        TileEdge(edge.size, [edge.hashes[0][:-32], *edge.hashes[1:]], edge.entries, edge.envelopes),
        TileEdge(edge.size, edge.hashes, edge.entries[:-1], edge.envelopes),
    ):
        with pytest.raises(ValidationError):
            extend(bad, [])
    with pytest.raises(ValidationError):
        extend(edge, [(bytes(31), b"")])


def test_a_tile_of_the_wrong_length_is_refused():
    files, _ = grow([300])
    files["tile/0/001.p/44"] = files["tile/0/001.p/44"][:-1]
    with pytest.raises(ProofError):
        reader(files, 300).root()
    with pytest.raises(ProofError):
        reader(files, 300).subtree_hash(0, 300)


# --- the folder ---------------------------------------------------------------------------------


def folder_root(directory: TileDirectory) -> bytes:
    return directory.hashes(directory.size()).root()


def test_catching_up_writes_only_what_is_new_and_never_rewrites_a_full_tile(tmp_path):
    log = SyntheticLog()
    directory = TileDirectory(tmp_path / "tiles", durable=False)
    assert directory.catch_up(log.note(300), synthetic_leaves) == 300
    full = tmp_path / "tiles" / "tile" / "0" / "000"
    stat = full.stat()
    assert (tmp_path / "tiles" / "tile/0/001.p/44").is_file()
    asked = []

    def leaves(begin, end):
        asked.append((begin, end))
        return synthetic_leaves(begin, end)

    assert directory.catch_up(log.note(600), leaves) == 300
    assert asked == [(300, 600)]
    assert (full.stat().st_ino, full.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    # The partial tile of size 300 was replaced by the full one; size 600's is there.
    assert not (tmp_path / "tiles" / "tile/0/001.p").exists()
    assert not (tmp_path / "tiles" / "tile/entries/001.p").exists()
    assert (tmp_path / "tiles" / "tile/0/002.p/88").is_file()
    assert directory.checkpoint() == log.note(600)
    assert folder_root(directory) == log.root(600)
    # A reader holding the checkpoint of size 300 still reads its tree (full-tile fallback).
    assert directory.hashes(300).root() == log.root(300)
    assert directory.catch_up(log.note(600), leaves) == 0 and asked == [(300, 600)]
    assert not list((tmp_path / "tiles" / ".tmp").iterdir())


def test_another_logs_folder_a_newer_checkpoint_and_wrong_leaves_are_refused(tmp_path):
    log = SyntheticLog()
    directory = TileDirectory(tmp_path / "tiles", durable=False)
    directory.catch_up(log.note(10), synthetic_leaves)
    with pytest.raises(TileError, match="holds the tiles of log"):
        directory.catch_up(SyntheticLog("other.test/log").note(20), synthetic_leaves)
    with pytest.raises(TileError, match="newer than"):
        directory.catch_up(log.note(5), synthetic_leaves)

    def wrong(begin, end):
        return [synthetic_leaf(i + 1) for i in range(begin, end)]

    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "checkpoint").write_bytes(b"\xff not a note")
    with pytest.raises(TileError, match="is not a checkpoint"):
        TileDirectory(tmp_path / "garbage").catch_up(log.note(3), synthetic_leaves)
    with pytest.raises(TileError, match="do not match the checkpoint"):
        directory.catch_up(log.note(20), wrong)
    assert directory.checkpoint() == log.note(10)  # not advanced past what checks out

    # Another log with the same origin: its tiles differ from the ones written.
    forked = TileDirectory(tmp_path / "forked", durable=False)
    forked.catch_up(log.note(300), synthetic_leaves)
    (tmp_path / "forked" / "checkpoint").unlink()
    with pytest.raises(TileError, match="other contents"):
        forked.catch_up(log.note(300), lambda b, e: wrong(b, e))


class Crash(Exception):
    pass


def test_a_crash_at_any_write_leaves_a_readable_folder_and_the_next_run_finishes(
    tmp_path, monkeypatch
):
    """Stop the writer at every rename in turn while it catches up from 300 to 1100
    leaves: the folder always holds a checkpoint whose tiles give its root, no
    half-written file is visible, and a clean run then completes."""
    log = SyntheticLog()
    real_replace = os.replace
    writes = []

    def counting(src, dst):
        writes.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(tile_files.os, "replace", counting)
    TileDirectory(tmp_path / "probe", durable=False).catch_up(log.note(300), synthetic_leaves)
    writes.clear()
    TileDirectory(tmp_path / "probe", durable=False).catch_up(log.note(1100), synthetic_leaves)
    total = len(writes)
    assert Path(writes[-1]).name == "checkpoint" and total > 10
    for crash_at in range(total):
        root = tmp_path / f"crash{crash_at}"
        TileDirectory(root, durable=False).catch_up(log.note(300), synthetic_leaves)

        def crashing(src, dst, left=[crash_at]):  # noqa: B006 (the countdown of this run)
            if left[0] == 0:
                raise Crash(dst)
            left[0] -= 1
            real_replace(src, dst)

        monkeypatch.setattr(tile_files.os, "replace", crashing)
        with pytest.raises(Crash):
            TileDirectory(root, durable=False).catch_up(log.note(1100), synthetic_leaves)
        monkeypatch.setattr(tile_files.os, "replace", real_replace)
        # What a reader sees now: the old checkpoint, and every tile it needs.
        seen = TileDirectory(root, durable=False)
        assert seen.checkpoint() == log.note(300)
        assert folder_root(seen) == log.root(300)
        for found in root.rglob("*"):
            if (
                found.is_file()
                and ".tmp" not in found.parts
                and found.name
                not in (
                    "checkpoint",
                    ".lock",
                )
            ):
                parse_tile_path(found.relative_to(root).as_posix())
        seen.catch_up(log.note(1100), synthetic_leaves)
        assert folder_root(seen) == log.root(1100)
        assert not list((root / ".tmp").iterdir())


# --- from the ledger ----------------------------------------------------------------------------


def test_the_ledgers_tiles_carry_its_event_ids_and_envelopes(file_world, tmp_path):
    world = file_world
    for i in range(300):
        world.ok("probe", "reading", [world.lot], {"temperature_c": 4.0}, time=at(1 + i / 1000))
    directory = TileDirectory(tmp_path / "tiles")
    size = world.store.log_size()
    assert publish_tiles(world.store, directory) == size
    checkpoint = note_checkpoint(directory.checkpoint())
    assert checkpoint.size == size and folder_root(directory) == checkpoint.root_hash
    events = list(world.store.events(0, 256))
    assert decode_bundle(directory.read(entry_bundle_path(0))) == [
        e.envelope.id_bytes for e in events
    ]
    assert decode_bundle(directory.read(envelope_bundle_path(0)), ENVELOPE_PREFIX) == [
        e.envelope.canonical_bytes() for e in events
    ]
    world.ok("probe", "reading", [world.lot], {"temperature_c": 5.0}, time=at(2))
    assert publish_tiles(world.store, directory) == 1


def test_cli_log_tiles_writes_and_catches_up(two_lot_cli, tmp_path):
    out = tmp_path / "www"
    first = two_lot_cli("log", "tiles", "--out", str(out))
    assert "added" in first.output and (out / "checkpoint").is_file()
    assert (out / "checkpoint").read_text() == two_lot_cli("log", "checkpoint").output
    two_lot_cli(
        "lot",
        "register",
        "--gtin",
        "09506000134352",
        "--lot",
        "C9",
        "--product",
        "Leek",
        "--as",
        "Farm",
    )
    again = two_lot_cli("log", "tiles", "--out", str(out))
    assert "(1 added)" in again.output
    a_file = tmp_path / "file"
    a_file.write_text("x")
    bad = two_lot_cli("log", "tiles", "--out", str(a_file / "sub"), code=1)
    assert bad.output.startswith("Error: ") and "Traceback" not in bad.output


# --- served -------------------------------------------------------------------------------------


@pytest.fixture
def tiles_app(tmp_path, file_world):
    from provenance.web import create_app

    for i in range(300):
        file_world.ok(
            "probe", "reading", [file_world.lot], {"temperature_c": 4.0}, time=at(1 + i / 1e3)
        )
    directory = TileDirectory(tmp_path / "tiles")
    publish_tiles(file_world.store, directory)
    app = create_app(
        {"DATABASE": str(file_world.store.path), "TILES_DIR": str(directory.root), "TESTING": True}
    )
    return app, directory


def test_serve_answers_the_layout_with_caching_headers(tiles_app):
    app, directory = tiles_app
    client = app.test_client()
    cp = client.get("/log/tiles/checkpoint")
    assert cp.status_code == 200 and cp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert cp.headers["Cache-Control"] == "no-cache"
    assert cp.data == directory.read("checkpoint")
    size = directory.size()
    for tile in [Tile(0, 0, 256), *partial_tiles(size)]:
        got = client.get("/log/tiles/" + tile.path)
        assert got.status_code == 200, tile.path
        assert got.headers["Content-Type"] == "application/octet-stream"
        assert "immutable" in got.headers["Cache-Control"]
        assert got.data == directory.read(tile.path)
    for path in (entry_bundle_path(0), envelope_bundle_path(0)):
        assert client.get("/log/tiles/" + path).data == directory.read(path)
    head = client.head("/log/tiles/" + tile_path(0, 0))
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == str(8192)
    assert client.post("/log/tiles/" + tile_path(0, 0)).status_code == 405
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    # A checkpoint size the folder never wrote (between two catch-ups): its
    # partial tiles and bundles are cut from the wider ones of a later size.
    edge = partial_tiles(size)[0]
    narrower = edge.width - 5
    assert (
        client.get(f"/log/tiles/{tile_path(0, edge.index, narrower)}").data
        == (directory.read(edge.path)[: narrower * 32])
    )
    for path, prefix in (
        (entry_bundle_path(edge.index, narrower), 2),
        (envelope_bundle_path(edge.index, narrower), ENVELOPE_PREFIX),
    ):
        wide = decode_bundle(directory.read(path.rpartition(".p/")[0] + f".p/{edge.width}"), prefix)
        assert decode_bundle(client.get("/log/tiles/" + path).data, prefix) == wide[:narrower]
    assert client.get(f"/log/tiles/{tile_path(0, edge.index + 1, 3)}").status_code == 404
    # A partial tile already replaced by its full one: its first hashes.
    assert client.get("/log/tiles/tile/0/000.p/9").data == directory.read("tile/0/000")[: 9 * 32]


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/999",
        "tile/0/../../checkpoint",
        "tile/0/%2e%2e/x",
        "tile/0/001.p/0",
        "nothing",
        "tile/entries/005.p/3",
        ".lock",
        ".tmp/x",
    ],
)
def test_serve_refuses_what_is_not_a_tile_of_this_log(tiles_app, path):
    app, _ = tiles_app
    got = app.test_client().get("/log/tiles/" + path)
    assert got.status_code == 404 and got.headers["Content-Type"].startswith("text/plain")


def test_serve_without_tiles_says_how_to_get_them(file_world):
    from provenance.web import create_app

    app = create_app({"DATABASE": str(file_world.store.path), "TESTING": True})
    got = app.test_client().get("/log/tiles/checkpoint")
    assert got.status_code == 404 and b"--tiles DIR" in got.data


def test_tiles_are_outside_the_log_apis_rate_limit(tiles_app):
    """A monitor fetching tiles never meets a 429; the same client on /log/v1/* does."""
    app, _ = tiles_app
    client = app.test_client()
    codes = {client.get("/log/tiles/tile/0/000").status_code for _ in range(400)}
    assert codes == {200}
    limited = {client.get("/log/v1/checkpoint").status_code for _ in range(400)}
    assert 429 in limited


# --- the follower (serve --tiles, ingest --tiles) -------------------------------------------------


def test_the_follower_keeps_the_folder_caught_up_and_survives_errors(file_world, tmp_path):
    world = file_world
    directory = TileDirectory(tmp_path / "tiles")
    follower = TileFollower(world.store.path, directory, interval=0.05).start()
    try:
        wait_until(lambda: directory.size() == world.store.log_size(), 20, "tiles")
        for i in range(3):
            world.ok("probe", "reading", [world.lot], {"temperature_c": 4.0}, time=at(2 + i))
            follower.poke()
            wait_until(lambda: directory.size() == world.store.log_size(), 20, "tiles")
        assert folder_root(directory) == note_checkpoint(world.store.latest_checkpoint()).root_hash
    finally:
        follower.stop()
    assert not follower._thread.is_alive()
    # A folder that holds another log: the follower says so and keeps trying.
    other = TileDirectory(tmp_path / "other")
    other.catch_up(SyntheticLog().note(3), synthetic_leaves)
    follower = TileFollower(world.store.path, other, interval=0.05).start()
    try:
        wait_until(lambda: follower.error is not None, 20, "an error")
        assert "holds the tiles of log" in follower.error
        assert follower._thread.is_alive()
    finally:
        follower.stop()


def test_stopping_the_follower_writes_what_was_committed_until_then(file_world, tmp_path):
    world = file_world
    directory = TileDirectory(tmp_path / "tiles")
    follower = TileFollower(world.store.path, directory, interval=600).start()
    try:
        wait_until(lambda: follower.rounds >= 1, 20, "the first round")
        world.ok("probe", "reading", [world.lot], {"temperature_c": 4.0}, time=at(3))
    finally:
        follower.stop()
    assert directory.size() == world.store.log_size()


def test_serve_with_tiles_writes_and_serves_them(two_lot_cli, tmp_path, monkeypatch):
    """`provenance serve --tiles DIR`: the follower fills DIR while the app serves it
    under /log/tiles/ (waitress replaced by a client of the same app)."""
    import waitress

    out = tmp_path / "www"
    seen = {}

    def serve(app, **_kwargs):
        client = app.test_client()
        wait_until(
            lambda: client.get("/log/tiles/checkpoint").status_code == 200, 20, "a checkpoint"
        )
        seen["checkpoint"] = client.get("/log/tiles/checkpoint").data.decode()
        seen["tile"] = client.get("/log/tiles/" + partial_tiles(directory.size())[0].path).data

    directory = TileDirectory(out)
    monkeypatch.setattr(waitress, "serve", serve)
    two_lot_cli("serve", "--tiles", str(out), "--anchor-every", "0")
    assert seen["checkpoint"] == two_lot_cli("log", "checkpoint", "--latest").output
    assert seen["tile"] == directory.read(partial_tiles(directory.size())[0].path)
