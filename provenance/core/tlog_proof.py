"""C2SP tlog-proof (c2sp.org/tlog-proof@v1): an offline inclusion proof with the
checkpoint inside, written and read strictly (pure).

::

    c2sp.org/tlog-proof@v1
    [extra <base64>]
    index <decimal, no leading zeroes>
    <base64 SHA-256 hash>          ← RFC 6962 inclusion proof, leaf's sibling first
    …
                                   ← an empty line
    <the checkpoint, a signed note, verbatim>

Reading refuses anything with a second spelling: non-canonical base64, leading
zeroes, an empty extra, a hash that is not 32 bytes, CR line ends, a checkpoint
that is not a syntactically valid signed note. `verify_tlog_proof` checks the
proof against a checkpoint the caller has already opened with the log key
(the signature is the caller's business: the key is trust material).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from provenance.core.checkpoint import MAX_TREE_SIZE, Checkpoint
from provenance.core.errors import ValidationError, VerificationError
from provenance.core.merkle import verify_inclusion

HEADER = "c2sp.org/tlog-proof@v1"
HASH_SIZE = 32
MAX_PROOF_HASHES = 64  # a tree of at most 2**64 leaves
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


class TlogProofError(VerificationError):
    """A tlog-proof that is malformed or does not prove its leaf."""


@dataclass(frozen=True)
class TlogProof:
    index: int
    proof: tuple[bytes, ...]
    checkpoint: str  # the signed note, verbatim
    extra: bytes | None = None

    def to_text(self) -> str:
        return format_tlog_proof(self.index, self.proof, self.checkpoint, extra=self.extra)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(what: str, text: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TlogProofError(f"tlog-proof {what} is not base64: {text[:60]!r}") from None
    if _b64(data) != text:
        raise TlogProofError(f"tlog-proof {what} is not canonical base64: {text[:60]!r}")
    return data


def format_tlog_proof(
    index: int, proof: Sequence[bytes], checkpoint: str, *, extra: bytes | None = None
) -> str:
    """The tlog-proof text for leaf ``index`` with ``proof`` under ``checkpoint`` (a
    signed note, ending in a newline)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_TREE_SIZE:
        raise ValidationError("index", f"must be an int in 0..2**64-2, got {index!r}")
    if any(len(h) != HASH_SIZE for h in proof):
        raise ValidationError("proof", f"every hash must be {HASH_SIZE} bytes")
    if not isinstance(checkpoint, str) or not checkpoint.endswith("\n"):
        raise ValidationError("checkpoint", "must be a signed note ending in a newline")
    if extra is not None and not extra:
        raise ValidationError("extra", "must be absent or non-empty")
    lines = [HEADER]
    if extra is not None:
        lines.append("extra " + _b64(extra))
    lines.append(f"index {index}")
    lines.extend(_b64(h) for h in proof)
    return "\n".join(lines) + "\n\n" + checkpoint


def parse_tlog_proof(text: str) -> TlogProof:
    """Read a tlog-proof strictly; raises `TlogProofError` saying what is wrong."""
    if not isinstance(text, str):
        raise TlogProofError("a tlog-proof is text")
    if "\r" in text:
        raise TlogProofError("tlog-proof lines end in a bare newline, not CR LF")
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise TlogProofError("tlog-proof has no empty line before its checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise TlogProofError(f"tlog-proof must start with {HEADER!r}, got {lines[0][:60]!r}")
    at = 1
    extra = None
    if at < len(lines) and lines[at].startswith("extra "):
        extra = _unb64("extra", lines[at][len("extra ") :])
        if not extra:
            raise TlogProofError("tlog-proof extra line is empty")
        at += 1
    if at >= len(lines) or not lines[at].startswith("index "):
        raise TlogProofError("tlog-proof lacks its `index N` line")
    number = lines[at][len("index ") :]
    if not _DECIMAL.fullmatch(number) or int(number) >= MAX_TREE_SIZE:
        raise TlogProofError(
            f"tlog-proof index is not a decimal without leading zeroes: {number[:30]!r}"
        )
    hashes = lines[at + 1 :]
    if len(hashes) > MAX_PROOF_HASHES:
        raise TlogProofError(f"tlog-proof has {len(hashes)} hashes, more than a tree can need")
    proof = []
    for i, line in enumerate(hashes, start=1):
        if not line:
            raise TlogProofError(f"tlog-proof hash line {i} is empty")
        digest = _unb64(f"hash {i}", line)
        if len(digest) != HASH_SIZE:
            raise TlogProofError(f"tlog-proof hash {i} is {len(digest)} bytes, want {HASH_SIZE}")
        proof.append(digest)
    if not checkpoint.endswith("\n") or "\n\n" not in checkpoint:
        raise TlogProofError(
            "tlog-proof checkpoint is not a signed note (text, empty line, signatures)"
        )
    return TlogProof(int(number), tuple(proof), checkpoint, extra)


def verify_tlog_proof(proof: TlogProof, leaf_hash: bytes, checkpoint: Checkpoint) -> None:
    """Check that ``leaf_hash`` is leaf ``proof.index`` of the tree ``checkpoint``
    (opened and signature-checked by the caller from ``proof.checkpoint``)."""
    if proof.index >= checkpoint.size:
        raise TlogProofError(
            f"tlog-proof index {proof.index} is beyond its checkpoint (size {checkpoint.size})"
        )
    try:
        verify_inclusion(proof.index, checkpoint.size, leaf_hash, proof.proof, checkpoint.root_hash)
    except VerificationError as exc:
        raise TlogProofError(f"leaf {proof.index} is not in the log as signed: {exc}") from None
