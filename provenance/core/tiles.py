"""C2SP tlog-tiles: the log's Merkle tree as static tiles of height 8, and its
entries as bundles (c2sp.org/tlog-tiles). Pure: bytes and numbers in, values out.

- A *tile* ``(level, index, width)`` holds ``width`` (1 to 256) consecutive hashes
  of the tree at height ``8 * level``: hash ``i`` is MTH(D[(index * 256 + i) *
  256**level : (index * 256 + i + 1) * 256**level]). Level 0 holds leaf hashes; a
  hash at level L + 1 is the root of a *full* (256-wide) tile at level L. A tile
  narrower than 256 is *partial* and is never hashed into the level above.
- Paths: ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]``, ``N`` in
  3-digit groups, all but the last prefixed ``x`` (1234067 → ``x001/x234/067``).
- An *entry bundle* is the tile's entries, each a big-endian uint16 length and
  the entry's bytes; entry ``i`` hashes (RFC 9162 leaf hash) to hash ``i`` of
  the level-0 tile. Our log's entries are 32-byte event ids (docs/protocol.md,
  "Tiles"), so a full bundle is 256 × 34 bytes.
- Beside them, ``envelopes/<N>[.p/<W>]`` bundles carry the envelopes of the same
  leaves (canonical bytes, uint32 length-prefixed): what a monitor reads.

:func:`extend` is the integrator's step: from the right edge of a tiled tree (its
partial tiles) and new leaves, the tiles to write and the new edge.
:class:`TileHashes` is a :class:`~provenance.core.merkle.HashReader` over
tiles, so every proof and root of :mod:`provenance.core.merkle` works on them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from provenance.core.errors import ProofError, ValidationError
from provenance.core.merkle import HASH_SIZE, hash_leaf, range_hash, root_from_leaf_hashes

__all__ = [
    "ENTRY_LENGTH",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Tile",
    "TileEdge",
    "TileHashes",
    "bundle_prefix",
    "decode_bundle",
    "encode_bundle",
    "entry_bundle_path",
    "envelope_bundle_path",
    "extend",
    "parse_tile_path",
    "partial_tiles",
    "tile_path",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256 hashes, 8,192 bytes when full
ENTRY_LENGTH = 32
"""Our entries are event ids: the leaf is SHA-256(0x00 ‖ event id)."""
MAX_LEVEL = 63
ENTRY_PREFIX = 2  # uint16 length before each entry of an entry bundle
ENVELOPE_PREFIX = 4  # uint32 length before each envelope of an envelope bundle


# --- paths -----------------------------------------------------------------------------------


def _index_path(index: int) -> str:
    """1234067 → 'x001/x234/067'."""
    if index < 0:
        raise ValidationError("tile index", f"must not be negative, got {index}")
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if not index:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + groups[-1:])


def _width_suffix(width: int) -> str:
    if not 1 <= width <= TILE_WIDTH:
        raise ValidationError("tile width", f"must be 1 to {TILE_WIDTH}, got {width}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]``."""
    if not 0 <= level <= MAX_LEVEL:
        raise ValidationError("tile level", f"must be 0 to {MAX_LEVEL}, got {level}")
    return f"tile/{level}/{_index_path(index)}{_width_suffix(width)}"


def entry_bundle_path(index: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/<N>[.p/<W>]``."""
    return f"tile/entries/{_index_path(index)}{_width_suffix(width)}"


def envelope_bundle_path(index: int, width: int = TILE_WIDTH) -> str:
    """``envelopes/<N>[.p/<W>]``: the envelopes of the leaves of level-0 tile N."""
    return f"envelopes/{_index_path(index)}{_width_suffix(width)}"


_PATH = re.compile(
    r"(?P<kind>tile/(?:entries|0|[1-9][0-9]?)|envelopes)/"
    r"(?P<index>(?:x[0-9]{3}/)*[0-9]{3})(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


def parse_tile_path(path: str) -> tuple[int | str, int, int]:
    """(kind, index, width) of a tile path; kind is the level (an int) of a hash
    tile, or 'entries' or 'envelopes'. Raises ValidationError for anything else,
    including non-canonical spellings (leading zero groups, widths of 256 or more)."""
    found = _PATH.fullmatch(path)
    if found is None:
        raise ValidationError("tile path", f"is not a tlog-tiles path: {path[:80]!r}")
    name = found["kind"].rpartition("/")[2]
    kind: int | str = name if name in ("entries", "envelopes") else int(name)
    if isinstance(kind, int) and kind > MAX_LEVEL:
        raise ValidationError("tile path", f"level {kind} is above {MAX_LEVEL}")
    index = int(found["index"].replace("x", "").replace("/", ""))
    width = int(found["width"]) if found["width"] else TILE_WIDTH
    if width >= TILE_WIDTH and found["width"]:
        raise ValidationError("tile path", f"a partial tile is 1 to 255 wide, not {width}")
    if _index_path(index) != found["index"]:
        raise ValidationError("tile path", f"index is not written canonically: {path[:80]!r}")
    return kind, index, width


# --- which tiles a tree has ------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """One tile: ``level`` (0 up), ``index`` within the level, ``width`` hashes."""

    level: int
    index: int
    width: int

    @property
    def path(self) -> str:
        return tile_path(self.level, self.index, self.width)

    @property
    def full(self) -> bool:
        return self.width == TILE_WIDTH


def partial_tiles(size: int) -> list[Tile]:
    """The partial tiles of a tree of ``size`` leaves, level 0 first: at level L,
    width ``floor(size / 256**L) mod 256`` when that is not 0. Every other tile of
    the tree is full."""
    out = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        hashes = size >> (TILE_HEIGHT * level)  # hashes at this level
        if hashes % TILE_WIDTH:
            out.append(Tile(level, hashes // TILE_WIDTH, hashes % TILE_WIDTH))
        level += 1
    return out


# --- bundles ---------------------------------------------------------------------------------


def encode_bundle(entries: Sequence[bytes], prefix: int = ENTRY_PREFIX) -> bytes:
    """Entries, each after its big-endian length (``prefix`` bytes: 2 for entry
    bundles, 4 for envelope bundles)."""
    limit = 1 << (8 * prefix)
    parts = []
    for i, entry in enumerate(entries):
        if len(entry) >= limit:
            raise ValidationError("bundle entry", f"{i} is {len(entry)} bytes, at most {limit - 1}")
        parts.append(len(entry).to_bytes(prefix, "big"))
        parts.append(entry)
    return b"".join(parts)


def decode_bundle(data: bytes, prefix: int = ENTRY_PREFIX) -> list[bytes]:
    """The entries of a bundle; ValidationError if it is truncated. (A plain loop
    over bytes slices: a monitor decodes every entry of the log.)"""
    out: list[bytes] = []
    append, from_bytes = out.append, int.from_bytes
    at, end = 0, len(data)
    while at < end:
        start = at + prefix
        if start > end:
            raise ValidationError("bundle", f"truncated length at byte {at}")
        at = start + from_bytes(data[at:start], "big")
        if at > end:
            raise ValidationError("bundle", f"entry {len(out)} runs past the end")
        append(data[start:at])
    return out


def bundle_prefix(data: bytes, count: int, prefix: int = ENTRY_PREFIX) -> bytes:
    """The bytes of the first ``count`` entries of a bundle (the bundle of a
    smaller tree: entries never move); ValidationError if it has fewer."""
    at = 0
    for i in range(count):
        if at + prefix > len(data):
            raise ValidationError("bundle", f"has {i} entries, fewer than {count}")
        at += prefix + int.from_bytes(data[at : at + prefix], "big")
    if at > len(data):
        raise ValidationError("bundle", f"entry {count - 1} runs past the end")
    return data[:at]


# --- the integrator's step -------------------------------------------------------------------


@dataclass
class TileEdge:
    """The right edge of a tiled tree of ``size`` leaves: per level, the hashes of
    its partial tile (empty when the level has none), and the entries and envelopes
    of the partial level-0 tile."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)  # level L: concatenated hashes
    entries: list[bytes] = field(default_factory=list)
    envelopes: list[bytes] = field(default_factory=list)

    def check(self) -> None:
        """ValidationError unless the edge's widths are those of its size."""
        level = 0
        while level < len(self.hashes) or self.size >> (TILE_HEIGHT * level):
            want = (self.size >> (TILE_HEIGHT * level)) % TILE_WIDTH
            have = len(self.hashes[level]) // HASH_SIZE if level < len(self.hashes) else 0
            if have != want or (level < len(self.hashes) and len(self.hashes[level]) % HASH_SIZE):
                raise ValidationError(
                    "tile edge",
                    f"level {level} has {have} hashes, a tree of {self.size} has {want}",
                )
            level += 1
        width = self.size % TILE_WIDTH
        if len(self.entries) != width or len(self.envelopes) != width:
            raise ValidationError(
                "tile edge", f"the partial bundle must hold {width} entries and envelopes"
            )


@dataclass(frozen=True)
class Written:
    """What :func:`extend` produced: tile data by path (tiles, entry and envelope
    bundles), in an order that writes lower levels first, and the new edge."""

    files: list[tuple[str, bytes]]
    edge: TileEdge


def extend(edge: TileEdge, leaves: Sequence[tuple[bytes, bytes]]) -> Written:
    """Append ``leaves`` — (entry, envelope bytes) pairs, entry = 32-byte event
    id — to the tiled tree at ``edge``; return the files to write and the new
    edge. Every full tile that fills up is listed once; partial tiles only at
    the new size, and only those that differ from the old size's."""
    edge.check()
    hashes = [bytearray(h) for h in edge.hashes]
    entries, envelopes = list(edge.entries), list(edge.envelopes)
    files: list[tuple[str, bytes]] = []
    size = edge.size

    def push(level: int, h: bytes) -> None:
        while True:
            if level == len(hashes):
                hashes.append(bytearray())
            row = hashes[level]
            row += h
            if len(row) < TILE_WIDTH * HASH_SIZE:
                return
            index = ((size + 1) >> (TILE_HEIGHT * (level + 1))) - 1
            files.append((tile_path(level, index), bytes(row)))
            h = root_from_leaf_hashes(row[i : i + HASH_SIZE] for i in range(0, len(row), 32))
            hashes[level] = bytearray()
            level += 1

    for entry, envelope in leaves:
        if len(entry) != ENTRY_LENGTH:
            raise ValidationError("entry", f"must be a {ENTRY_LENGTH}-byte event id")
        entries.append(entry)
        envelopes.append(envelope)
        if len(entries) == TILE_WIDTH:
            index = size // TILE_WIDTH
            files.append((entry_bundle_path(index), encode_bundle(entries)))
            files.append((envelope_bundle_path(index), encode_bundle(envelopes, ENVELOPE_PREFIX)))
            entries, envelopes = [], []
        push(0, hash_leaf(entry))
        size += 1
    old = set(partial_tiles(edge.size))
    for tile in partial_tiles(size):
        if tile in old:
            continue
        files.append((tile.path, bytes(hashes[tile.level])))
        if tile.level == 0:
            files.append((entry_bundle_path(tile.index, tile.width), encode_bundle(entries)))
            files.append(
                (
                    envelope_bundle_path(tile.index, tile.width),
                    encode_bundle(envelopes, ENVELOPE_PREFIX),
                )
            )
    files.sort(key=_write_order)
    return Written(files, TileEdge(size, [bytes(h) for h in hashes], entries, envelopes))


def _write_order(item: tuple[str, bytes]) -> tuple[int, str]:
    """Bundles first, then tiles level by level: a reader that finds a tile finds
    what it covers."""
    kind = parse_tile_path(item[0])[0]
    return (kind if isinstance(kind, int) else -1, item[0])


# --- reading ---------------------------------------------------------------------------------


class TileHashes:
    """A :class:`~provenance.core.merkle.HashReader` for a tree of ``size`` leaves
    read from tiles: ``read(tile)`` returns the tile's bytes (a caller fetches
    them from a directory, an HTTP server, a cache…). Any complete subtree hash is
    computed from the one tile that holds it (at most 255 hashes in memory).

    A tile of the wrong length raises :class:`ProofError`; tiles are not
    authenticated by themselves: check a root from them against a signed
    checkpoint (:meth:`root`).
    """

    def __init__(self, size: int, read: Callable[[Tile], bytes]):
        self.size = size
        self._read = read
        self._cache: dict[Tile, bytes] = {}

    def tile(self, level: int, index: int) -> bytes:
        """The hashes of tile (level, index) as this tree has it (partial at the edge)."""
        hashes = self.size >> (TILE_HEIGHT * level)
        width = min(TILE_WIDTH, hashes - index * TILE_WIDTH)
        if width <= 0:
            raise ProofError(f"tile {level}/{index} is beyond a tree of size {self.size}")
        tile = Tile(level, index, width)
        data = self._cache.get(tile)
        if data is None:
            data = self._read(tile)
            if len(data) != width * HASH_SIZE:
                raise ProofError(f"tile {tile.path} is {len(data)} bytes, want {width * HASH_SIZE}")
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[tile] = data
        return data

    def subtree_hash(self, level: int, index: int) -> bytes:
        tile_level, rest = divmod(level, TILE_HEIGHT)
        per_tile = TILE_WIDTH >> rest  # subtrees of this height in one tile
        tile_index, within = divmod(index, per_tile)
        data = self.tile(tile_level, tile_index)
        span = 1 << rest
        begin = within * span
        if (begin + span) * HASH_SIZE > len(data):
            raise ProofError(f"subtree ({level}, {index}) is not complete in a tree of {self.size}")
        return root_from_leaf_hashes(
            data[i * HASH_SIZE : (i + 1) * HASH_SIZE] for i in range(begin, begin + span)
        )

    def root(self) -> bytes:
        """MTH of the whole tree, from the tiles."""
        return range_hash(self, 0, self.size)
