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
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from . import chain as chains
from .bundle import BundleReport, verify_bundle
from .checkpoint import open_checkpoint
from .errors import ProvenanceError, SignatureError, VerificationError
from .kinds import REGISTRAR, SIGNER_ROLES
from .merkle import NODE_PREFIX, hash_leaf, range_hash
from .proofs import build_bundle, checkpoint_body
from .store import NODE_MIN_LEVEL, Store
from .timefmt import parse_time

CHUNK = 8192


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
class _Registry:
    """Who could sign what, as the log itself says (not the identities table)."""

    enrolled: dict[str, tuple[int, str]] = field(default_factory=dict)  # did -> (index, role)
    revoked: dict[str, tuple[int, int, str]] = field(
        default_factory=dict
    )  # did -> (idx, from_us, text)


def _check_range(
    path: str | None, store: Store | None, begin: int, end: int, registry: _Registry
) -> tuple[list[bytes | None], list[Problem], list[str]]:
    """Worker: check events [begin, end); return recomputed ids by position."""
    own = store is None
    store = store or Store(path, create=False, readonly=True)
    ids: list[bytes | None] = [None] * (end - begin)
    problems: list[Problem] = []
    warnings: list[str] = []
    try:
        expected = begin
        rows = store.conn.execute(
            Store._EVENT_COLUMNS + "WHERE e.idx >= ? AND e.idx < ? ORDER BY e.idx", (begin, end)
        )
        for row in rows:
            index = row[0]
            while expected < index:
                problems.append(Problem("event missing from the log (deleted?)", None, expected))
                expected += 1
            expected = index + 1
            try:
                stored = store._stored(row)
                envelope = stored.envelope
                event_id = envelope.id_bytes
            except (ProvenanceError, ValueError, TypeError, KeyError) as exc:
                problems.append(Problem(f"stored event cannot be read back: {exc}", None, index))
                continue
            ids[index - begin] = event_id
            hex_id = envelope.event_id
            if hash_leaf(event_id) != stored.leaf:
                problems.append(
                    Problem(
                        "content, signer or signature differs from what was logged (edited after "
                        "it was appended)",
                        hex_id,
                        index,
                    )
                )
            try:
                envelope.verify_signature()
            except SignatureError:
                problems.append(Problem("signature does not verify", hex_id, index))
            except ProvenanceError as exc:
                problems.append(Problem(f"signer is not a valid key: {exc}", hex_id, index))
            enrolled = registry.enrolled.get(envelope.signer)
            if enrolled is None or enrolled[0] > index or (enrolled[0] == index and index != 0):
                problems.append(
                    Problem(
                        f"signer {envelope.signer} was not enrolled before this event",
                        hex_id,
                        index,
                    )
                )
                continue
            role = enrolled[1]
            if role not in SIGNER_ROLES.get(envelope.kind, ()):
                problems.append(Problem(f"a {role} may not sign {envelope.kind}", hex_id, index))
            revoked = registry.revoked.get(envelope.signer)
            if revoked is not None:
                revoke_index, from_us, from_text = revoked
                if parse_time(envelope.time) >= from_us:
                    if revoke_index < index:
                        problems.append(
                            Problem(
                                f"accepted although its signer was revoked from {from_text}",
                                hex_id,
                                index,
                            )
                        )
                    else:
                        warnings.append(
                            f"event {hex_id} is dated after its signer's revocation "
                            f"time {from_text} (revocation logged later)"
                        )
        while expected < end:
            problems.append(
                Problem("event missing from the log (deleted or truncated?)", None, expected)
            )
            expected += 1
    finally:
        if own:
            store.close()
    return ids, problems, warnings


def _registry(store: Store, report: Report) -> _Registry:
    """Replay enrol/revoke events from the log (read cheaply by kind)."""
    registry = _Registry()
    rows = store.conn.execute(
        Store._EVENT_COLUMNS + "WHERE e.kind IN (1, 2) ORDER BY e.idx"
    ).fetchall()
    registrar = store.get_meta("registrar")
    for row in rows:
        try:
            stored = store._stored(row)
        except (ProvenanceError, ValueError, TypeError) as exc:
            report.add(f"registry event cannot be read back: {exc}", None, row[0])
            continue
        envelope, index = stored.envelope, stored.index
        data = envelope.data
        if envelope.kind == "enrol":
            role = data.get("role") if data.get("type") == "party" else data.get("type")
            if data.get("type") == REGISTRAR and (index != 0 or envelope.signer != registrar):
                report.add("a second registrar enrolment", envelope.event_id, index)
                continue
            registry.enrolled.setdefault(data.get("subject"), (index, role))
        elif envelope.kind == "revoke":
            try:
                from_us = parse_time(data.get("from"))
            except ProvenanceError:
                continue
            registry.revoked.setdefault(data.get("subject"), (index, from_us, data.get("from")))
    return registry


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


def verify_ledger(
    store: Store,
    log_public_key: bytes,
    *,
    external_checkpoint: str | None = None,
    workers: int | None = None,
) -> Report:
    """Check the whole ledger. Never raises for what it finds: every problem is
    in the report, with the event it concerns."""
    report = Report()
    size = store.log_size()
    report.log_size = size
    registry = _registry(store, report)

    # 1. Events, in parallel chunks.
    ranges = [(begin, min(begin + CHUNK, size)) for begin in range(0, size, CHUNK)]
    workers = workers or os.cpu_count() or 1
    ids: list[bytes | None] = []
    if store.path is not None and workers > 1 and len(ranges) > 1:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            results = pool.map(
                _check_range,
                [str(store.path)] * len(ranges),
                [None] * len(ranges),
                [r[0] for r in ranges],
                [r[1] for r in ranges],
                [registry] * len(ranges),
            )
            for chunk_ids, problems, warnings in results:
                ids.extend(chunk_ids)
                report.problems.extend(problems)
                report.warnings.extend(warnings)
    else:
        for begin, end in ranges:
            chunk_ids, problems, warnings = _check_range(None, store, begin, end, registry)
            ids.extend(chunk_ids)
            report.problems.extend(problems)
            report.warnings.extend(warnings)
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

    # 2. The Merkle log from the recomputed leaves.
    leaves = [hash_leaf(i) if i is not None else b"\0" * 32 for i in ids]
    levels = _levels(leaves)
    reader = _LevelReader(levels)
    for level, index, stored_hash in store.log_nodes():
        if level < NODE_MIN_LEVEL or level >= len(levels) or index >= len(levels[level]):
            report.add(f"stored log node ({level}, {index}) lies outside the log")
        elif levels[level][index] != stored_hash:
            report.add(f"stored log node ({level}, {index}) differs from the recomputed one")
    log_key_name = store.get_meta("origin") or ""
    checkpoints = store.checkpoints()
    if not checkpoints:
        report.add("the ledger has no signed checkpoint")
    for cp_size, note in checkpoints:
        try:
            checkpoint = open_checkpoint(note, log_key_name, log_public_key)
        except VerificationError as exc:
            report.add(f"checkpoint at size {cp_size} is not signed by the log key: {exc}")
            continue
        if checkpoint.size != cp_size or checkpoint.size > size:
            report.add(
                f"checkpoint at size {checkpoint.size} covers more than the {size} events "
                "in the log: events were deleted or the tail truncated"
            )
            continue
        if range_hash(reader, 0, checkpoint.size) != checkpoint.root_hash:
            report.add(
                f"the first {checkpoint.size} events do not hash to the signed checkpoint "
                "root: logged events were edited, removed, inserted or reordered"
            )
    if checkpoints and checkpoints[-1][0] != size:
        report.add(
            f"the latest checkpoint covers {checkpoints[-1][0]} events but the log has "
            f"{size}: events were added outside the ledger, or removed"
        )

    # 3. Chains and the heads tree.
    _verify_chains(
        store,
        ids,
        report,
        checkpoints[-1][1] if checkpoints else None,
        log_key_name,
        log_public_key,
    )

    # 4. A checkpoint kept outside the database.
    if external_checkpoint is not None:
        _verify_external(external_checkpoint, log_key_name, log_public_key, size, reader, report)
    return report


def _verify_chains(
    store: Store,
    ids: list[bytes | None],
    report: Report,
    latest: str | None,
    name: str,
    log_public_key: bytes,
) -> None:
    from .merkle import MemoryTree

    heads = MemoryTree()
    chain_rows = {
        chain_id: (subject, head, length) for chain_id, subject, head, length in store.chains()
    }
    current: int | None = None
    link = b""
    pos = 0
    last_event = -1

    def close(chain_id: int) -> None:
        subject, head, length = chain_rows[chain_id]
        if head != link or length != pos:
            report.add(
                f"chain of {subject}: stored head/length ({length}) differ from its links ({pos})"
            )

    for chain_id, position, event_index, stored_link in store.links():
        if chain_id != current:
            if current is not None:
                close(current)
            if chain_id not in chain_rows:
                report.add(f"links of unknown chain {chain_id}")
                current = None
                continue
            current, pos, last_event = chain_id, 0, -1
            link = chains.genesis_link(chain_rows[chain_id][0])
        if current is None:
            continue
        subject = chain_rows[chain_id][0]
        event_id = ids[event_index] if 0 <= event_index < len(ids) else None
        hex_id = event_id.hex() if event_id else None
        if position != pos:
            report.add(
                f"chain of {subject}: link {pos} is missing (found position {position})",
                hex_id,
                event_index,
            )
            pos = position
        if event_index <= last_event:
            report.add(
                f"chain of {subject}: events out of log order at position {position}",
                hex_id,
                event_index,
            )
        if event_id is None:
            report.add(
                f"chain of {subject}: link {position} points at a missing event", None, event_index
            )
            link = stored_link
        else:
            expected = chains.next_link(link, event_id)
            if expected != stored_link:
                report.add(
                    f"chain of {subject}: link {position} does not follow from the previous "
                    "link and this event (edited, inserted, removed or reordered)",
                    hex_id,
                    event_index,
                )
            link = stored_link
        last_event = event_index
        pos += 1
    if current is not None:
        close(current)
    for chain_id in sorted(chain_rows):
        subject, head, length = chain_rows[chain_id]
        heads.append(chains.head_leaf(subject, length, head))
    report.chains_checked = len(chain_rows)
    if latest is not None:
        try:
            checkpoint = open_checkpoint(latest, name, log_public_key)
            count, root = chains.parse_heads_extension(checkpoint.extensions)
        except VerificationError:
            return  # already reported above
        if count != heads.size or root != heads.root():
            report.add(
                "the chain heads differ from those the latest checkpoint commits to: a "
                "lot's or identity's history was changed"
            )


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
            f"{checkpoint.size}: the database was rolled back or truncated"
        )
        return
    if range_hash(reader, 0, checkpoint.size) != checkpoint.root_hash:
        report.add(
            f"the first {checkpoint.size} events differ from the checkpoint you hold: "
            "history was rewritten"
        )


def verify_lot(store: Store, lot_uri: str, log_public_key: bytes) -> BundleReport:
    """Check one lot exactly as an outsider would: build its bundle, verify it."""
    return verify_bundle(build_bundle(store, lot_uri), log_public_key)


__all__ = ["Problem", "Report", "checkpoint_body", "verify_ledger", "verify_lot"]
