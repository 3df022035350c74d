"""The heads tree: one leaf per chain, its root in every checkpoint (pure).

Two rules, told apart by the checkpoint's extension line (docs/protocol.md §6):

- ``provenance-heads COUNT ROOT`` (*creation order*, the first rule): leaf *i*
  is the chain with id *i*+1, leaf data ``"{subject}\\n{length}\\n{head hex}"``.
  A bundle can show that its chain is in the tree, not that it is the only
  chain for its subject.
- ``provenance-heads/v2 COUNT ROOT`` (*sorted*): the leaves are sorted by the
  chain's key, its genesis link ``link_0`` (docs/protocol.md §5: a hash of the
  subject, domain-separated), with no key twice; leaf data
  ``key (32 bytes) ‖ length (8 bytes, big-endian) ‖ head (32 bytes)``. A chain's
  proof together with its neighbours' leaves and proofs shows that no other leaf
  has its key: a second chain for the subject would have to sit between them,
  breaking the order that any auditor rebuilding the tree checks.

`SortedHeads` maintains the sorted tree (the ledger's, the auditor's and the
bundle builder's); `check_neighbours` is the verifier's side.
"""

from __future__ import annotations

import base64
import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from provenance.core import chain as chains
from provenance.core.checkpoint import Checkpoint
from provenance.core.errors import VerificationError
from provenance.core.merkle import (
    MemoryTree,
    decompose,
    fold_subtrees,
    hash_children,
    hash_leaf,
    inclusion_proof,
    rehash_above,
    verify_inclusion,
)

CREATION = "provenance-heads"
"""Extension keyword of the first rule: leaves in chain creation order."""
SORTED = "provenance-heads/v2"
"""Extension keyword of the sorted rule: leaves sorted by chain key."""
KEY_SIZE = 32
ENTRY_SIZE = KEY_SIZE + 8 + 32


class DuplicateChainError(VerificationError):
    """Two chains share a subject (a key): the heads tree cannot be sorted strictly."""


@dataclass(frozen=True)
class HeadsLine:
    """A checkpoint's heads extension: which rule, how many chains, the root."""

    rule: str  # CREATION or SORTED
    count: int
    root: bytes

    @property
    def is_sorted(self) -> bool:
        return self.rule == SORTED

    def to_text(self) -> str:
        return f"{self.rule} {self.count} {base64.b64encode(self.root).decode()}"


def parse_heads_line(extensions: Iterable[str]) -> HeadsLine:
    """The one heads extension line of a checkpoint, either rule; refuses none or two."""
    found: list[HeadsLine] = []
    for line in extensions:
        parts = line.split(" ")
        if parts[0] not in (CREATION, SORTED):
            continue
        if len(parts) != 3 or not parts[1].isdigit() or not parts[1].isascii():
            raise VerificationError(f"malformed {parts[0]} line in checkpoint: {line[:200]!r}")
        if parts[1] != "0" and parts[1].startswith("0"):
            raise VerificationError(f"{parts[0]} count has leading zeroes: {line[:200]!r}")
        try:
            root = base64.b64decode(parts[2], validate=True)
        except ValueError:
            raise VerificationError(f"{parts[0]} root is not base64: {line[:200]!r}") from None
        if len(root) != 32 or base64.b64encode(root).decode() != parts[2]:
            raise VerificationError(f"{parts[0]} root is not 32 bytes in canonical base64")
        found.append(HeadsLine(parts[0], int(parts[1]), root))
    if not found:
        raise VerificationError(
            f"checkpoint has no {CREATION} line: it was not made by a Provenance ledger"
        )
    if len(found) > 1:
        raise VerificationError("checkpoint has more than one heads line")
    return found[0]


def chain_key(subject: str) -> bytes:
    """A chain's sort key in the sorted heads tree: its genesis link."""
    return chains.genesis_link(subject)


def sorted_entry(key: bytes, length: int, head: bytes) -> bytes:
    """The sorted tree's leaf data for one chain (72 bytes)."""
    if len(key) != KEY_SIZE or len(head) != 32 or not 0 <= length < 2**64:
        raise VerificationError("a heads entry needs a 32-byte key and head, a 64-bit length")
    return key + length.to_bytes(8, "big") + head


def parse_sorted_entry(entry: bytes) -> tuple[bytes, int, bytes]:
    """(key, length, head) of a sorted tree's leaf data."""
    if len(entry) != ENTRY_SIZE:
        raise VerificationError(f"a heads entry is {ENTRY_SIZE} bytes, got {len(entry)}")
    return entry[:32], int.from_bytes(entry[32:40], "big"), entry[40:]


class SortedHeads:
    """The sorted heads tree, kept up to date one chain at a time.

    `put` changes or adds a chain's (length, head). Changing a chain costs
    O(log chains) hashes. A new chain shifts the leaves after it, so the
    complete subtrees from its position on are recomputed, once per commit,
    lazily at the next `root` or proof: about (chains − position) hashes.
    """

    def __init__(self) -> None:
        self._keys: list[bytes] = []  # sorted
        self._entries: dict[bytes, bytes] = {}  # key -> leaf data
        self._levels: list[list[bytes]] = [[]]  # complete subtree hashes, as MemoryTree's
        self._dirty_from: int | None = None  # first leaf whose subtrees need recomputing

    @classmethod
    def of(cls, rows: Iterable[tuple[str, int, bytes]]) -> SortedHeads:
        """The tree over (subject, length, head) rows; refuses a subject twice."""
        heads = cls()
        for subject, length, head in rows:
            key = chain_key(subject)
            if key in heads._entries:
                raise DuplicateChainError(
                    f"two chains for {subject}: the heads tree has a key twice"
                )
            heads._entries[key] = sorted_entry(key, length, head)
        heads._keys = sorted(heads._entries)
        heads._levels = [[hash_leaf(heads._entries[k]) for k in heads._keys]]
        heads._dirty_from = 0
        return heads

    @property
    def size(self) -> int:
        return len(self._keys)

    def put(self, subject: str, length: int, head: bytes) -> None:
        key = chain_key(subject)
        entry = sorted_entry(key, length, head)
        leaf = hash_leaf(entry)
        known = key in self._entries
        self._entries[key] = entry
        position = bisect.bisect_left(self._keys, key)
        leaves = self._levels[0]
        if not known:
            self._keys.insert(position, key)
            leaves.insert(position, leaf)
        else:
            leaves[position] = leaf
            if self._dirty_from is None:  # update the complete subtrees above it
                rehash_above(self._levels, position)
                return
        if self._dirty_from is None or position < self._dirty_from:
            self._dirty_from = position

    def _built(self) -> SortedHeads:
        start = self._dirty_from
        if start is None:
            return self
        levels = self._levels
        level = 0
        while len(levels[level]) > 1:
            below = levels[level]
            if level + 1 == len(levels):
                levels.append([])
            first = (start >> (level + 1)) if start is not None else 0
            kept = levels[level + 1][:first]
            kept.extend(
                hash_children(below[2 * i], below[2 * i + 1]) for i in range(first, len(below) // 2)
            )
            levels[level + 1] = kept
            level += 1
        del levels[level + 1 :]
        self._dirty_from = None
        return self

    def subtree_hash(self, level: int, index: int) -> bytes:
        """Hash of complete subtree (level, index) (a `merkle.HashReader`)."""
        levels = self._built()._levels
        if 0 <= level < len(levels) and 0 <= index < len(levels[level]):
            return levels[level][index]
        raise VerificationError(f"no complete subtree at level {level}, index {index}")

    def root(self) -> bytes:
        levels = self._built()._levels
        return fold_subtrees([levels[lv][ix] for lv, ix in decompose(0, self.size)])

    def line(self) -> HeadsLine:
        return HeadsLine(SORTED, self.size, self.root())

    def position(self, subject: str) -> int:
        key = chain_key(subject)
        if key not in self._entries:
            raise KeyError(subject)
        return bisect.bisect_left(self._keys, key)

    def entry(self, position: int) -> bytes:
        return self._entries[self._keys[position]]

    def inclusion_proof(self, position: int) -> list[bytes]:
        return inclusion_proof(self._built(), position, self.size)


def creation_order_root(rows: Sequence[tuple[str, int, bytes]]) -> HeadsLine:
    """The first rule's heads line over (subject, length, head) rows in chain id order."""
    tree = MemoryTree(chains.head_leaf(s, n, h) for s, n, h in rows)
    return HeadsLine(CREATION, tree.size, tree.root())


@dataclass(frozen=True)
class Neighbour:
    """A leaf next to a chain's in the sorted heads tree, with its proof."""

    entry: bytes
    proof: list[bytes]


def check_sorted_chain(
    subject: str,
    length: int,
    head: bytes,
    position: int,
    proof: Sequence[bytes],
    left: Neighbour | None,
    right: Neighbour | None,
    line: HeadsLine,
) -> None:
    """Check that (subject, length, head) is the one leaf for its subject in the
    sorted heads tree of ``line``: its own inclusion at ``position``, and the
    leaves at ``position`` ± 1 (absent only at the ends) included with smaller
    and larger keys. Raises `VerificationError` naming what failed."""
    key = chain_key(subject)
    try:
        verify_inclusion(
            position, line.count, hash_leaf(sorted_entry(key, length, head)), proof, line.root
        )
    except VerificationError:
        raise VerificationError(
            f"{subject}: the bundle's {length} events do not match the chain head the "
            "checkpoint commits to — events were left out, added or changed"
        ) from None
    for side, neighbour, at in (("left", left, position - 1), ("right", right, position + 1)):
        if not 0 <= at < line.count:
            if neighbour is not None:
                raise VerificationError(
                    f"{subject}: a {side} neighbour beyond the heads tree's end"
                )
            continue
        if neighbour is None:
            raise VerificationError(
                f"{subject}: the bundle lacks the {side} neighbour of its chain in the heads "
                "tree, so it cannot show that this is the only chain for its subject"
            )
        their_key, _, _ = parse_sorted_entry(neighbour.entry)
        try:
            verify_inclusion(at, line.count, hash_leaf(neighbour.entry), neighbour.proof, line.root)
        except VerificationError:
            raise VerificationError(
                f"{subject}: the {side} neighbour of its chain is not in the heads tree as signed"
            ) from None
        in_order = their_key < key if side == "left" else their_key > key
        if not in_order:
            raise VerificationError(
                f"{subject}: a second chain for this subject is in the heads tree (its {side} "
                "neighbour does not sort strictly apart from it): the bundle cannot show the "
                "lot's one history — refused"
            )


def check_chain_head(
    subject: str,
    length: int,
    head: bytes,
    position: int,
    proof: Sequence[bytes],
    left: Neighbour | None,
    right: Neighbour | None,
    line: HeadsLine,
) -> None:
    """Check that the chain of *subject* with *length* events ending in *head*
    is the one the heads tree of ``line`` holds, by either rule (under the
    sorted rule, with its neighbours: `check_sorted_chain`). Raises
    `VerificationError` naming what failed."""
    if line.is_sorted:
        check_sorted_chain(subject, length, head, position, proof, left, right, line)
        return
    if left is not None or right is not None:
        raise VerificationError(f"{subject}: neighbours in a creation-order heads tree")
    try:
        verify_inclusion(
            position, line.count, chains.head_leaf(subject, length, head), proof, line.root
        )
    except VerificationError:
        raise VerificationError(
            f"{subject}: its {length} events do not match the chain head the checkpoint "
            "commits to — events were left out, added or changed"
        ) from None


def check_rule_boundary(
    checkpoints: Iterable[tuple[int, HeadsLine]], sorted_from: int | None
) -> list[str]:
    """Problems with which heads rule each checkpoint uses: checkpoints of a size
    above ``sorted_from`` (meta `sorted_heads_from`; None: not migrated) must use
    the sorted rule, the others the creation-order rule. A creation-order
    checkpoint after the switch would let the operator hand out bundles that
    cannot rule out a second chain."""
    problems = []
    for size, line in checkpoints:
        want_sorted = sorted_from is not None and size > sorted_from
        if line.is_sorted != want_sorted:
            want = SORTED if want_sorted else CREATION
            problems.append(
                f"checkpoint at size {size} uses {line.rule}, but the rules of its time "
                f"(sorted heads from log size {sorted_from}) say {want}"
            )
    return problems


def audit_heads(
    checkpoints: Sequence[Checkpoint],
    sorted_from: int | None,
    rows: Sequence[tuple[str, int, bytes]],
) -> list[str]:
    """What an auditor finds wrong with the heads lines of a ledger's checkpoints
    (oldest first) given its chains' (subject, length, head) rows in chain id
    order: each checkpoint on the rule of its time (`check_rule_boundary`), and
    the latest one's heads line equal to the tree rebuilt from the rows by its
    rule — for the sorted rule, strictly sorted, no subject twice."""
    problems: list[str] = []
    lines = []
    for checkpoint in checkpoints:
        try:
            lines.append((checkpoint.size, parse_heads_line(checkpoint.extensions)))
        except VerificationError as exc:
            problems.append(f"checkpoint at size {checkpoint.size}: {exc}")
    problems += check_rule_boundary(lines, sorted_from)
    if not lines or lines[-1][0] != checkpoints[-1].size:
        return problems
    line = lines[-1][1]
    if line.is_sorted:
        try:
            rebuilt = SortedHeads.of(rows).line()
        except DuplicateChainError as exc:
            return [*problems, str(exc)]
    else:
        rebuilt = creation_order_root(rows)
    if (rebuilt.count, rebuilt.root) != (line.count, line.root):
        problems.append(
            "the chain heads differ from those the latest checkpoint commits to: a lot's "
            "or identity's history was changed"
            + (", or the heads tree it signed is not sorted" if line.is_sorted else "")
        )
    return problems
