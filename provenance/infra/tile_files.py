"""A directory of C2SP tlog-tiles (provenance/core/tiles.py), written so that a
static web server, a CDN or `provenance serve` can publish it while it grows.

Write rules (docs/protocol.md, "Tiles"):

- every file is written to ``.tmp/`` and renamed into place (atomic: a reader sees
  the whole file or none), fsynced first when ``durable``, and the folders it was
  renamed into are fsynced before the checkpoint is written;
- tiles and bundles are immutable: one that exists is never rewritten (if its
  bytes differ, the directory holds another log and catching up stops);
- partial tiles (``.p/<W>``) are written for each checkpoint's size and removed
  once the full tile is in place (c2sp.org/tlog-tiles allows that);
- the ``checkpoint`` is written last, after the tiles it needs were written and a
  root computed from them equals the checkpoint's. A crash at any moment leaves
  the previous checkpoint with every tile it needs: the next run resumes.

One writer at a time: :meth:`TileDirectory.catch_up` holds an exclusive
``flock`` on ``.lock``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from provenance.core.checkpoint import Checkpoint
from provenance.core.errors import ProofError, ProvenanceError, ValidationError
from provenance.core.merkle import HASH_SIZE
from provenance.core.tiles import (
    ENTRY_PREFIX,
    ENVELOPE_PREFIX,
    TILE_WIDTH,
    Tile,
    TileEdge,
    TileHashes,
    bundle_prefix,
    decode_bundle,
    entry_bundle_path,
    envelope_bundle_path,
    extend,
    parse_tile_path,
    partial_tiles,
    tile_path,
)

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
CHUNK_LEAVES = 64 * TILE_WIDTH  # leaves read from the source per step
TMP = ".tmp"
LOCK = ".lock"

Leaves = Callable[[int, int], Sequence[tuple[bytes, bytes]]]
"""leaves(begin, end): (event id, canonical envelope bytes) of leaves begin..end-1."""


class TileError(ProvenanceError):
    """The tiles cannot be written: another log's directory, a source that does not
    match its checkpoint, an unwritable folder."""


def note_checkpoint(note: str) -> Checkpoint:
    """The checkpoint in a signed note's body (unverified: the note came from our
    own store or our own directory)."""
    body, sep, _ = note.partition("\n\n")
    if not sep:
        raise ValidationError("checkpoint", "is not a signed note (no blank line)")
    return Checkpoint.from_text(body + "\n")


class TileDirectory:
    """The tiles of one log under ``root`` (created if missing)."""

    def __init__(self, root: str | Path, *, durable: bool = True):
        self.root = Path(root)
        self.durable = durable
        self._renamed_in: set[Path] = set()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / TMP).mkdir(exist_ok=True)
        except OSError as exc:
            raise TileError(f"cannot make the tiles folder {self.root}: {exc.strerror}") from None

    # --- reading

    def read(self, path: str) -> bytes | None:
        try:
            return (self.root / path).read_bytes()
        except FileNotFoundError:
            return None

    def checkpoint(self) -> str | None:
        data = self.read(CHECKPOINT)
        return None if data is None else data.decode("utf-8", "replace")

    def size(self) -> int:
        """The size of the checkpoint written (0 before the first)."""
        note = self.checkpoint()
        return 0 if note is None else note_checkpoint(note).size

    def tile(self, tile: Tile) -> bytes:
        """A tile of a tree the directory has a checkpoint for: the partial file, or
        the full tile's first hashes once the partial one was replaced."""
        data = self.read(tile.path)
        if data is None and not tile.full:
            full = self.read(tile_path(tile.level, tile.index))
            data = None if full is None else full[: tile.width * HASH_SIZE]
        if data is None:
            raise ProofError(f"tile {tile.path} is missing from {self.root}")
        return data

    def hashes(self, size: int) -> TileHashes:
        """A HashReader over the tree of ``size`` leaves in this directory."""
        return TileHashes(size, self.tile)

    def edge(self, size: int) -> TileEdge | None:
        """The right edge of the tree of ``size`` from the partial files; None when
        one is missing or malformed (then catching up starts from leaf 0)."""
        edge = TileEdge(size)
        for tile in partial_tiles(size):
            data = self.read(tile.path)
            if data is None or len(data) != tile.width * HASH_SIZE:
                return None
            edge.hashes.extend([b""] * (tile.level + 1 - len(edge.hashes)))
            edge.hashes[tile.level] = data
            if tile.level == 0:
                entries = self.read(entry_bundle_path(tile.index, tile.width))
                envelopes = self.read(envelope_bundle_path(tile.index, tile.width))
                if entries is None or envelopes is None:
                    return None
                try:
                    edge.entries = decode_bundle(entries)
                    edge.envelopes = decode_bundle(envelopes, ENVELOPE_PREFIX)
                except ValidationError:
                    return None
        try:
            edge.check()
        except ValidationError:
            return None
        return edge

    # --- writing

    def _write(self, path: str, data: bytes) -> None:
        target = self.root / path
        tmp = self.root / TMP / path.replace("/", "_")
        with open(tmp, "wb") as f:
            f.write(data)
            if self.durable:
                f.flush()
                os.fsync(f.fileno())
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
        self._renamed_in.add(target.parent)

    def _sync_folders(self) -> None:
        """fsync every folder a file was renamed into (with ``durable``): the
        renames themselves survive a power cut before the checkpoint names them."""
        if self.durable:
            for folder in sorted(self._renamed_in):
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        self._renamed_in.clear()

    def write_immutable(self, path: str, data: bytes) -> bool:
        """Write a tile or bundle unless it exists; True if written. One that
        exists with other bytes raises TileError (it is another log's)."""
        existing = self.read(path)
        if existing is not None:
            if existing != data:
                raise TileError(
                    f"{self.root / path} exists with other contents: "
                    "this folder holds another log's tiles; give an empty one"
                )
            return False
        self._write(path, data)
        return True

    @contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.root / LOCK, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def catch_up(self, note: str, leaves: Leaves, chunk: int = CHUNK_LEAVES) -> int:
        """Write the tiles of the signed checkpoint ``note`` (from our own store),
        reading from ``leaves`` what is not written yet, then ``note`` as the
        checkpoint. Returns the number of leaves added. Raises TileError when the
        directory holds another log, a newer checkpoint, or leaves whose root is
        not the checkpoint's."""
        target = note_checkpoint(note)
        with self.locked():
            self._clear_tmp()
            current = self.checkpoint()
            old_size = 0
            if current is not None:
                try:
                    held = note_checkpoint(current)
                except ValidationError as exc:
                    raise TileError(
                        f"{self.root / CHECKPOINT} is not a checkpoint ({exc}): "
                        "give an empty folder, or remove that file to rewrite the tiles"
                    ) from None
                if held.origin != target.origin:
                    raise TileError(
                        f"{self.root} holds the tiles of log {held.origin!r}, "
                        f"not {target.origin!r}: give another folder"
                    )
                if held.size > target.size:
                    raise TileError(
                        f"{self.root} holds a checkpoint of size {held.size}, newer than "
                        f"this log's {target.size}: is it another copy of the log?"
                    )
                old_size = held.size
            edge = self.edge(old_size)
            if edge is None:
                log.warning(
                    "tiles: %s: the edge of size %d is unreadable; from 0", self.root, old_size
                )
                edge = TileEdge()
            added = target.size - edge.size
            while edge.size < target.size:
                end = min(target.size, edge.size + chunk)
                chunk_leaves = leaves(edge.size, end)
                if len(chunk_leaves) != end - edge.size:
                    raise TileError(
                        f"the log gave {len(chunk_leaves)} leaves for {edge.size}..{end - 1}, "
                        f"want {end - edge.size}"
                    )
                step = extend(edge, chunk_leaves)
                for path, data in step.files:
                    self.write_immutable(path, data)
                edge = step.edge
            root = self.hashes(target.size).root() if target.size else None
            if root is not None and root != target.root_hash:
                raise TileError(
                    f"the tiles of size {target.size} give root {root.hex()}, the checkpoint "
                    f"says {target.root_hash.hex()}: the leaves do not match the checkpoint"
                )
            self._sync_folders()  # the tiles are durable before the checkpoint names them
            if current != note:
                self._write(CHECKPOINT, note.encode("utf-8"))
                self._sync_folders()
            self._drop_replaced_partials(old_size, target.size)
        return added

    def _clear_tmp(self) -> None:
        """Temporary files a crashed writer left (never visible as tiles)."""
        for leftover in (self.root / TMP).iterdir():
            leftover.unlink(missing_ok=True)

    def _drop_replaced_partials(self, old_size: int, new_size: int) -> None:
        """Remove ``N.p/`` folders whose full tile now exists (of the old edge's
        tiles, the only ones that can have filled since)."""
        for tile in partial_tiles(old_size):
            if tile.index >= (new_size >> (8 * (tile.level + 1))):
                continue  # still partial at the new size
            paths = [tile_path(tile.level, tile.index, tile.width)]
            if tile.level == 0:
                paths += [
                    entry_bundle_path(tile.index, tile.width),
                    envelope_bundle_path(tile.index, tile.width),
                ]
            for path in paths:
                folder = (self.root / path).parent
                if folder.name.endswith(".p"):
                    shutil.rmtree(folder, ignore_errors=True)


# --- serving


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:  # missing, a folder, unreadable: not served
        return None


def _narrower(kind: int | str, data: bytes, width: int) -> bytes | None:
    """The first ``width`` hashes or entries of a wider tile or bundle."""
    if isinstance(kind, int):
        return data[: width * HASH_SIZE] if len(data) >= width * HASH_SIZE else None
    try:
        return bundle_prefix(data, width, ENTRY_PREFIX if kind == "entries" else ENVELOPE_PREFIX)
    except ValidationError:
        return None


def read_published(folder: Path, path: str) -> tuple[bytes | None, str]:
    """What a server answers for ``path`` under the tiles folder: (its bytes, or
    None; the reason when None). Only paths that parse reach the file system.

    A partial tile or bundle that is not on disk is cut from a wider one of the
    same index, the full one or a partial one written for a later checkpoint
    (tiles never change, they only grow): so every checkpoint size the ledger
    signed is served, also those between two catch-ups of the folder, and those
    whose partial tiles were removed once full (c2sp.org/tlog-tiles)."""
    if path == "checkpoint":
        data = _read(folder / "checkpoint")
        return data, "no checkpoint written yet"
    try:
        kind, _, width = parse_tile_path(path)
    except ValidationError as exc:
        return None, f"{exc}: see c2sp.org/tlog-tiles"
    missing = f"no {path} in this log (yet)"
    data = _read(folder / path)
    if data is not None or width == TILE_WIDTH:
        return data, missing
    full = path.rpartition(".p/")[0]
    wider = [folder / full]
    try:
        widths = sorted(int(p.name) for p in (folder / (full + ".p")).iterdir() if p.name.isdigit())
    except OSError:
        widths = []
    wider += [folder / f"{full}.p/{w}" for w in widths if width < w < TILE_WIDTH]
    for candidate in wider:
        found = _read(candidate)
        if found is not None:
            cut = _narrower(kind, found, width)
            if cut is not None:
                return cut, missing
    return None, missing
