"""Building proofs from the store: lot proof bundles, inclusion and consistency
proofs. Reads only; the matching checks are in `provenance.bundle` and
`provenance.merkle`."""

from __future__ import annotations

from typing import Any

from . import chain as chains
from .bundle import FORMAT, b64
from .checkpoint import Checkpoint
from .errors import NotFound, VerificationError
from .merkle import MemoryTree, ReadOnce, inclusion_proof
from .store import Store


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


def build_bundle(store: Store, lot_uri: str) -> dict[str, Any]:
    """The proof bundle of one lot as of the latest checkpoint."""
    with store.snapshot():
        note = store.latest_checkpoint()
        if note is None:
            raise NotFound("the ledger has no checkpoint yet: run `provenance init`")
        size = checkpoint_body(note).size
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

        lot_entry, signers = chain_entry(found[0], lot_uri)
        registrar = store.get_meta("registrar")
        if registrar:
            signers.add(registrar)
        entries = [lot_entry]
        for did in sorted(signers):
            identity = store.chain_by_subject(did)
            if identity is None:
                raise NotFound(f"signer {did} has no identity chain: run `provenance verify`")
            entries.append(chain_entry(identity[0], did)[0])
    return {"format": FORMAT, "subject": lot_uri, "checkpoint": note, "chains": entries}
