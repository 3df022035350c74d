"""Offline proof bundles for one lot, and their verification (pure).

A bundle (``provenance-bundle/v2``, docs/protocol.md §7) carries everything
needed to check a lot's record with nothing but the log's public key:

- the signed checkpoint (tree size, log root, heads root), with any witness
  cosignatures;
- the lot's chain: every event, in chain order, with its log index; the
  newest carries a C2SP tlog-proof of its log leaf (`provenance.core.tlog_proof`);
- the chain of every identity that signed those events (enrolments and any
  revocations, signed by the registrar, each with a tlog-proof), and the
  registrar's own chain, whose first event is leaf 0 of the log;
- for each chain, an inclusion proof of (key, length, head) in the heads tree
  and, under the sorted rule, its two neighbours' leaves and proofs
  (`provenance.core.heads`). The chain's hash links commit to every event, so
  this proof makes the bundle *complete* (as of the checkpoint, the chain had
  exactly these events) and, with the neighbours, the subject's *only* chain.

`verify_bundle` returns a `BundleReport` or raises `VerificationError` saying
which event broke and why.

A bundle is complete *as of its checkpoint*. Given a checkpoint the verifier
trusts (`checkpoint=`, e.g. from a witness), `verify_bundle` also judges the
bundle against it (docs/protocol.md §7): the same tree head passes; an older
one passes only with a consistency proof from it to the bundle's checkpoint
(`consistency` in the bundle, added by `build_bundle(since=…)`); a newer one
is refused with `StaleBundleError`, since a bundle cannot show what happened
to the lot after it was made (a recall, a hold).
"""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from provenance.core import chain as chains
from provenance.core.checkpoint import Checkpoint, open_checkpoint
from provenance.core.envelope import Envelope
from provenance.core.errors import ProvenanceError, VerificationError
from provenance.core.fields import text_as_signed
from provenance.core.heads import HeadsLine, Neighbour, check_sorted_chain, parse_heads_line
from provenance.core.kinds import REGISTRAR, SIGNER_ROLES
from provenance.core.merkle import hash_leaf, verify_consistency, verify_inclusion
from provenance.core.rotation import check_rotation_offline
from provenance.core.timefmt import parse_time
from provenance.core.tlog_proof import TlogProof, parse_tlog_proof, verify_tlog_proof

VERIFY_THREADS = 2
"""Threads that check a bundle's signatures: libsodium releases the GIL, so two
use two cores where there are two, and cost nothing measurable where not."""
PARALLEL_FROM = 512  # events; fewer are checked on the calling thread

FORMAT = "provenance-bundle/v2"
OLD_FORMAT = "provenance-bundle/v1"


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


class OldBundleFormatError(VerificationError):
    """A bundle in a format this version no longer reads: to be exported again."""


class StaleBundleError(VerificationError):
    """The verifier's checkpoint is newer than the bundle's: the bundle cannot
    show what happened to the lot since it was made."""


@dataclass
class BundleReport:
    subject: str
    checkpoint: Checkpoint
    events: list[Envelope]
    signers: dict[str, dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    trusted: Checkpoint | None = None  # the verifier's checkpoint it was judged against

    def summary(self) -> str:
        text = (
            f"{self.subject}: {len(self.events)} events, all signatures valid, chain complete "
            f"as of checkpoint {self.checkpoint.size} of {self.checkpoint.origin}"
        )
        if self.trusted is None:
            return text
        if self.trusted.size == self.checkpoint.size:
            return text + " (the checkpoint you gave)"
        return text + f", which extends the checkpoint you gave (size {self.trusted.size})"


@dataclass
class _Event:
    index: int
    raw: Any  # the envelope as JSON, until opened
    log_proof: TlogProof | None  # a C2SP tlog-proof of this event's log leaf
    envelope: Envelope = None  # type: ignore[assignment]  # set by _open_envelopes
    failure: str | None = None  # why its signature does not verify


@dataclass
class _Chain:
    subject: str
    events: list[_Event]
    position: int
    heads_proof: list[bytes]
    left: Neighbour | None
    right: Neighbour | None


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise VerificationError(f"{what} {value!r} is not a non-negative integer")
    return value


def _hashes(raw: Any, what: str) -> list[bytes]:
    if not isinstance(raw, list):
        raise VerificationError(f"{what} is not a list of base64 hashes")
    return [unb64(h, what) for h in raw]


def _neighbour(raw: Any, what: str) -> Neighbour | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"entry", "proof"}:
        raise VerificationError(f'{what} must be {{"entry": …, "proof": […]}} or null')
    return Neighbour(unb64(raw["entry"], what), _hashes(raw["proof"], what))


def _parse_chain(raw: Any) -> _Chain:
    if not isinstance(raw, dict):
        raise VerificationError("bundle chain entry is not an object")
    unknown = set(raw) - {"subject", "events", "heads"}
    if unknown:
        raise VerificationError(f"bundle chain has unknown fields {sorted(unknown)}")
    subject = raw.get("subject")
    if not isinstance(subject, str):
        raise VerificationError("bundle chain needs a subject string")
    items, heads = raw.get("events"), raw.get("heads")
    if not isinstance(items, list) or not isinstance(heads, dict):
        raise VerificationError(f"{subject}: bundle chain needs `events` (a list) and `heads`")
    events = []
    for item in items:
        if not isinstance(item, dict) or not {"index", "envelope"} <= set(item) <= {
            "index",
            "envelope",
            "proof",
        }:
            raise VerificationError(f"{subject}: an event must be {{index, envelope[, proof]}}")
        index = _integer(item["index"], f"{subject}: event index")
        log_proof = None
        if "proof" in item:
            log_proof = parse_tlog_proof(item["proof"])
            if log_proof.index != index:
                raise VerificationError(
                    f"{subject}: the tlog-proof of event {index} is for index {log_proof.index}"
                )
        events.append(_Event(index, item["envelope"], log_proof))
    if not {"position", "proof"} <= set(heads) <= {"position", "proof", "left", "right"}:
        raise VerificationError(f"{subject}: `heads` must be {{position, proof[, left, right]}}")
    return _Chain(
        subject,
        events,
        _integer(heads["position"], f"{subject}: heads position"),
        _hashes(heads["proof"], "heads proof"),
        _neighbour(heads.get("left"), "heads left neighbour"),
        _neighbour(heads.get("right"), "heads right neighbour"),
    )


def verify_bundle(
    bundle: Any,
    log_public_key: bytes,
    *,
    checkpoint: str | None = None,
    threads: int = VERIFY_THREADS,
) -> BundleReport:
    """Check a proof bundle against the log's public key (32 raw bytes).

    With ``checkpoint`` (a signed note the verifier trusts), also judge the
    bundle as of that checkpoint; see `check_against`. The events' signatures
    are checked on up to ``threads`` threads (libsodium releases the GIL).
    """
    if isinstance(bundle, dict) and bundle.get("format") == OLD_FORMAT:
        raise OldBundleFormatError(
            f"this is a {OLD_FORMAT} bundle, a format this version no longer reads (it cannot "
            "show that its chain is the lot's only one): re-export it with `provenance export "
            "proof URI` from the ledger, and verify that"
        )
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise VerificationError(f"not a {FORMAT} proof bundle")
    unknown = set(bundle) - {"format", "subject", "checkpoint", "chains", "consistency"}
    if unknown:
        raise VerificationError(f"bundle has unknown fields {sorted(unknown)}")
    note = bundle.get("checkpoint")
    if not isinstance(note, str):
        raise VerificationError("bundle has no checkpoint")
    origin = note.split("\n", 1)[0]
    # 1. The checkpoint is signed by the log key; so is the verifier's, if given,
    #    and the bundle is as of it, or of a checkpoint proven to extend it.
    bundle_checkpoint = open_checkpoint(note, origin, log_public_key)
    trusted = None
    if checkpoint is not None:
        trusted = check_against(
            bundle_checkpoint,
            checkpoint,
            log_public_key,
            bundle.get("consistency"),
            subject=bundle.get("subject"),
        )
    elif "consistency" in bundle and not isinstance(bundle["consistency"], dict):
        raise VerificationError('bundle `consistency` must be {"size": N, "proof": [...]}')
    report = _verify_contents(bundle, note, bundle_checkpoint, threads)
    report.trusted = trusted
    return report


def _open_chunk(events: list[_Event]) -> list[_Event]:
    """Parse each event's envelope and check its signature (on a worker thread:
    libsodium releases the GIL while verifying)."""
    with text_as_signed():  # signed perhaps before the text rule (docs/protocol.md)
        for event in events:
            try:
                event.envelope = Envelope.from_json(event.raw)
            except ProvenanceError as exc:
                event.failure = f"is not a valid envelope: {exc}"
                continue
            try:
                Envelope.verify_signature(event.envelope)
            except ProvenanceError as exc:
                event.failure = str(exc)
    return events


def _open_envelopes(chains_: list[_Chain], threads: int) -> None:
    """Open every envelope of the bundle; refuse the first one, in bundle order,
    that is not an envelope. Signature failures stay on their events, for the
    chain checks to name in order."""
    events = [event for item in chains_ for event in item.events]
    if threads <= 1 or len(events) < PARALLEL_FROM:
        _open_chunk(events)
    else:
        size = -(-len(events) // (threads * 4))
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(_open_chunk, [events[i : i + size] for i in range(0, len(events), size)]))
    for item in chains_:
        for event in item.events:
            if event.envelope is None:
                raise VerificationError(
                    f"{item.subject}: event at log index {event.index} {event.failure}"
                )


def _verify_contents(
    bundle: dict[str, Any], note: str, checkpoint: Checkpoint, threads: int
) -> BundleReport:
    line = parse_heads_line(checkpoint.extensions)
    raw_chains = bundle.get("chains")
    if not isinstance(raw_chains, list):
        raise VerificationError("bundle `chains` must be a list of chains")
    parsed = [_parse_chain(raw) for raw in raw_chains]
    if not parsed:
        raise VerificationError("bundle has no chains")
    by_subject = {c.subject: c for c in parsed}
    if len(by_subject) != len(parsed):
        raise VerificationError("bundle lists a chain twice")

    # 2. Every chain: its events hash to the head the heads tree holds for its
    #    subject (complete), the only leaf for that subject (sorted rule), its
    #    newest event is in the log at its index (tlog-proof), indexes increase.
    _open_envelopes(parsed, threads)
    for item in parsed:
        _check_chain(item, note, checkpoint, line)
    warnings: list[str] = []
    if not line.is_sorted:
        warnings.append(
            f"checkpoint {checkpoint.size} was signed before the heads tree was sorted "
            "(docs/protocol.md §7): this bundle alone cannot rule out a second chain for the "
            "lot; a bundle as of a newer checkpoint can"
        )

    # 3. The registrar: the self-enrolment at leaf 0.
    registrar = next((c for c in parsed if c.events and c.events[0].index == 0), None)
    if registrar is None:
        raise VerificationError("bundle lacks the registrar's enrolment (log leaf 0)")
    genesis = registrar.events[0]
    if genesis.log_proof is None:
        raise VerificationError("the registrar's enrolment carries no tlog-proof of log leaf 0")
    if not (
        genesis.envelope.kind == "enrol"
        and genesis.envelope.data["type"] == REGISTRAR
        and genesis.envelope.data["subject"] == genesis.envelope.signer == registrar.subject
    ):
        raise VerificationError("log leaf 0 is not the registrar's self-enrolment")
    registrar_did = genesis.envelope.signer

    # 4. Identities: enrolled (and maybe revoked) by the registrar.
    signers: dict[str, dict[str, Any]] = {}
    identities = {c.subject: c for c in parsed if c.subject.startswith("did:")}

    def identity_of(did: str, _seen: frozenset[str] = frozenset()) -> dict[str, Any] | None:
        if did not in signers and did in identities and did not in _seen:
            signers[did] = _identity(
                identities[did], registrar_did, lambda d: identity_of(d, _seen | {did})
            )
        return signers.get(did)

    for subject_did in identities:
        identity_of(subject_did)

    subject = bundle.get("subject")
    lot = by_subject.get(subject) if isinstance(subject, str) else None
    if lot is None or subject.startswith("did:"):
        raise VerificationError("bundle does not carry the chain of its subject lot")

    # 5. The lot's events: valid signatures by enrolled, unrevoked, allowed signers.
    for event in lot.events:
        index, envelope = event.index, event.envelope
        where = f"event {envelope.event_id} (log index {index})"
        signer = signers.get(envelope.signer)  # its signature was checked with its chain
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
    return BundleReport(subject, checkpoint, [e.envelope for e in lot.events], signers, warnings)


def check_against(
    bundle_checkpoint: Checkpoint,
    note: str,
    log_public_key: bytes,
    consistency: Any,
    *,
    subject: Any = None,
) -> Checkpoint:
    """Judge a bundle whose (verified) checkpoint is ``bundle_checkpoint`` against
    the signed checkpoint ``note`` the verifier trusts; return the latter.

    - signed by the same log key, for the same log (origin), or refused;
    - the same size: the same tree head (root and heads), else the log signed two
      different trees of one size (a split view);
    - older: the bundle must carry a consistency proof from its size to the
      bundle's checkpoint (``{"size": M, "proof": [b64, …]}``), which must verify;
    - newer: refused (`StaleBundleError`): events logged since, such as a recall,
      are not in the bundle and nothing in it can rule them out.
    """
    origin = bundle_checkpoint.origin
    if not isinstance(note, str):
        raise VerificationError("the checkpoint to verify against is not text")
    theirs = note.split("\n", 1)[0]
    if theirs != origin:
        raise VerificationError(
            f"the checkpoint you gave is for log {theirs[:80]!r}, the bundle for {origin!r}"
        )
    try:
        trusted = open_checkpoint(note, origin, log_public_key)
    except VerificationError as exc:
        raise VerificationError(f"the checkpoint you gave does not verify: {exc}") from None
    size, mine = trusted.size, bundle_checkpoint.size
    printable = isinstance(subject, str) and subject.isprintable() and len(subject) <= 500
    lot = subject if printable else "URI"
    if size > mine:
        raise StaleBundleError(
            f"this bundle is as of log size {mine}; the checkpoint you gave is size {size}: "
            "a bundle cannot show what happened to the lot since (a recall, a hold). "
            f"Get a bundle as of that checkpoint or later: `provenance export proof {lot} "
            "--since CHECKPOINT_FILE`, and verify that"
        )
    if size == mine:
        if (trusted.root_hash, trusted.extensions) != (
            bundle_checkpoint.root_hash,
            bundle_checkpoint.extensions,
        ):
            raise VerificationError(
                f"the log signed two different trees of size {size} (the bundle's and the one "
                "you gave): a split view; keep both checkpoints as evidence and report it"
            )
        return trusted
    if consistency is None:
        raise VerificationError(
            f"the checkpoint you gave (size {size}) is older than the bundle's (size {mine}) and "
            "the bundle carries no consistency proof from it: get one with "
            f"`provenance export proof {lot} --since CHECKPOINT_FILE`"
        )
    if not isinstance(consistency, dict) or set(consistency) != {"size", "proof"}:
        raise VerificationError('bundle `consistency` must be {"size": N, "proof": [...]}')
    from_size, raw_proof = consistency["size"], consistency["proof"]
    if isinstance(from_size, bool) or not isinstance(from_size, int):
        raise VerificationError("bundle `consistency.size` is not an integer")
    if not isinstance(raw_proof, list):
        raise VerificationError("bundle `consistency.proof` is not a list")
    if from_size != size:
        raise VerificationError(
            f"the bundle's consistency proof is from size {from_size}, the checkpoint you gave "
            f"is size {size}: get one from yours with `provenance export proof {lot} "
            "--since CHECKPOINT_FILE`"
        )
    proof = [unb64(h, "consistency proof") for h in raw_proof]
    if size > 0:
        try:
            verify_consistency(size, mine, proof, trusted.root_hash, bundle_checkpoint.root_hash)
        except VerificationError as exc:
            raise VerificationError(
                f"the bundle's log (size {mine}) does not extend the checkpoint you gave "
                f"(size {size}): {exc} — the log was rewritten, or the proof is wrong"
            ) from None
    elif proof:
        raise VerificationError("a consistency proof from the empty tree must be empty")
    return trusted


def _note_text(note: str) -> str:
    """A signed note's text, without its signature lines: a tlog-proof may carry
    the checkpoint with other (or no) witness cosignatures than the bundle's."""
    return note[: note.rfind("\n\n") + 1]


def _check_chain(item: _Chain, note: str, checkpoint: Checkpoint, line: HeadsLine) -> None:
    link = chains.genesis_link(item.subject)
    previous = -1
    for event in item.events:
        index, envelope = event.index, event.envelope
        where = f"{item.subject}: event {envelope.event_id} (log index {index})"
        if index <= previous:
            raise VerificationError(f"{where}: out of log order (after index {previous})")
        if index >= checkpoint.size:
            raise VerificationError(f"{where}: beyond the checkpoint (size {checkpoint.size})")
        if event.failure is not None:  # an edited envelope is named here, before its head
            raise VerificationError(f"{where}: {event.failure}")
        if event.log_proof is not None:
            if _note_text(event.log_proof.checkpoint) != _note_text(note):
                raise VerificationError(f"{where}: its tlog-proof carries another checkpoint")
            try:
                verify_tlog_proof(event.log_proof, hash_leaf(envelope.id_bytes), checkpoint)
            except VerificationError as exc:
                raise VerificationError(f"{where}: {exc}") from None
        link = chains.next_link(link, envelope.id_bytes)
        previous = index
    if item.events and item.events[-1].log_proof is None:
        raise VerificationError(
            f"{item.subject}: the chain's newest event carries no tlog-proof of its log leaf"
        )
    length = len(item.events)
    if line.is_sorted:
        check_sorted_chain(
            item.subject, length, link, item.position, item.heads_proof, item.left, item.right, line
        )
        return
    if item.left is not None or item.right is not None:
        raise VerificationError(f"{item.subject}: neighbours in a creation-order heads tree")
    leaf = chains.head_leaf(item.subject, length, link)
    try:
        verify_inclusion(item.position, line.count, leaf, item.heads_proof, line.root)
    except VerificationError:
        raise VerificationError(
            f"{item.subject}: the bundle's {length} events do not match the chain head "
            f"the checkpoint commits to — events were left out, added or changed"
        ) from None


def _identity(item: _Chain, registrar_did: str, identity_of: Any) -> dict[str, Any]:
    """What an identity chain says: an enrolment, or a rotation from another
    key (docs/protocol.md, "Key rotation"), then maybe a revocation or a
    rotation away, which close the key from their time."""
    if not item.events:
        raise VerificationError(f"{item.subject}: identity chain is empty")
    index, enrol = item.events[0].index, item.events[0].envelope
    if enrol.kind == "rotate" and enrol.data.get("key") == item.subject:
        old = check_rotation_offline(enrol, index, registrar_did, identity_of)
        enrol_data = {"type": old["type"], "name": old["name"], "role": old["role"]}
    elif enrol.kind != "enrol" or enrol.data["subject"] != item.subject:
        raise VerificationError(f"{item.subject}: chain does not start with its enrolment")
    else:
        enrol_data = enrol.data
    info: dict[str, Any] = {
        "type": enrol_data["type"],
        "name": enrol_data["name"],
        "role": enrol_data.get("role"),
        "enrolled_at": index,
        "enrolment": enrol.event_id,
    }
    for position, event in enumerate(item.events):
        event_index, envelope = event.index, event.envelope
        if event.log_proof is None:  # enrolled-before and revoked-before rest on these indexes
            raise VerificationError(
                f"{item.subject}: registry event at log index {event_index} carries no tlog-proof"
            )
        where = f"{item.subject}: event {envelope.event_id} (log index {event_index})"
        rotation = envelope.kind == "rotate"
        # A rotation may also be signed by the key it rotates from.
        if envelope.signer != registrar_did and not (
            rotation and envelope.signer == envelope.data.get("subject")
        ):
            raise VerificationError(f"{where}: registry events must be signed by the registrar")
        closes = envelope.kind == "revoke" or (
            rotation and envelope.data.get("subject") == item.subject
        )
        if position and closes and "revoked_from" not in info:
            closed_from = envelope.time if rotation else envelope.data["from"]
            info["revoked_from"] = closed_from
            info["revoked_from_us"] = parse_time(closed_from)
            info["revoked_at"] = event_index
        elif position and not (rotation and envelope.data.get("subject") == item.subject):
            raise VerificationError(f"{where}: unexpected {envelope.kind} in an identity chain")
    return info
