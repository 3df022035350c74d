"""C2SP tlog-cosignature/v1: timestamped Ed25519 cosignatures on a checkpoint.

Pure: text, bytes and integers in, values out or an exception; the caller passes
the time. Formats (c2sp.org/tlog-cosignature, signature type 0x04)::

    key id   = SHA-256(<name> || "\\n" || 0x04 || 32-byte public key)[:4]
    vkey     = <name>+<8 hex key id>+base64(0x04 || 32-byte public key)
    message  = "cosignature/v1\\n" || "time " <decimal timestamp> "\\n" || <checkpoint body>
    line     = "— " <name> " " base64(key id || u64 big-endian timestamp || 64-byte signature) "\\n"

The checkpoint body is the whole note text, extension lines included, without the
blank line and the signature lines. A v1 cosignature says: as of ``timestamp``,
the largest consistent tree the cosigner has seen for this origin has this root.

The Ed25519 message does not commit to the cosigner's name, so one key must never
serve two cosigners (the spec's rule; :func:`verify_cosignature` cannot tell).

Errors: bad arguments of your own raise :class:`ValidationError`; a cosignature
you were sent that is malformed or does not verify raises :class:`CosignatureError`
(a :class:`VerificationError`), so ``except VerificationError`` fails closed.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.checkpoint import Checkpoint, b64decode_strict, b64encode
from provenance.core.ed25519 import InvalidSignature, Verifier
from provenance.core.errors import SignatureError, ValidationError

__all__ = [
    "COSIGNATURE_TYPE",
    "HEADER",
    "MAX_TIMESTAMP",
    "Cosignature",
    "CosignatureError",
    "Cosigner",
    "cosign",
    "cosigned_message",
    "cosigner_key_id",
    "format_cosigner_key",
    "parse_cosignature_line",
    "parse_cosigner_key",
    "verify_cosignature",
]

COSIGNATURE_TYPE = 0x04
"""signed-note signature type byte for timestamped Ed25519 checkpoint cosignatures."""
HEADER = "cosignature/v1"
"""First line of the signed message: domain separation from every other note signature."""
MAX_TIMESTAMP = 2**63 - 1
"""The spec's bound on a cosignature's timestamp (POSIX seconds)."""

PUBLIC_KEY_SIZE = 32
KEY_ID_SIZE = 4
TIMESTAMP_SIZE = 8
SIGNATURE_SIZE = 64
ENCODED_SIZE = KEY_ID_SIZE + TIMESTAMP_SIZE + SIGNATURE_SIZE
SIGNATURE_PREFIX = "— "  # em dash U+2014, space

_HEX8 = re.compile(r"[0-9a-fA-F]{8}")


class CosignatureError(SignatureError):
    """A cosignature line is malformed, or its signature does not verify."""


def _check_name(name: str) -> None:
    """signed-note key names: non-empty, no Unicode spaces, no '+', no control characters."""
    if not isinstance(name, str) or not name:
        raise ValidationError("cosigner name", "must be a non-empty string")
    if "+" in name or any(ch.isspace() or ord(ch) < 0x20 for ch in name):
        raise ValidationError("cosigner name", f"must not contain spaces or '+': {name[:80]!r}")


def _check_public_key(public_key: bytes) -> None:
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise ValidationError("public_key", f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise ValidationError("timestamp", f"must be an int, got {type(timestamp).__name__}")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValidationError("timestamp", f"must be between 0 and 2**63-1, got {timestamp}")


def _body_text(checkpoint: Checkpoint | str) -> str:
    if isinstance(checkpoint, Checkpoint):
        return checkpoint.to_text()
    if not isinstance(checkpoint, str) or not checkpoint.endswith("\n"):
        raise ValidationError("checkpoint", "must be a Checkpoint or a body ending in a newline")
    return checkpoint


# --- keys ------------------------------------------------------------------------------------


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || 0x04 || public key)[:4]."""
    _check_name(name)
    _check_public_key(public_key)
    data = name.encode("utf-8") + b"\n" + bytes([COSIGNATURE_TYPE]) + public_key
    return hashlib.sha256(data).digest()[:KEY_ID_SIZE]


def format_cosigner_key(name: str, public_key: bytes) -> str:
    """The cosigner's verifier key: ``<name>+<8 hex key id>+base64(0x04 || public key)``."""
    kid = cosigner_key_id(name, public_key)
    return f"{name}+{kid.hex()}+{b64encode(bytes([COSIGNATURE_TYPE]) + public_key)}"


def parse_cosigner_key(text: str) -> tuple[str, bytes]:
    """(name, 32-byte public key) of a type 0x04 verifier key; checks the key id.

    Raises :class:`ValidationError` naming what is wrong (a type 0x01 note key
    given where a cosigner key belongs is refused, saying so).
    """
    parts = text.strip("\n").split("+", 2) if isinstance(text, str) else []
    if len(parts) != 3:
        raise ValidationError(
            "cosigner key", "must look like <name>+<8 hex key id>+<base64(0x04 || key)>"
        )
    name, kid_hex, key_b64 = parts
    _check_name(name)
    if not _HEX8.fullmatch(kid_hex):
        raise ValidationError("cosigner key", f"key id must be 8 hex digits, got {kid_hex!r}")
    raw = b64decode_strict("cosigner key", key_b64)
    if not raw or raw[0] != COSIGNATURE_TYPE:
        kind = f"0x{raw[0]:02x}" if raw else "missing"
        hint = " (0x01 is a log's note key, not a witness's)" if raw and raw[0] == 0x01 else ""
        raise ValidationError(
            "cosigner key",
            f"signature type {kind} is not supported (only 0x04, Ed25519 cosignature/v1){hint}",
        )
    public_key = raw[1:]
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValidationError(
            "cosigner key", f"Ed25519 key must be {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}"
        )
    want = cosigner_key_id(name, public_key).hex()
    if kid_hex.lower() != want:
        raise ValidationError(
            "cosigner key",
            f"key id {kid_hex} does not match name and key (want {want}); "
            "the key text is mistyped or tampered with",
        )
    return name, public_key


# --- signing and verifying -------------------------------------------------------------------


def cosigned_message(checkpoint: Checkpoint | str, timestamp: int) -> bytes:
    """The bytes an Ed25519 cosignature signs: header line, time line, checkpoint body."""
    _check_timestamp(timestamp)
    body = _body_text(checkpoint)
    return f"{HEADER}\ntime {timestamp}\n{body}".encode()


@dataclass(frozen=True)
class Cosignature:
    """One parsed cosignature line: who (name and key id), when, and the signature."""

    name: str
    key_id: bytes
    timestamp: int
    signature: bytes

    def to_line(self) -> str:
        """``— <name> base64(key id || timestamp || signature)\\n``."""
        raw = self.key_id + struct.pack(">Q", self.timestamp) + self.signature
        return f"{SIGNATURE_PREFIX}{self.name} {b64encode(raw)}\n"


def cosign(
    checkpoint: Checkpoint | str, name: str, private_key: Ed25519PrivateKey, timestamp: int
) -> str:
    """The cosignature line (ending in a newline) by ``name``'s key on ``checkpoint``.

    ``timestamp`` is the time of signing in POSIX seconds; the witness protocol
    forbids 0, so it is refused here.
    """
    return Cosigner(name, private_key).cosign(checkpoint, timestamp)


class Cosigner:
    """A cosigner's name and private key, with its key id computed once: the
    witness's hot path. ``cosign(checkpoint, timestamp)`` is :func:`cosign`."""

    __slots__ = ("key_id", "name", "private_key", "public_key")

    def __init__(self, name: str, private_key: Ed25519PrivateKey):
        self.name = name
        self.private_key = private_key
        self.public_key = private_key.public_key().public_bytes_raw()
        self.key_id = cosigner_key_id(name, self.public_key)

    @property
    def verifier_key(self) -> str:
        return format_cosigner_key(self.name, self.public_key)

    def cosign(self, checkpoint: Checkpoint | str, timestamp: int) -> str:
        if timestamp == 0:
            raise ValidationError("timestamp", "must not be 0: a cosignature states a time")
        signature = self.private_key.sign(cosigned_message(checkpoint, timestamp))
        return Cosignature(self.name, self.key_id, timestamp, signature).to_line()


def parse_cosignature_line(line: str) -> Cosignature:
    """Parse ``— <name> <base64>`` (with or without its final newline) as a type 0x04
    cosignature: 4-byte key id, 8-byte timestamp, 64-byte signature, nothing else.

    Raises :class:`CosignatureError` naming what is malformed.
    """
    if not isinstance(line, str):
        raise CosignatureError("a cosignature line must be text")
    text = line[:-1] if line.endswith("\n") else line
    if "\n" in text:
        raise CosignatureError("a cosignature line must be a single line")
    if not text.startswith(SIGNATURE_PREFIX):
        raise CosignatureError("does not start with an em dash (U+2014) and a space")
    name, sep, encoded = text[len(SIGNATURE_PREFIX) :].partition(" ")
    if not sep or not encoded:
        raise CosignatureError("has no base64 signature after the key name")
    try:
        _check_name(name)
        raw = b64decode_strict("signature", encoded)
    except ValidationError as exc:
        raise CosignatureError(str(exc)) from None
    if len(raw) != ENCODED_SIZE:
        raise CosignatureError(
            f"signature is {len(raw)} bytes, a timestamped Ed25519 cosignature is "
            f"{ENCODED_SIZE} (key id 4, timestamp 8, signature 64)"
        )
    (timestamp,) = struct.unpack(">Q", raw[KEY_ID_SIZE : KEY_ID_SIZE + TIMESTAMP_SIZE])
    if timestamp > MAX_TIMESTAMP:
        raise CosignatureError(f"timestamp {timestamp} exceeds 2**63-1")
    return Cosignature(name, raw[:KEY_ID_SIZE], timestamp, raw[KEY_ID_SIZE + TIMESTAMP_SIZE :])


def verify_cosignature(
    checkpoint: Checkpoint | str,
    cosignature: Cosignature | str,
    name: str,
    public_key: bytes,
    *,
    now: int | None = None,
) -> int:
    """Check that ``cosignature`` is ``name``'s cosignature on ``checkpoint``; return
    its timestamp.

    ``cosignature`` is a parsed :class:`Cosignature` or a signature line. The line's
    name and key id must be this cosigner's (else it is someone else's line: refused,
    not ignored — callers that sort lines by key do that before calling). With
    ``now`` (POSIX seconds), a timestamp after ``now`` is refused, as the spec lets
    verifiers do. Raises :class:`CosignatureError`.
    """
    if not isinstance(cosignature, Cosignature):
        cosignature = parse_cosignature_line(cosignature)
    want = cosigner_key_id(name, public_key)
    if cosignature.name != name or cosignature.key_id != want:
        raise CosignatureError(
            f"the line is by {cosignature.name} with key id {cosignature.key_id.hex()}, "
            f"not by {name} with key id {want.hex()}"
        )
    if cosignature.timestamp == 0:
        raise CosignatureError(f"cosignature by {name} has timestamp 0")
    if now is not None and cosignature.timestamp > now:
        raise CosignatureError(
            f"cosignature by {name} is dated {cosignature.timestamp}, after now ({now}): "
            "a clock is wrong or the line is forged"
        )
    message = cosigned_message(checkpoint, cosignature.timestamp)
    try:
        Verifier(public_key).verify(cosignature.signature, message)
    except (InvalidSignature, ValueError):
        raise CosignatureError(
            f"cosignature by {name} (key id {want.hex()}) does not verify: the checkpoint "
            "was altered after cosigning, or the line is forged"
        ) from None
    return cosignature.timestamp
