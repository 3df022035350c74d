"""RFC 9162 (RFC 6962) Merkle tree hashing, proofs and proof verification.

Pure functions over bytes: no I/O, no clock. Terms follow RFC 9162 §2.1:

- MTH(D[n]): the Merkle Tree Hash of a list of n leaves. Leaves are hashed with
  a 0x00 prefix and interior nodes with a 0x01 prefix, so a leaf can never be
  passed off as a node (second-preimage protection).
- A *complete subtree* ``(level, index)`` covers leaves
  ``[index * 2**level, (index + 1) * 2**level)``; level 0 is a single leaf.
- PATH(m, D[n]) is the inclusion proof of leaf m; PROOF(m, D[n]) is the
  consistency proof from the tree of size m to the tree of size n. Both list
  hashes from the bottom of the tree upwards.

Storage is reached only through :class:`HashReader`, so proofs cost O(log n)
subtree-hash reads whatever the size of the log.

``verify_*`` functions return ``None`` or raise :class:`ProofError` (malformed
proof, bad index, wrong sizes) or :class:`RootMismatchError` (the proof
computes a different root).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol

from provenance.core.errors import ProofError, RootMismatchError, ValidationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "Frontier",
    "HashReader",
    "MemoryTree",
    "consistency_proof",
    "decompose",
    "fold_subtrees",
    "hash_children",
    "hash_leaf",
    "inclusion_proof",
    "range_hash",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() — the root of the empty tree."""

_sha256 = hashlib.sha256


# --- hashing ---------------------------------------------------------------------------------


def hash_leaf(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return _sha256(LEAF_PREFIX + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """Interior node hash SHA-256(0x01 || left || right)."""
    return _sha256(NODE_PREFIX + left + right).digest()


def root_from_leaf_hashes(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH of a whole list of leaf hashes, in O(n) time and O(log n) memory.

    Keeps a stack of the complete subtrees covering the leaves seen so far
    (a binary counter), then folds it from the right.
    """
    stack: list[bytes] = []
    push, pop, sha = stack.append, stack.pop, _sha256
    for count, h in enumerate(leaf_hashes):
        # Leaf `count` completes one subtree per trailing 1 bit of `count`.
        while count & 1:
            h = sha(NODE_PREFIX + pop() + h).digest()
            count >>= 1
        push(h)
    return fold_subtrees(stack)


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ValidationError(what, f"must be {HASH_SIZE} bytes, got {len(value)}")


# --- subtree decomposition -------------------------------------------------------------------


def decompose(begin: int, end: int) -> list[tuple[int, int]]:
    """The aligned complete subtrees ``(level, index)`` covering leaves [begin, end),
    left to right. ``decompose(0, n)`` has one subtree per 1 bit of n, largest first."""
    if not 0 <= begin <= end:
        raise ProofError(f"bad leaf range [{begin}, {end}): need 0 <= begin <= end")
    out: list[tuple[int, int]] = []
    while begin < end:
        # Largest block that starts aligned at `begin` and does not pass `end`.
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        out.append((level, begin >> level))
        begin += 1 << level
    return out


def fold_subtrees(hashes: Sequence[bytes]) -> bytes:
    """Root from the hashes of ``decompose(0, n)`` (left to right), folding from the
    right: ``h = hashes[-1]; h = hash_children(hashes[i], h)`` for i descending.

    Also gives MTH(D[begin:end]) for the hashes of ``decompose(begin, end)`` when the
    range arises in an RFC 9162 proof (see :func:`range_hash`). No hashes → EMPTY_ROOT.
    """
    if not hashes:
        return EMPTY_ROOT
    h = hashes[-1]
    for i in range(len(hashes) - 2, -1, -1):
        h = _sha256(NODE_PREFIX + hashes[i] + h).digest()
    return h


class HashReader(Protocol):
    """Read access to the complete-subtree hashes of a log."""

    def subtree_hash(self, level: int, index: int) -> bytes:
        """Hash of complete aligned subtree (level, index); level 0 is a leaf hash."""
        ...


class ReadOnce:
    """A HashReader that reads each subtree hash once from another. Proofs of
    many leaves against one tree size share most of their upper nodes: a lot's
    proof bundle with 20,000 events needs ~2 reads per event through this,
    against ~19 without it."""

    def __init__(self, reader: HashReader):
        self.reader = reader
        self.hashes: dict[tuple[int, int], bytes] = {}

    def subtree_hash(self, level: int, index: int) -> bytes:
        key = (level, index)
        found = self.hashes.get(key)
        if found is None:
            found = self.hashes[key] = self.reader.subtree_hash(level, index)
        return found


def range_hash(reader: HashReader, begin: int, end: int) -> bytes:
    """MTH(D[begin:end]) from O(log n) subtree hashes; EMPTY_ROOT for an empty range.

    Only for ranges that are nodes of some RFC 9162 tree: ``begin`` must be a
    multiple of the smallest power of two >= ``end - begin`` (true of every
    MTH(D[k:n]) in PATH and PROOF, and of every [0, n)). Other ranges would need a
    different fold, so they raise :class:`ProofError`.
    """
    if not 0 <= begin <= end:
        raise ProofError(f"bad leaf range [{begin}, {end}): need 0 <= begin <= end")
    if begin == end:
        return EMPTY_ROOT
    width = 1 << (end - begin - 1).bit_length()
    if begin % width:
        raise ProofError(
            f"range [{begin}, {end}) is not a node of an RFC 9162 tree "
            f"(begin must be a multiple of {width})"
        )
    return fold_subtrees([reader.subtree_hash(lv, ix) for lv, ix in decompose(begin, end)])


# --- proof generation ------------------------------------------------------------------------


def _node_hash(reader: HashReader, begin: int, end: int) -> bytes:
    """MTH(D[begin:end]) of a node met while walking down the tree."""
    width = end - begin
    if width & (width - 1) == 0:  # complete subtree: one read
        level = width.bit_length() - 1
        return reader.subtree_hash(level, begin >> level)
    return range_hash(reader, begin, end)


def _split(width: int) -> int:
    """k = the largest power of two smaller than width (width >= 2)."""
    return 1 << ((width - 1).bit_length() - 1)


def inclusion_proof(reader: HashReader, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) from RFC 9162 §2.1.3.1, bottom-up.

    Walks from the root to the leaf; at most one sibling is a ragged right
    range, so the whole proof costs O(log size) subtree reads.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is out of range for tree size {size}")
    top_down: list[bytes] = []
    begin, end = 0, size
    while end - begin > 1:
        k = _split(end - begin)
        if index < begin + k:  # PATH(m, D[0:k]) : MTH(D[k:n])
            top_down.append(_node_hash(reader, begin + k, end))
            end = begin + k
        else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            top_down.append(_node_hash(reader, begin, begin + k))
            begin += k
    top_down.reverse()
    return top_down


def consistency_proof(reader: HashReader, size1: int, size2: int) -> list[bytes]:
    """PROOF(size1, D[size2]) from RFC 9162 §2.1.4.1, bottom-up.

    Requires 0 < size1 <= size2; equal sizes give an empty proof. Costs
    O(log size2) subtree reads.
    """
    if size1 <= 0 or size1 > size2:
        raise ProofError(
            f"no consistency proof from size {size1} to size {size2}: need 0 < size1 <= size2"
        )
    top_down: list[bytes] = []
    m = size1
    begin, end = 0, size2
    complete_old_tree = True  # the "b" flag of SUBPROOF
    while m != end - begin:
        k = _split(end - begin)
        if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            top_down.append(_node_hash(reader, begin + k, end))
            end = begin + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            top_down.append(_node_hash(reader, begin, begin + k))
            begin += k
            m -= k
            complete_old_tree = False
    if not complete_old_tree:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        top_down.append(_node_hash(reader, begin, end))
    top_down.reverse()
    return top_down


# --- proof verification ----------------------------------------------------------------------


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    for i, p in enumerate(proof):
        if len(p) != HASH_SIZE:
            raise ProofError(f"proof hash {i} is {len(p)} bytes, want {HASH_SIZE}")


def _inclusion_shape(index: int, size: int) -> tuple[int, int]:
    """(inner, border) lengths of PATH(index, D[size]).

    ``inner`` hashes lie below the level where the paths to ``index`` and to the
    last leaf ``size - 1`` meet; their side follows the bits of ``index``. The
    ``border`` hashes above that level are all left siblings on the right edge.
    """
    inner = (index ^ (size - 1)).bit_length()
    return inner, (index >> inner).bit_count()


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` gives for leaf ``index`` in a tree of ``size`` leaves.

    Requires 0 <= index < size, a 32-byte leaf hash and exactly the RFC 9162
    number of 32-byte proof hashes; raises :class:`ProofError` otherwise.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is out of range for tree size {size}")
    if len(leaf_hash) != HASH_SIZE:
        raise ProofError(f"leaf hash is {len(leaf_hash)} bytes, want {HASH_SIZE}")
    inner, border = _inclusion_shape(index, size)
    if len(proof) != inner + border:
        raise ProofError(
            f"inclusion proof for index {index} in tree size {size} has "
            f"{len(proof)} hashes, want {inner + border}"
        )
    _check_proof_hashes(proof)
    h = leaf_hash
    for i in range(inner):
        h = hash_children(proof[i], h) if (index >> i) & 1 else hash_children(h, proof[i])
    for i in range(inner, inner + border):
        h = hash_children(proof[i], h)
    return h


def _check_root(what: str, root: bytes) -> None:
    if len(root) != HASH_SIZE:
        raise ProofError(f"{what} is {len(root)} bytes, want {HASH_SIZE}")


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf ``index`` with ``leaf_hash`` is in the tree of ``size`` with ``root``.

    Raises :class:`ProofError` for a malformed proof or bad index/size and
    :class:`RootMismatchError` when the proof leads to a different root.
    """
    _check_root("root", root)
    calculated = root_from_inclusion_proof(index, size, leaf_hash, proof)
    if calculated != root:
        raise RootMismatchError(root, calculated)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size1`` with ``root1`` is a prefix of the tree of
    ``size2`` with ``root2`` (RFC 9162 §2.1.4.2).

    Edge policy (transparency-dev's, plus a length check):

    1. ``size1 == 0`` is always rejected, even 0 → 0: an empty tree is a prefix of
       everything, so callers have nothing to verify and should skip the call.
    2. ``size1 == size2`` needs an empty proof and byte-equal roots.
    3. Both roots must be 32 bytes, checked first, also for equal sizes. This is
       stricter than transparency-dev, which accepts equal sizes with any
       byte-equal roots (its probe ``sizes-are-equal-one-and-proof-is-empty``
       uses 12-byte placeholders). A root that is not a SHA-256 digest is a
       caller bug (e.g. hex text passed as bytes) that would otherwise pass
       only when the sizes happen to match, so we fail closed.
    """
    if size1 < 0 or size2 < size1:
        raise ProofError(f"size1 ({size1}) must be between 0 and size2 ({size2})")
    if size1 == 0:
        raise ProofError(
            f"consistency proof from the empty tree (size1 0, size2 {size2}) is meaningless; "
            "skip the check instead"
        )
    _check_root("root1", root1)
    _check_root("root2", root2)
    if size1 == size2:
        if proof:
            raise ProofError(
                f"sizes are equal ({size1}) but the proof has {len(proof)} hashes, want 0"
            )
        if root1 != root2:
            raise RootMismatchError(root2, root1)
        return
    if not proof:
        raise ProofError(f"empty consistency proof from size {size1} to size {size2}")

    # size1 = 2**shift * odd: the old tree's last complete subtree is at level `shift`,
    # node `index`. The proof is that node's hash (omitted when it is the whole old tree)
    # followed by its inclusion path within the new tree, from level `shift` up.
    shift = (size1 & -size1).bit_length() - 1
    index = (size1 - 1) >> shift
    inner, border = _inclusion_shape(index, ((size2 - 1) >> shift) + 1)
    start = 1 if index else 0
    if len(proof) != start + inner + border:
        raise ProofError(
            f"consistency proof from size {size1} to size {size2} has {len(proof)} hashes, "
            f"want {start + inner + border}"
        )
    _check_proof_hashes(proof)
    seed = proof[0] if start else root1
    hash1 = hash2 = seed
    for i in range(inner):
        p = proof[start + i]
        if (index >> i) & 1:  # left sibling: in both trees
            hash1 = hash_children(p, hash1)
            hash2 = hash_children(p, hash2)
        else:  # right sibling: only in the new tree
            hash2 = hash_children(hash2, p)
    for p in proof[start + inner :]:
        hash1 = hash_children(p, hash1)
        hash2 = hash_children(p, hash2)
    if hash1 != root1:
        raise RootMismatchError(root1, hash1)
    if hash2 != root2:
        raise RootMismatchError(root2, hash2)


# --- in-memory tree and compact range --------------------------------------------------------


def rehash_above(levels: list[list[bytes]], index: int) -> None:
    """After leaf ``index`` of ``levels`` (complete subtree hashes by level, as
    MemoryTree keeps them) changed, recompute the complete subtrees above it."""
    level, i = 0, index
    while level + 1 < len(levels) and (i >> 1) < len(levels[level + 1]):
        left = i & ~1
        parent = hash_children(levels[level][left], levels[level][left + 1])
        level += 1
        i >>= 1
        levels[level][i] = parent


class MemoryTree:
    """A :class:`HashReader` over leaf hashes held in memory.

    ``levels[l][i]`` is the hash of complete subtree (l, i). Append, point
    update (:meth:`set`) and :meth:`root` cost O(log n) hash operations.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0])

    def __len__(self) -> int:
        return self.size

    def append(self, leaf_hash: bytes) -> int:
        """Add a leaf hash; returns its index."""
        _check_hash("leaf_hash", leaf_hash)
        levels = self._levels
        index = len(levels[0])
        levels[0].append(leaf_hash)
        h, level, i = leaf_hash, 0, index
        while i & 1:  # this leaf completed the subtree (level + 1, i >> 1)
            h = hash_children(levels[level][i - 1], h)
            level += 1
            i >>= 1
            if level == len(levels):
                levels.append([])
            levels[level].append(h)
        return index

    def set(self, index: int, leaf_hash: bytes) -> None:
        """Replace the leaf hash at ``index`` and recompute the complete subtrees above it."""
        _check_hash("leaf_hash", leaf_hash)
        levels = self._levels
        if not 0 <= index < len(levels[0]):
            raise ProofError(f"leaf index {index} is out of range for tree size {self.size}")
        levels[0][index] = leaf_hash
        rehash_above(levels, index)

    def subtree_hash(self, level: int, index: int) -> bytes:
        """Hash of complete subtree (level, index)."""
        if 0 <= level < len(self._levels) and 0 <= index < len(self._levels[level]):
            return self._levels[level][index]
        raise ProofError(
            f"no complete subtree at level {level}, index {index} in tree size {self.size}"
        )

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all), from O(log n) stored hashes."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ProofError(f"tree size {size} is out of range for tree size {self.size}")
        return fold_subtrees([self._levels[lv][ix] for lv, ix in decompose(0, size)])

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) for the first ``size`` leaves (default: all)."""
        size = self.size if size is None else size
        if size > self.size:
            raise ProofError(f"tree size {size} is beyond the current size {self.size}")
        return inclusion_proof(self, index, size)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[size2]) (size2 defaults to the current size)."""
        size2 = self.size if size2 is None else size2
        if size2 > self.size:
            raise ProofError(f"tree size {size2} is beyond the current size {self.size}")
        return consistency_proof(self, size1, size2)


class Frontier:
    """Compact range over leaves [0, size): the hashes of ``decompose(0, size)``.

    Enough to append leaves and compute roots without re-reading the log; each
    :meth:`append` reports the complete subtrees it finished so a store can
    persist interior nodes.
    """

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []  # left to right, largest subtree first

    @classmethod
    def from_subtrees(cls, size: int, hashes: Sequence[bytes]) -> Frontier:
        """Rebuild from the hashes of ``decompose(0, size)``, left to right."""
        if size < 0:
            raise ValidationError("size", f"must be >= 0, got {size}")
        if len(hashes) != size.bit_count():
            raise ValidationError(
                "hashes",
                f"a tree of size {size} has {size.bit_count()} subtrees, got {len(hashes)} hashes",
            )
        for i, h in enumerate(hashes):
            _check_hash(f"hashes[{i}]", h)
        frontier = cls()
        frontier._size = size
        frontier._hashes = list(hashes)
        return frontier

    @property
    def size(self) -> int:
        """Number of leaves covered."""
        return self._size

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf; returns every complete subtree ``(level, index, hash)`` this
        append finished, the leaf itself (level 0) first."""
        _check_hash("leaf_hash", leaf_hash)
        index = self._size
        completed = [(0, index, leaf_hash)]
        h, level, i = leaf_hash, 0, index
        hashes = self._hashes
        while i & 1:
            h = hash_children(hashes.pop(), h)
            level += 1
            i >>= 1
            completed.append((level, i, h))
        hashes.append(h)
        self._size = index + 1
        return completed

    def root(self) -> bytes:
        """MTH of the leaves covered."""
        return fold_subtrees(self._hashes)

    def subtrees(self) -> list[bytes]:
        """Hashes of ``decompose(0, size)``, left to right (input of :meth:`from_subtrees`)."""
        return list(self._hashes)
