"""Offline proof bundles for one lot, and their verification (pure).

A bundle carries everything needed to check a lot's record with nothing but
the log's public key (docs/protocol.md, "Proof bundle"):

- the signed checkpoint (tree size, log root, heads root);
- the lot's chain: every event, in chain order, with its log index and an
  inclusion proof against the log root;
- the chain of every identity that signed those events (enrolments and any
  revocations, signed by the registrar), and the registrar's own chain, whose
  first event is leaf 0 of the log;
- for each chain, an inclusion proof of (subject, length, head) in the heads
  tree. That last proof is what makes the bundle *complete*: as of the
  checkpoint, the chain had exactly these events, so none was left out.

`verify_bundle` returns a `BundleReport` or raises `VerificationError` saying
which event broke and why.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from . import chain as chains
from .checkpoint import Checkpoint, open_checkpoint
from .envelope import Envelope
from .errors import ProvenanceError, VerificationError
from .kinds import REGISTRAR, SIGNER_ROLES, text_as_signed
from .merkle import hash_leaf, verify_inclusion
from .timefmt import parse_time

FORMAT = "provenance-bundle/v1"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise VerificationError(f"{what}: not base64 ({exc})") from None
    if b64(raw) != text:
        raise VerificationError(f"{what}: not canonical base64")
    return raw


@dataclass
class BundleReport:
    subject: str
    checkpoint: Checkpoint
    events: list[Envelope]
    signers: dict[str, dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.subject}: {len(self.events)} events, all signatures valid, chain complete "
            f"as of checkpoint {self.checkpoint.size} of {self.checkpoint.origin}"
        )


@dataclass
class _Chain:
    subject: str
    position: int
    heads_proof: list[bytes]
    events: list[tuple[int, Envelope, list[bytes]]]


def _parse_chain(raw: Any) -> _Chain:
    if not isinstance(raw, dict):
        raise VerificationError("bundle chain entry is not an object")
    try:
        subject = raw["subject"]
        position = raw["position"]
        events = []
        for item in raw["events"]:
            try:
                with text_as_signed():  # signed perhaps before the text rule (docs/protocol.md)
                    envelope = Envelope.from_json(item["envelope"])
            except ProvenanceError as exc:
                raise VerificationError(
                    f"{subject}: event at log index {item.get('index')} "
                    f"is not a valid envelope: {exc}"
                ) from None
            proof = [unb64(h, "inclusion proof") for h in item["proof"]]
            index = item["index"]
            if isinstance(index, bool) or not isinstance(index, int):
                raise VerificationError(f"{subject}: event index {index!r} is not an integer")
            events.append((index, envelope, proof))
        heads_proof = [unb64(h, "heads proof") for h in raw["heads_proof"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError(f"bundle chain is malformed: missing or bad {exc}") from None
    if not isinstance(subject, str) or not isinstance(position, int):
        raise VerificationError("bundle chain needs a subject string and an integer position")
    return _Chain(subject, position, heads_proof, events)


def verify_bundle(bundle: Any, log_public_key: bytes) -> BundleReport:
    """Check a proof bundle against the log's public key (32 raw bytes)."""
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise VerificationError(f"not a {FORMAT} proof bundle")
    note = bundle.get("checkpoint")
    if not isinstance(note, str):
        raise VerificationError("bundle has no checkpoint")
    origin = note.split("\n", 1)[0]
    # 1. The checkpoint is signed by the log key.
    checkpoint = open_checkpoint(note, origin, log_public_key)
    heads_count, heads_root = chains.parse_heads_extension(checkpoint.extensions)
    raw_chains = bundle.get("chains")
    if not isinstance(raw_chains, list):
        raise VerificationError("bundle `chains` must be a list of chains")
    parsed = [_parse_chain(raw) for raw in raw_chains]
    if not parsed:
        raise VerificationError("bundle has no chains")
    by_subject = {c.subject: c for c in parsed}
    if len(by_subject) != len(parsed):
        raise VerificationError("bundle lists a chain twice")

    # 2. Every chain: events included in the log, in log order, and its head
    #    (subject, length, head) included in the heads tree: complete.
    for item in parsed:
        _check_chain(item, checkpoint, heads_count, heads_root)

    # 3. The registrar: the self-enrolment at leaf 0.
    registrar = next((c for c in parsed if c.events and c.events[0][0] == 0), None)
    if registrar is None:
        raise VerificationError("bundle lacks the registrar's enrolment (log leaf 0)")
    genesis = registrar.events[0][1]
    if not (
        genesis.kind == "enrol"
        and genesis.data["type"] == REGISTRAR
        and genesis.data["subject"] == genesis.signer == registrar.subject
    ):
        raise VerificationError("log leaf 0 is not the registrar's self-enrolment")
    registrar_did = genesis.signer

    # 4. Identities: enrolled (and maybe revoked) by the registrar.
    signers: dict[str, dict[str, Any]] = {}
    for item in parsed:
        if not item.subject.startswith("did:"):
            continue
        signers[item.subject] = _identity(item, registrar_did)

    subject = bundle.get("subject")
    lot = by_subject.get(subject) if isinstance(subject, str) else None
    if lot is None or subject.startswith("did:"):
        raise VerificationError("bundle does not carry the chain of its subject lot")

    # 5. The lot's events: valid signatures by enrolled, unrevoked, allowed signers.
    warnings: list[str] = []
    for index, envelope, _ in lot.events:
        where = f"event {envelope.event_id} (log index {index})"
        try:
            envelope.verify_signature()
        except VerificationError as exc:
            raise VerificationError(f"{where}: {exc}") from None
        signer = signers.get(envelope.signer)
        if signer is None:
            raise VerificationError(f"{where}: the bundle lacks the enrolment of its signer")
        if signer["enrolled_at"] >= index:
            raise VerificationError(f"{where}: signed by {signer['name']} before it was enrolled")
        role = signer["role"] if signer["type"] == "party" else signer["type"]
        if role not in SIGNER_ROLES[envelope.kind]:
            raise VerificationError(f"{where}: a {role} may not sign {envelope.kind}")
        revoked = signer.get("revoked_from_us")
        if revoked is not None and envelope.time_us >= revoked:
            if signer["revoked_at"] < index:
                raise VerificationError(
                    f"{where}: signed with a key revoked from {signer['revoked_from']}"
                )
            warnings.append(
                f"{where} is dated after {signer['name']}'s key was revoked (from "
                f"{signer['revoked_from']}); the revocation was logged later"
            )
    return BundleReport(subject, checkpoint, [e for _, e, _ in lot.events], signers, warnings)


def _check_chain(item: _Chain, checkpoint: Checkpoint, heads_count: int, heads_root: bytes) -> None:
    link = chains.genesis_link(item.subject)
    previous_index = -1
    for index, envelope, proof in item.events:
        where = f"{item.subject}: event {envelope.event_id} (log index {index})"
        if index <= previous_index:
            raise VerificationError(f"{where}: out of log order (after index {previous_index})")
        if index >= checkpoint.size:
            raise VerificationError(f"{where}: beyond the checkpoint (size {checkpoint.size})")
        try:
            verify_inclusion(
                index, checkpoint.size, hash_leaf(envelope.id_bytes), proof, checkpoint.root_hash
            )
        except VerificationError as exc:
            raise VerificationError(f"{where}: not in the log as signed: {exc}") from None
        link = chains.next_link(link, envelope.id_bytes)
        previous_index = index
    leaf = chains.head_leaf(item.subject, len(item.events), link)
    try:
        verify_inclusion(item.position, heads_count, leaf, item.heads_proof, heads_root)
    except VerificationError:
        raise VerificationError(
            f"{item.subject}: the bundle's {len(item.events)} events do not match the chain head "
            f"the checkpoint commits to — events were left out, added or changed"
        ) from None


def _identity(item: _Chain, registrar_did: str) -> dict[str, Any]:
    if not item.events:
        raise VerificationError(f"{item.subject}: identity chain is empty")
    index, enrol, _ = item.events[0]
    if enrol.kind != "enrol" or enrol.data["subject"] != item.subject:
        raise VerificationError(f"{item.subject}: chain does not start with its enrolment")
    info: dict[str, Any] = {
        "type": enrol.data["type"],
        "name": enrol.data["name"],
        "role": enrol.data.get("role"),
        "enrolled_at": index,
        "enrolment": enrol.event_id,
    }
    for position, (event_index, envelope, _) in enumerate(item.events):
        where = f"{item.subject}: event {envelope.event_id} (log index {event_index})"
        if envelope.signer != registrar_did:
            raise VerificationError(f"{where}: registry events must be signed by the registrar")
        envelope.verify_signature()
        if position and envelope.kind == "revoke" and "revoked_from" not in info:
            info["revoked_from"] = envelope.data["from"]
            info["revoked_from_us"] = parse_time(envelope.data["from"])
            info["revoked_at"] = event_index
        elif position:
            raise VerificationError(f"{where}: unexpected {envelope.kind} in an identity chain")
    return info
