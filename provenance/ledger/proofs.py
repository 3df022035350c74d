"""Building proofs from the store: lot proof bundles, inclusion and consistency
proofs. Reads only; the matching checks are in `provenance.core.bundle` and
`provenance.core.merkle`."""

from __future__ import annotations

from typing import Any

from provenance.core import chain as chains
from provenance.core.bundle import FORMAT, b64
from provenance.core.checkpoint import Checkpoint
from provenance.core.errors import NotFound, ProvenanceError, VerificationError
from provenance.core.merkle import (
    MemoryTree,
    ReadOnce,
    consistency_proof,
    inclusion_proof,
    range_hash,
)
from provenance.store.db import Store


def checkpoint_body(note: str) -> Checkpoint:
    """The checkpoint inside a signed note, *unverified* (for reading sizes)."""
    body, sep, _ = note.partition("\n\n")
    if not sep:
        raise VerificationError("not a signed note: no blank line before the signatures")
    return Checkpoint.from_text(body + "\n")


def heads_tree(store: Store) -> tuple[MemoryTree, dict[str, int]]:
    tree = MemoryTree()
    positions: dict[str, int] = {}
    for chain_id, subject, head, length in store.chains():
        positions[subject] = chain_id - 1
        tree.append(chains.head_leaf(subject, length, head))
    return tree, positions


def build_bundle(store: Store, lot_uri: str, since: str | None = None) -> dict[str, Any]:
    """The proof bundle of one lot as of the latest checkpoint.

    With ``since`` (a signed checkpoint of this log the verifier holds), the
    bundle also carries a consistency proof from that checkpoint's tree to the
    bundle's, so that `verify_bundle(…, checkpoint=since)` can accept it.
    """
    with store.snapshot():
        note = store.latest_checkpoint()
        if note is None:
            raise NotFound("the ledger has no checkpoint yet: run `provenance init`")
        latest = checkpoint_body(note)
        size = latest.size
        found = store.chain_by_subject(lot_uri)
        if found is None or lot_uri.startswith("did:"):
            raise NotFound(f"no lot {lot_uri} in this ledger")
        tree, positions = heads_tree(store)
        nodes = ReadOnce(store)  # the proofs share their upper nodes
        texts: dict[bytes, str] = {}

        def proof_of(index: int) -> list[str]:
            return [
                texts.get(h) or texts.setdefault(h, b64(h))
                for h in inclusion_proof(nodes, index, size)
            ]

        def chain_entry(chain_id: int, subject: str) -> tuple[dict[str, Any], set[str]]:
            events = store.chain_events(chain_id)
            signers = {stored.envelope.signer for stored in events}
            entry = {
                "subject": subject,
                "position": positions[subject],
                "heads_proof": [b64(h) for h in tree.inclusion_proof(positions[subject])],
                "events": [
                    {
                        "index": stored.index,
                        "envelope": stored.envelope.to_json(),
                        "proof": proof_of(stored.index),
                    }
                    for stored in events
                ],
            }
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
            f"--since is a checkpoint of size {theirs.size}, newer than this ledger's latest "
            f"(size {latest.size}): this ledger was rolled back, or is a stale copy"
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
