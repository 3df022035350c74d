"""tlog-witness ``add-checkpoint`` and the monitoring read, without HTTP.

:meth:`Witness.add_checkpoint` takes the request body and returns a
:class:`Reply` (status, content type, body) exactly as c2sp.org/tlog-witness
words it. The checks, in order:

1. the body is ``old <size>\\n``, at most 63 base64 hash lines, an empty line and
   a signed checkpoint note; else 400;
2. the origin is a log this witness follows; else 404;
3. a signature by a log key trusted for that origin verifies, and every signature
   line by a trusted key verifies; else 403 (a malformed signature line: 400);
4. old size <= checkpoint size; else 400;
5. old size is the size of the last checkpoint cosigned for the origin (0 if
   none); else 409 with that size as ``text/x.tlog.size``;
6. a size-0 checkpoint has the empty tree's root; a proof from old size 0 is
   empty; otherwise the RFC 6962 consistency proof from the stored checkpoint
   verifies (equal sizes: equal roots, empty proof); else 422;
7. the new checkpoint, with our cosignature, replaces the stored one by
   compare-and-swap (a concurrent request that moved the log first makes this
   one a 409), durably; then 200 with the cosignature line.

A checkpoint refused at step 6 was signed by the log (step 3), so it is kept as
evidence with the checkpoint we had cosigned (`WitnessState.keep_evidence`), and
:meth:`Witness.evidence` serves what was kept.

Nothing here raises on bad input: every refusal is a Reply with a reason.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.checkpoint import Checkpoint, key_id
from provenance.core.cosignature import Cosigner
from provenance.core.errors import ProofError, ValidationError
from provenance.core.merkle import EMPTY_ROOT, verify_consistency
from provenance.core.policy import Policy, PolicyError, PolicyLog, evaluate
from provenance.witness.state import Conflict, ForkEvidence, StateError, Swap, WitnessState

log = logging.getLogger(__name__)

MAX_PROOF_LINES = 63
"""The spec's bound on consistency proof lines."""
MAX_REQUEST = 256 * 1024
"""Bytes of an add-checkpoint body: a checkpoint with 100 signatures fits easily."""
RELOAD_INTERVAL = 1.0
"""Seconds between re-reading the followed logs when an unknown origin is asked for."""
SIZE_CONTENT_TYPE = "text/x.tlog.size"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"

_OLD = re.compile(r"old (0|[1-9][0-9]{0,19})")
_HASH_LINE = re.compile(r"[A-Za-z0-9+/]{43}=")
_ORIGIN_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: str

    @classmethod
    def refuse(cls, status: int, reason: str) -> Reply:
        return cls(status, TEXT, reason.rstrip("\n") + "\n")


@dataclass(frozen=True)
class Request:
    old_size: int
    proof: tuple[bytes, ...]
    note: str


class BadRequest(Exception):
    pass


def parse_request(body: bytes) -> Request:
    """The add-checkpoint body; raises :class:`BadRequest` naming the fault."""
    if len(body) > MAX_REQUEST:
        raise BadRequest(f"the request body is larger than {MAX_REQUEST} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not UTF-8 (offset {exc.start})") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise BadRequest(
            "the body must be an `old <size>` line, proof lines, an empty line and the checkpoint"
        )
    lines = head.split("\n")
    match = _OLD.fullmatch(lines[0])
    if not match:
        raise BadRequest(
            f"the first line must be `old <size>` (ASCII decimal, no leading zeroes), "
            f"got {lines[0][:40]!r}"
        )
    old_size = int(match.group(1))
    if old_size > 2**64 - 1:
        raise BadRequest("the old size is larger than 2**64-1")
    proof_lines = lines[1:]
    if len(proof_lines) > MAX_PROOF_LINES:
        raise BadRequest(f"{len(proof_lines)} consistency proof lines, more than 63")
    proof = []
    for number, line in enumerate(proof_lines, start=2):
        if not _HASH_LINE.fullmatch(line):
            raise BadRequest(f"line {number} is not one base64 SHA-256 hash: {line[:60]!r}")
        digest = base64.b64decode(line)
        if base64.b64encode(digest).decode("ascii") != line:
            raise BadRequest(f"line {number} is not canonical base64 (unused bits set)")
        proof.append(digest)
    return Request(old_size, tuple(proof), note)


def origin_hash(origin: str) -> str:
    """The monitoring path's key: lowercase hex SHA-256 of the origin."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


class Witness:
    """The witness ``name`` with ``private_key`` over ``state``; ``clock`` gives
    POSIX seconds (the cosignature's timestamp)."""

    def __init__(
        self,
        state: WitnessState,
        private_key: Ed25519PrivateKey,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.state = state
        self.cosigner = Cosigner(state.name, private_key)
        self.name = state.name
        self.public_key = self.cosigner.public_key
        self.verifier_key = self.cosigner.verifier_key
        self.clock = clock
        self._policies: dict[str, Policy] = {}
        self._log_ids: dict[str, dict[str, bytes]] = {}
        self._reloaded = time.monotonic()
        self.reload_logs()

    def reload_logs(self) -> None:
        """Read the followed logs and their keys again (after ``add-log``)."""
        policies, ids = {}, {}
        for origin, keys in self.state.log_keys().items():
            logs = tuple(PolicyLog(name, key, None, 0) for name, key in keys)
            policies[origin] = Policy(logs, {}, {}, "none")
            ids[origin] = {f"— {name} ": key_id(name, key) for name, key in keys}
        self._policies, self._log_ids = policies, ids

    def _policy(self, origin: str) -> Policy | None:
        policy = self._policies.get(origin)
        now = time.monotonic()
        if policy is None and now - self._reloaded >= RELOAD_INTERVAL:
            # A log added (`add-log`) since we started; at most once a second, so a
            # flood of requests for unknown origins costs no database reads.
            self._reloaded = now
            self.reload_logs()
            policy = self._policies.get(origin)
        return policy

    def add_checkpoint(self, body: bytes) -> Reply:
        # 1. The request's form.
        try:
            request = parse_request(body)
        except BadRequest as exc:
            return Reply.refuse(400, str(exc))
        note_body = request.note.rpartition("\n\n")[0] + "\n"
        origin = note_body.partition("\n")[0]
        try:
            Checkpoint.from_text(note_body)
        except ValidationError as exc:
            return Reply.refuse(400, f"the checkpoint is malformed: {exc}")
        # 2. A log we follow.
        policy = self._policy(origin)
        if policy is None:
            return Reply.refuse(404, f"this witness does not follow {origin!r}")
        # 3. Signed by a key we trust for it (its name is the origin: `add-log` makes
        # sure); every line by a trusted key verifies.
        try:
            verdict = evaluate(request.note, policy)
        except PolicyError as exc:
            return Reply.refuse(400, f"the checkpoint note is malformed: {exc}")
        malformed = [w for w in verdict.wrong if w.reason.startswith("malformed")]
        if malformed:
            return Reply.refuse(400, f"the checkpoint note is malformed: {malformed[0]}")
        if verdict.log is None:
            return Reply.refuse(403, verdict.log_problem or "not signed by a trusted log key")
        checkpoint = verdict.checkpoint
        # 4. Old size no larger than the new one.
        if request.old_size > checkpoint.size:
            return Reply.refuse(
                400,
                f"old size {request.old_size} is larger than the checkpoint size {checkpoint.size}",
            )
        # 5. Old size is ours.
        stored = self.state.log(checkpoint.origin)
        if stored is None:  # removed since the policy was read
            return Reply.refuse(404, f"this witness does not follow {checkpoint.origin!r}")
        if request.old_size != stored.size:
            return Reply(409, SIZE_CONTENT_TYPE, f"{stored.size}\n")
        # 6. Consistent with what we cosigned.
        problem = self._inconsistency(request, checkpoint, stored.size, stored.root_hash)
        if problem:
            log.warning(
                "refused %s size %d (ours %d): %s",
                checkpoint.origin,
                checkpoint.size,
                stored.size,
                problem,
            )
            self._keep_evidence(request, checkpoint.origin, problem, stored.note)
            return Reply.refuse(422, problem)
        # 7. Cosign, swap, answer.
        timestamp = max(1, int(self.clock()))
        line = self.cosigner.cosign(note_body, timestamp)
        log_lines = self._log_lines(request.note, self._log_ids[origin])
        kept = note_body + "\n" + "".join(log_lines) + line
        try:
            self.state.advance(
                Swap(
                    checkpoint.origin,
                    stored.size,
                    stored.root_hash,
                    checkpoint.size,
                    checkpoint.root_hash,
                    kept,
                    timestamp,
                )
            )
        except Conflict as exc:
            return Reply(409, SIZE_CONTENT_TYPE, f"{exc.size}\n")
        return Reply(200, TEXT, line)

    def _keep_evidence(
        self, request: Request, origin: str, problem: str, cosigned: str | None
    ) -> None:
        """Keep a log-signed checkpoint refused as inconsistent, with what we had
        cosigned: the log's own signatures on two histories (GET …/evidence)."""
        evidence = ForkEvidence(
            origin,
            max(1, int(self.clock())),
            problem,
            request.old_size,
            tuple(request.proof),
            request.note,
            cosigned,
        )
        try:
            if not self.state.keep_evidence(evidence):
                log.warning("evidence against %s not kept (kept already, or the maximum)", origin)
        except StateError as exc:  # the refusal stands; only the record failed
            log.error("could not keep evidence against %s: %s", origin, exc)

    def evidence(self, hash_hex: str) -> Reply:
        """GET <origin hash>/evidence: the refused checkpoints kept, as JSON (an
        extension of this witness's; C2SP tlog-witness defines no such path)."""
        if not _ORIGIN_HASH.fullmatch(hash_hex):
            return Reply.refuse(404, "not a lowercase hex SHA-256 of an origin")
        for state in self.state.logs():
            if origin_hash(state.origin) == hash_hex:
                kept = [e.to_json() for e in self.state.evidence(state.origin)]
                body = json.dumps({"origin": state.origin, "evidence": kept}, indent=1)
                return Reply(200, JSON, body + "\n")
        return Reply.refuse(404, "this witness does not follow that log")

    @staticmethod
    def _inconsistency(
        request: Request, checkpoint: Checkpoint, size: int, root: bytes
    ) -> str | None:
        if checkpoint.size == 0 and checkpoint.root_hash != EMPTY_ROOT:
            return "a checkpoint of size 0 must have the empty tree's root (SHA-256 of nothing)"
        if request.old_size == 0:
            if request.proof:
                return "old size 0 needs an empty consistency proof"
            return None
        try:
            verify_consistency(
                request.old_size, checkpoint.size, request.proof, root, checkpoint.root_hash
            )
        except ProofError as exc:
            if request.old_size == checkpoint.size:
                return (
                    f"a different checkpoint of size {checkpoint.size} than the one this witness "
                    f"cosigned (a fork): {exc}"
                )
            return (
                f"the consistency proof from size {request.old_size} to {checkpoint.size} "
                f"does not verify: {exc}"
            )
        return None

    @staticmethod
    def _log_lines(note: str, ids: dict[str, bytes]) -> list[str]:
        """The note's signature lines by the log keys we verified (kept for monitors)."""
        out = []
        for line in note.rpartition("\n\n")[2].splitlines():
            for prefix, kid in ids.items():
                if line.startswith(prefix) and base64.b64decode(line[len(prefix) :])[:4] == kid:
                    out.append(line + "\n")
        return out

    def checkpoint(self, hash_hex: str) -> Reply:
        """GET <origin hash>/checkpoint: the last cosigned checkpoint, or 404."""
        if not _ORIGIN_HASH.fullmatch(hash_hex):
            return Reply.refuse(404, "not a lowercase hex SHA-256 of an origin")
        for state in self.state.logs():
            if origin_hash(state.origin) == hash_hex:
                if state.note is None:
                    return Reply.refuse(404, f"no checkpoint of {state.origin!r} cosigned yet")
                return Reply(200, TEXT, state.note)
        return Reply.refuse(404, "this witness does not follow that log")
