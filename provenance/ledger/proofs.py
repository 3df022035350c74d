"""Building proofs from the store: lot proof bundles, inclusion and consistency
proofs. Reads only; the matching checks are in `provenance.core.bundle` and
`provenance.core.merkle`."""

from __future__ import annotations

from typing import Any

from provenance.core import chain as chains
from provenance.core.bundle import FORMAT, b64
from provenance.core.checkpoint import Checkpoint
from provenance.core.errors import NotFound, ProvenanceError, VerificationError
from provenance.core.heads import HeadsLine, Neighbour, SortedHeads, parse_heads_line
from provenance.core.merkle import (
    MemoryTree,
    ReadOnce,
    consistency_proof,
    inclusion_proof,
    range_hash,
)
from provenance.core.tlog_proof import format_tlog_proof
from provenance.store.cosignatures import shown_checkpoint
from provenance.store.db import Store, StoreError


def checkpoint_body(note: str) -> Checkpoint:
    """The checkpoint inside a signed note, *unverified* (for reading sizes)."""
    body, sep, _ = note.partition("\n\n")
    if not sep:
        raise VerificationError("not a signed note: no blank line before the signatures")
    return Checkpoint.from_text(body + "\n")


Row = tuple[int, str, int, bytes]  # chain id, subject, length, head


def heads_at(store: Store, size: int) -> list[Row]:
    """Every chain's (id, subject, length, head) as of log size ``size``: the
    stored heads, with each chain that moved since taken back to the link before
    its first event at or after ``size``, and chains made since left out (a
    chain is made with its first event)."""
    rows = {cid: (subject, length, head) for cid, subject, head, length in store.chains()}
    first: dict[int, tuple[int, bytes | None]] = {}
    for chain_id, pos, _, _, previous, _ in store.links_with_previous(size, store.log_size()):
        if chain_id not in first or pos < first[chain_id][0]:
            first[chain_id] = (pos, previous)
    for chain_id, (pos, previous) in first.items():
        if pos == 0:
            rows.pop(chain_id, None)
        elif previous is None:
            raise StoreError(f"chain {chain_id} lacks link {pos - 1}: run `provenance verify`")
        else:
            rows[chain_id] = (rows[chain_id][0], pos, previous)
    return [(cid, subject, length, head) for cid, (subject, length, head) in sorted(rows.items())]


def heads_tree(rows: list[Row]) -> tuple[MemoryTree, dict[str, int]]:
    """The creation-order heads tree (the first rule, docs/protocol.md §6)."""
    tree = MemoryTree()
    positions: dict[str, int] = {}
    for chain_id, subject, length, head in rows:
        positions[subject] = chain_id - 1
        tree.append(chains.head_leaf(subject, length, head))
    return tree, positions


class HeadsProver:
    """The `heads` member of each chain, by the rule of the bundle's checkpoint."""

    def __init__(self, rows: list[Row], line: HeadsLine) -> None:
        self.line = line
        if line.is_sorted:
            self.sorted: SortedHeads | None = SortedHeads.of((s, n, h) for _, s, n, h in rows)
            root, count = self.sorted.root(), self.sorted.size
        else:
            self.sorted = None
            self.tree, self.positions = heads_tree(rows)
            root, count = self.tree.root(), self.tree.size
        if (root, count) != (line.root, line.count):
            raise StoreError(
                "the chain heads differ from those the checkpoint commits to: run "
                "`provenance verify`"
            )

    def proof(self, subject: str) -> tuple[int, list[bytes], Neighbour | None, Neighbour | None]:
        """(position, proof, left, right) of *subject*'s head, as `check_chain_head`
        takes them. KeyError for a chain the tree does not hold."""
        if self.sorted is None:
            position = self.positions[subject]
            return position, self.tree.inclusion_proof(position), None, None
        tree = self.sorted
        position = tree.position(subject)
        sides = [
            Neighbour(tree.entry(at), tree.inclusion_proof(at)) if 0 <= at < tree.size else None
            for at in (position - 1, position + 1)
        ]
        return position, tree.inclusion_proof(position), sides[0], sides[1]

    def heads(self, subject: str) -> dict[str, Any]:
        if self.sorted is None:
            position = self.positions[subject]
            return {
                "position": position,
                "proof": [b64(h) for h in self.tree.inclusion_proof(position)],
            }
        tree = self.sorted
        position = tree.position(subject)
        out: dict[str, Any] = {
            "position": position,
            "proof": [b64(h) for h in tree.inclusion_proof(position)],
        }
        for side, at in (("left", position - 1), ("right", position + 1)):
            if 0 <= at < tree.size:
                out[side] = {
                    "entry": b64(tree.entry(at)),
                    "proof": [b64(h) for h in tree.inclusion_proof(at)],
                }
        return out


def heads_prover(store: Store, size: int, line: HeadsLine) -> HeadsProver:
    """Proofs of chain heads in the heads tree of the checkpoint of log size
    *size* whose heads extension is *line*. Raises StoreError when the stored
    heads do not make the root the checkpoint signed."""
    return HeadsProver(heads_at(store, size), line)


def build_bundle(store: Store, lot_uri: str, since: str | None = None) -> dict[str, Any]:
    """The proof bundle of one lot as of the checkpoint the ledger shows
    (docs/protocol.md §7): the newest one its witnesses cosigned to the quorum,
    with their cosignature lines; without witnesses, the newest one.

    Each chain carries its events (index, envelope), a C2SP tlog-proof of its
    newest event's log leaf (of every event, for identity chains: few, and the
    enrolled-before and revoked-before checks rest on their indexes), and the proof
    of its head in the heads tree, with its neighbours under the sorted rule.

    With ``since`` (a signed checkpoint of this log the verifier holds), the
    bundle also carries a consistency proof from that checkpoint's tree to the
    bundle's, so that `verify_bundle(…, checkpoint=since)` can accept it.
    """
    with store.snapshot():
        shown = shown_checkpoint(store)  # the newest quorum-cosigned, with its cosignatures
        if shown is None:
            raise NotFound("the ledger has no checkpoint yet: run `provenance init`")
        note = shown.note
        latest = checkpoint_body(note)
        size = latest.size
        found = store.chain_by_subject(lot_uri)
        rows = heads_at(store, size)
        present = {subject for _, subject, _, _ in rows}
        if found is None or lot_uri.startswith("did:"):
            raise NotFound(f"no lot {lot_uri} in this ledger")
        if lot_uri not in present:
            raise NotFound(
                f"lot {lot_uri} is newer than the checkpoint the witnesses last cosigned "
                f"(size {size}): export its bundle once they have cosigned a newer one"
            )
        prover = HeadsProver(rows, parse_heads_line(latest.extensions))
        nodes = ReadOnce(store)

        def log_proof(index: int) -> str:
            return format_tlog_proof(index, inclusion_proof(nodes, index, size), note)

        def chain_entry(chain_id: int, subject: str) -> tuple[dict[str, Any], set[str]]:
            events = [e for e in store.chain_events(chain_id) if e.index < size]
            signers = {stored.envelope.signer for stored in events}
            items: list[dict[str, Any]] = [
                {"index": stored.index, "envelope": stored.envelope.to_json()} for stored in events
            ]
            for item in items:
                if item is items[-1] or subject.startswith("did:"):
                    item["proof"] = log_proof(item["index"])
            entry = {"subject": subject, "events": items, "heads": prover.heads(subject)}
            return entry, signers

        consistency = None if since is None else _consistency(store, since, latest)
        lot_entry, signers = chain_entry(found[0], lot_uri)
        registrar = store.get_meta("registrar")
        if registrar:
            signers.add(registrar)
        entries = [lot_entry]
        # A key that came by rotation needs the chain of the key it rotated from
        # and of the regulator who approved a recovery (docs/protocol.md, "Key
        # rotation"): the chains whose events name such dids, until none is new.
        done: set[str] = set()
        todo = sorted(signers)
        while todo:
            did = todo.pop(0)
            if did in done:
                continue
            done.add(did)
            identity = store.chain_by_subject(did)
            if identity is None:
                raise NotFound(f"signer {did} has no identity chain: run `provenance verify`")
            entry, more = chain_entry(identity[0], did)
            entries.append(entry)
            todo.extend(sorted(more | _rotated_from(entry, did) - done))
    bundle = {"format": FORMAT, "subject": lot_uri, "checkpoint": note, "chains": entries}
    if consistency is not None:
        bundle["consistency"] = consistency
    return bundle


def _rotated_from(entry: dict[str, Any], did: str) -> set[str]:
    """The key a chain's first event rotated from, and the regulator who
    approved it, if it is a rotation to *did*."""
    first = entry["events"][0]["envelope"] if entry["events"] else None
    data = first["data"] if first else {}
    if not first or data.get("key") != did:
        return set()
    found = {data["subject"]}
    approval = data.get("approval")
    if isinstance(approval, dict) and isinstance(approval.get("regulator"), str):
        found.add(approval["regulator"])
    return found


def _consistency(store: Store, since: str, latest: Checkpoint) -> dict[str, Any]:
    """{"size": M, "proof": [...]} from the tree of checkpoint ``since`` to ``latest``.
    Refuses a checkpoint of another log, a newer one, or one this ledger's tree
    does not match (the ledger was rolled back or rewritten since it was signed)."""
    try:
        theirs = checkpoint_body(since)
    except ProvenanceError as exc:
        raise VerificationError(f"--since is not a signed checkpoint: {exc}") from None
    if theirs.origin != latest.origin:
        raise VerificationError(
            f"--since is a checkpoint of log {theirs.origin!r}, this ledger is {latest.origin!r}"
        )
    if theirs.size > latest.size:
        raise VerificationError(
            f"--since is a checkpoint of size {theirs.size}, newer than the one this ledger "
            f"shows (size {latest.size}): this ledger was rolled back, is a stale copy, or its "
            "witnesses have not cosigned that size yet"
        )
    reader = ReadOnce(store)
    if theirs.size and range_hash(reader, 0, theirs.size) != theirs.root_hash:
        raise VerificationError(
            f"--since does not match this ledger's tree at size {theirs.size}: "
            "the log was rewritten since that checkpoint was signed (run `provenance verify "
            "--checkpoint` on it)"
        )
    proof = consistency_proof(reader, theirs.size, latest.size) if theirs.size else []
    return {"size": theirs.size, "proof": [b64(h) for h in proof]}
