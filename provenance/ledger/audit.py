"""Verification of a whole ledger, one lot, or against a checkpoint kept
outside the database.

Whole-ledger verification recomputes everything from the events themselves
and compares it with what the store claims and what the log key signed:

1. every event (in parallel, over all cores): rebuild its canonical bytes,
   check the signature, recompute its id and compare with the logged leaf;
   check its signer was enrolled before it, not revoked at its time, and
   allowed to sign its kind;
2. the Merkle log: the root over the recomputed leaves must equal the signed
   checkpoints, and stored interior nodes must match;
3. every chain: each link recomputed from the previous one and the event id;
   the heads tree over all chains must equal the checkpoint's heads root;
4. a checkpoint held outside (``--checkpoint``): same log key, not larger
   than the database's log (else rolled back), and the root of the first
   ``size`` leaves must match (else history was rewritten).

Before these, the replays of audit_state.py: who may sign, rebuilt from the
log; the identities table against that; the derived tables against a replay
of the log through the ledger's own rules.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from provenance.core import chain as chains
from provenance.core.bundle import BundleReport, verify_bundle
from provenance.core.checkpoint import Checkpoint, open_checkpoint
from provenance.core.ed25519 import InvalidSignature
from provenance.core.envelope import b64url, canonical_pair
from provenance.core.errors import ProvenanceError, VerificationError
from provenance.core.heads import audit_heads
from provenance.core.identity import verifier_for
from provenance.core.kinds import KIND_NAMES, SIGNER_ROLES
from provenance.core.merkle import LEAF_PREFIX, NODE_PREFIX, MemoryTree, hash_children, range_hash
from provenance.core.progress import Progress
from provenance.core.progress import report as report_progress
from provenance.core.timefmt import parse_time
from provenance.infra import lifeline
from provenance.ledger.audit_state import check_identities, check_state, signer_history
from provenance.ledger.kinds.base import SignerHistory
from provenance.ledger.proofs import build_bundle, checkpoint_body
from provenance.store.db import NODE_MIN_LEVEL, Store, StoreError
from provenance.store.migrations import SORTED_HEADS_FROM
from provenance.store.rows import parse_ids

CHUNK = 8192  # events per verification task, at most
MIN_CHUNK = 512


@dataclass
class Problem:
    message: str
    event_id: str | None = None
    index: int | None = None

    def __str__(self) -> str:
        where = []
        if self.event_id:
            where.append(f"event {self.event_id}")
        if self.index is not None:
            where.append(f"log index {self.index}")
        return (", ".join(where) + ": " if where else "") + self.message


@dataclass
class Report:
    log_size: int = 0
    events_checked: int = 0
    chains_checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, message: str, event_id: str | None = None, index: int | None = None) -> None:
        self.problems.append(Problem(message, event_id, index))


@dataclass
class _RangeResult:
    begin: int
    ids: list[bytes | None]
    levels: list[list[bytes]]  # complete-subtree hashes inside the range, per level
    problems: list[Problem]
    warnings: list[str]


def _check_range(
    path: str | None, store: Store | None, begin: int, end: int, registry: SignerHistory
) -> _RangeResult:
    """Worker: check events [begin, end) — an aligned power-of-two block — and
    the chain links and Merkle nodes that lie inside it."""
    own = store is None
    store = store or Store(path, create=False, readonly=True)
    try:
        ids, leaves, problems, warnings = _check_events(store, begin, end, registry)
        _check_links(store, begin, end, ids, problems)
        levels = _levels(leaves)
        _check_nodes(store, begin, end, levels, problems)
    finally:
        if own:
            store.close()
    return _RangeResult(begin, ids, levels, problems, warnings)


_MISSING = b"\0" * 32


def _check_events(
    store: Store, begin: int, end: int, registry: SignerHistory
) -> tuple[list[bytes | None], list[bytes], list[Problem], list[str]]:
    """Recomputed event ids and leaf hashes of [begin, end), and what is wrong."""
    ids: list[bytes | None] = [None] * (end - begin)
    leaves: list[bytes] = [_MISSING] * (end - begin)
    problems: list[Problem] = []
    warnings: list[str] = []
    expected = begin
    rows = store.event_rows(begin, end)
    sha256 = hashlib.sha256
    subject = store.subject
    for index, kind, did, seq, time, named, _lots, data, sig, stored_leaf in rows:
        while expected < index:
            problems.append(Problem("event missing from the log (deleted?)", None, expected))
            expected += 1
        expected = index + 1
        try:
            kind_name = KIND_NAMES[kind]
            if did is None:
                raise ValueError("its signer is not in the identities table")
            uris = None if named is None else [subject(i) for i in parse_ids(named)]
            signing, whole = canonical_pair(kind_name, did, seq, time, uris, data, b64url(sig))
        except (ProvenanceError, ValueError, TypeError, KeyError) as exc:
            problems.append(Problem(f"stored event cannot be read back: {exc}", None, index))
            continue
        event_id = ids[index - begin] = sha256(whole).digest()
        leaf = leaves[index - begin] = sha256(LEAF_PREFIX + event_id).digest()
        hex_id = event_id.hex()
        if leaf != stored_leaf:
            problems.append(
                Problem(
                    "content, signer or signature differs from what was logged (edited after "
                    "it was appended)",
                    hex_id,
                    index,
                )
            )
        try:
            verifier_for(did).verify(sig, signing)
        except InvalidSignature:
            problems.append(Problem("signature does not verify", hex_id, index))
        except (ProvenanceError, ValueError) as exc:
            problems.append(Problem(f"signer is not a valid key: {exc}", hex_id, index))
        enrolled = registry.enrolled.get(did)
        if enrolled is None or enrolled[0] > index or (enrolled[0] == index and index != 0):
            problems.append(
                Problem(f"signer {did} was not enrolled before this event", hex_id, index)
            )
            continue
        role = enrolled[1]
        if role not in SIGNER_ROLES.get(kind_name, ()):
            problems.append(Problem(f"a {role} may not sign {kind_name}", hex_id, index))
        revoked = registry.revoked.get(did)
        if revoked is not None:
            revoke_index, from_us, from_text = revoked
            try:
                late = parse_time(time) >= from_us
            except ProvenanceError:
                late = False  # the signature check has already reported this row
            if late and revoke_index < index:
                problems.append(
                    Problem(
                        f"accepted although its signer was revoked from {from_text}", hex_id, index
                    )
                )
            elif late:
                warnings.append(
                    f"event {hex_id} is dated after its signer's revocation time {from_text} "
                    "(revocation logged later)"
                )
    while expected < end:
        problems.append(
            Problem("event missing from the log (deleted or truncated?)", None, expected)
        )
        expected += 1
    return ids, leaves, problems, warnings


def _check_links(
    store: Store, begin: int, end: int, ids: list[bytes | None], problems: list[Problem]
) -> None:
    """Each link whose event lies in [begin, end) must follow from the previous
    link of its chain (stored) and the recomputed event id."""
    rows = store.links_with_previous(begin, end)
    for chain_id, pos, event_index, link, previous, previous_event in rows:
        event_id = ids[event_index - begin]
        hex_id = event_id.hex() if event_id else None
        try:
            subject = store.subject(chain_id)
        except ProvenanceError:
            problems.append(Problem(f"link {pos} of unknown chain {chain_id}", hex_id, event_index))
            continue
        if pos == 0:
            previous = chains.genesis_link(subject)
        elif previous is None:
            problems.append(
                Problem(f"chain of {subject}: link {pos - 1} is missing", hex_id, event_index)
            )
            continue
        elif previous_event >= event_index:
            problems.append(
                Problem(
                    f"chain of {subject}: events out of log order at position {pos}",
                    hex_id,
                    event_index,
                )
            )
        if event_id is None:
            problems.append(
                Problem(
                    f"chain of {subject}: link {pos} points at a missing event", None, event_index
                )
            )
        elif chains.next_link(previous, event_id) != link:
            problems.append(
                Problem(
                    f"chain of {subject}: link {pos} does not follow from the previous link and "
                    "this event (edited, inserted, removed or reordered)",
                    hex_id,
                    event_index,
                )
            )


def _check_nodes(
    store: Store, begin: int, end: int, levels: list[list[bytes]], problems: list[Problem]
) -> None:
    for level in range(NODE_MIN_LEVEL, len(levels)):
        first = begin >> level
        rows = store.log_nodes_at(level, first, first + len(levels[level]))
        for index, stored_hash in rows:
            if levels[level][index - first] != stored_hash:
                problems.append(
                    Problem(f"stored log node ({level}, {index}) differs from the recomputed one")
                )


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    """Complete-subtree hashes per level, bottom-up."""
    levels = [leaves]
    sha = hashlib.sha256
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append(
            [
                sha(NODE_PREFIX + below[i] + below[i + 1]).digest()
                for i in range(0, len(below) - 1, 2)
            ]
        )
    return levels


class _LevelReader:
    def __init__(self, levels: list[list[bytes]]):
        self.levels = levels

    def subtree_hash(self, level: int, index: int) -> bytes:
        return self.levels[level][index]


def _block_size(size: int, workers: int) -> int:
    """A power of two between MIN_CHUNK and CHUNK giving each worker ~4 blocks."""
    target = max(MIN_CHUNK, min(CHUNK, -(-size // (workers * 4))))
    return 1 << (target - 1).bit_length()


def verify_ledger(
    store: Store,
    log_public_key: bytes,
    *,
    external_checkpoint: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Report:
    """Check the whole ledger. Never raises for what it finds: every problem is
    in the report, with the event it concerns. *progress* is told how many of
    the log's events have been checked (`provenance.core.progress`): ``(0,
    size)`` first, then as each block of events is done."""
    report = Report()
    size = store.log_size()
    report.log_size = size
    report_progress(progress, 0, size)
    registry = signer_history(store, report)
    check_identities(store, registry, report)
    check_state(store, report)
    workers = workers or os.cpu_count() or 1
    step = _block_size(size, workers)
    ranges = [(begin, min(begin + step, size)) for begin in range(0, size, step)]
    name = store.get_meta("origin") or ""

    # 1. Events, links and low Merkle levels: in parallel blocks; meanwhile the
    #    checkpoints' signatures and the chain heads here.
    results: list[_RangeResult] = []
    if store.path is not None and workers > 1 and len(ranges) > 1:
        # fork copies every descriptor, the pool's own queue included, so a
        # worker never sees EOF if we die: the lifeline ends it instead.
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=lifeline.hold,
            initargs=(os.getpid(),),
        ) as pool:
            futures = [
                pool.submit(_check_range, str(store.path), None, begin, end, registry)
                for begin, end in ranges
            ]
            checkpoints = _open_checkpoints(store, name, log_public_key, report)
            _check_heads(store, size, report)
            if progress is not None:
                blocks = dict(zip(futures, ranges, strict=True))
                checked = 0
                for future in as_completed(futures):
                    begin, end = blocks[future]
                    checked += end - begin
                    progress(checked, size)
            results = [future.result() for future in futures]
    else:
        checkpoints = _open_checkpoints(store, name, log_public_key, report)
        _check_heads(store, size, report)
        results = []
        for begin, end in ranges:
            results.append(_check_range(None, store, begin, end, registry))
            report_progress(progress, end, size)

    ids: list[bytes | None] = []
    levels: list[list[bytes]] = []
    for result in results:
        ids.extend(result.ids)
        report.problems.extend(result.problems)
        report.warnings.extend(result.warnings)
        for level, hashes in enumerate(result.levels):
            if level == len(levels):
                levels.append([])
            levels[level].extend(hashes)
    report.events_checked = size
    seen: dict[bytes, int] = {}
    for index, event_id in enumerate(ids):
        if event_id is None:
            continue
        if event_id in seen:
            report.add(
                f"duplicate of the event at log index {seen[event_id]}", event_id.hex(), index
            )
        else:
            seen[event_id] = index

    # 2. The Merkle log: finish the levels above the blocks, compare the rest.
    top = len(levels) - 1
    while levels and len(levels[top]) > 1:
        below = levels[top]
        levels.append([hash_children(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
        top += 1
    block_level = step.bit_length() - 1
    for level, index, stored_hash in store.log_nodes(
        min_level=max(NODE_MIN_LEVEL, block_level + 1)
    ):
        if level >= len(levels) or index >= len(levels[level]):
            report.add(f"stored log node ({level}, {index}) lies outside the log")
        elif levels[level][index] != stored_hash:
            report.add(f"stored log node ({level}, {index}) differs from the recomputed one")
    reader = _LevelReader(levels)
    matched = 0  # the largest checkpointed size whose history still matches
    diverged: int | None = None  # the smallest checkpointed size whose history does not
    for checkpoint in checkpoints:
        if checkpoint.size > size:
            report.add(
                f"checkpoint at size {checkpoint.size} covers more than the {size} events in the "
                "log: events were deleted or the tail truncated"
            )
            diverged = checkpoint.size if diverged is None else diverged
        elif range_hash(reader, 0, checkpoint.size) != checkpoint.root_hash:
            report.add(
                f"the first {checkpoint.size} events do not hash to the signed checkpoint root: "
                "logged events were edited, removed, inserted or reordered"
            )
            diverged = checkpoint.size if diverged is None else diverged
        elif diverged is None:
            matched = checkpoint.size
    if diverged is not None:
        report.add(
            f"history diverges from what the log key signed within log indices {matched}.."
            f"{min(diverged, max(size, matched + 1)) - 1} (the first {matched} events still match)",
            None,
            matched,
        )
    if not checkpoints:
        report.add("the ledger has no valid signed checkpoint")
    elif checkpoints[-1].size != size:
        covered = checkpoints[-1].size
        report.add(
            f"the latest checkpoint covers {covered} events but the log has {size}: "
            + (
                f"log indices {covered}..{size - 1} are not covered by any signed checkpoint "
                "(events were added outside the ledger)"
                if size > covered
                else "events were removed"
            ),
            None,
            min(covered, size),
        )

    # 3. The heads tree against the latest checkpoint.
    #    Each checkpoint on the heads rule of its time (docs/protocol.md §6).
    if checkpoints:
        recorded = store.get_meta(SORTED_HEADS_FROM)
        rows = [(subject, length, head) for _, subject, head, length in store.chains()]
        for problem in audit_heads(checkpoints, None if recorded is None else int(recorded), rows):
            report.add(problem)

    # 4. A checkpoint kept outside the database.
    if external_checkpoint is not None:
        _verify_external(external_checkpoint, name, log_public_key, size, reader, report)
    return report


def _open_checkpoints(store: Store, name: str, key: bytes, report: Report) -> list[Checkpoint]:
    opened = []
    for size, note in store.checkpoints():
        try:
            checkpoint = open_checkpoint(note, name, key)
        except VerificationError as exc:
            report.add(f"checkpoint at size {size} is not signed by the log key: {exc}")
            continue
        if checkpoint.size != size:
            report.add(f"checkpoint stored at size {size} says {checkpoint.size}")
            continue
        opened.append(checkpoint)
    return opened


def _check_heads(store: Store, size: int, report: Report) -> MemoryTree:
    """Each chain's stored head and length must match its last link; returns
    the heads tree over the stored heads."""
    heads = MemoryTree()
    rows = store.chain_heads()
    for expected_id, (chain_id, subject, head, length, last, count) in enumerate(rows, start=1):
        if chain_id != expected_id:
            report.add(f"chain ids jump from {expected_id - 1} to {chain_id}: a chain was removed")
        last = chains.genesis_link(subject) if length == 0 else last
        if count != length or head != last:
            report.add(
                f"chain of {subject}: stored head/length ({length}) differ from its links ({count})"
            )
        heads.append(chains.head_leaf(subject, length, head))
    report.chains_checked = heads.size
    stray = store.count_stray_links(size)
    if stray:
        report.add(f"{stray} chain link(s) point at events that are not in the log")
    return heads


def _verify_external(
    note: str, name: str, key: bytes, size: int, reader: Any, report: Report
) -> None:
    try:
        origin = note.split("\n", 1)[0]
        checkpoint = open_checkpoint(note, origin, key)
    except VerificationError as exc:
        report.add(f"the checkpoint you hold does not verify with this log key: {exc}")
        return
    if checkpoint.origin != name:
        report.add(f"the checkpoint you hold is for log {checkpoint.origin!r}, not {name!r}")
        return
    if checkpoint.size > size:
        report.add(
            f"the database holds {size} events but the checkpoint you hold covers "
            f"{checkpoint.size}: the database was rolled back or truncated",
            None,
            size,
        )
        return
    if range_hash(reader, 0, checkpoint.size) != checkpoint.root_hash:
        report.add(
            f"the first {checkpoint.size} events differ from the checkpoint you hold: "
            "history was rewritten",
            None,
            0,
        )


def verify_lot(store: Store, lot_uri: str, log_public_key: bytes) -> BundleReport:
    """Check one lot exactly as an outsider would: build its bundle, verify it."""
    try:
        bundle = build_bundle(store, lot_uri)
    except StoreError as exc:
        raise VerificationError(f"{lot_uri}: its proofs cannot be built: {exc}") from exc
    return verify_bundle(bundle, log_public_key)


__all__ = ["Problem", "Report", "checkpoint_body", "verify_ledger", "verify_lot"]
