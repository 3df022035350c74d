"""Every exception Provenance raises on purpose.

Callers catch these by name; the CLI, web and ingest adapters map them to exit
codes, HTTP statuses and reject reasons. Each message says what is wrong and,
where it can, what to do next.
"""

from __future__ import annotations


class ProvenanceError(Exception):
    """Base of all deliberate errors."""


class ValidationError(ProvenanceError, ValueError):
    """Input does not follow the protocol. `field` names the offending field."""

    def __init__(self, field: str, rule: str):
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}" if field else rule)


class VerificationError(ProvenanceError):
    """A signature, proof, chain or checkpoint does not check out. Fail closed."""


class SignatureError(VerificationError):
    """An Ed25519 signature does not verify."""


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof is malformed or does not verify."""


class RootMismatchError(ProofError):
    """A proof computed a root other than the expected one."""

    def __init__(self, expected: bytes, calculated: bytes):
        self.expected = expected
        self.calculated = calculated
        super().__init__(f"root mismatch: calculated {calculated.hex()}, expected {expected.hex()}")


class RejectedEvent(ProvenanceError):
    """The ledger refused an envelope. `reason` is a short stable code
    (e.g. ``bad-signature``); the message explains it for a person."""

    def __init__(self, reason: str, message: str, event_id: str | None = None):
        self.reason = reason
        self.event_id = event_id
        super().__init__(message)

    def __str__(self) -> str:  # "replay: seq 4 of did:key:… was already used"
        return f"{self.reason}: {self.args[0]}"


class NotFound(ProvenanceError, LookupError):
    """A lot, party, device or event that was asked for does not exist."""


class KeyFileError(ProvenanceError):
    """A key file is missing, unreadable or would be overwritten."""
