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
from dataclasses import dataclass, field
from typing import Any

from provenance.core import chain as chains
from provenance.core.checkpoint import Checkpoint, open_checkpoint
from provenance.core.envelope import Envelope
from provenance.core.errors import ProvenanceError, VerificationError
from provenance.core.kinds import REGISTRAR, SIGNER_ROLES, text_as_signed
from provenance.core.merkle import hash_leaf, verify_consistency, verify_inclusion
from provenance.core.rotation import check_rotation_offline
from provenance.core.timefmt import parse_time

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


def verify_bundle(
    bundle: Any, log_public_key: bytes, *, checkpoint: str | None = None
) -> BundleReport:
    """Check a proof bundle against the log's public key (32 raw bytes).

    With ``checkpoint`` (a signed note the verifier trusts), also judge the
    bundle as of that checkpoint; see `check_against`.
    """
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise VerificationError(f"not a {FORMAT} proof bundle")
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
    report = _verify_contents(bundle, bundle_checkpoint)
    report.trusted = trusted
    return report


def _verify_contents(bundle: dict[str, Any], checkpoint: Checkpoint) -> BundleReport:
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


def _identity(item: _Chain, registrar_did: str, identity_of: Any) -> dict[str, Any]:
    """What an identity chain says: an enrolment, or a rotation from another
    key (docs/protocol.md, "Key rotation"), then maybe a revocation or a
    rotation away, which close the key from their time."""
    if not item.events:
        raise VerificationError(f"{item.subject}: identity chain is empty")
    index, enrol, _ = item.events[0]
    if enrol.kind == "rotate" and enrol.data.get("key") == item.subject:
        enrol.verify_signature()
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
    for position, (event_index, envelope, _) in enumerate(item.events):
        where = f"{item.subject}: event {envelope.event_id} (log index {event_index})"
        rotation = envelope.kind == "rotate"
        # A rotation may also be signed by the key it rotates from.
        if envelope.signer != registrar_did and not (
            rotation and envelope.signer == envelope.data.get("subject")
        ):
            raise VerificationError(f"{where}: registry events must be signed by the registrar")
        envelope.verify_signature()
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
