"""C2SP tlog-checkpoint bodies inside C2SP signed notes, signed with Ed25519.

Pure: text and bytes in, values out or an exception. Formats (c2sp.org/tlog-checkpoint,
c2sp.org/signed-note)::

    <origin>\\n
    <tree size, ASCII decimal, no leading zeroes>\\n
    <base64 root hash>\\n
    [<extension line>\\n ...]
    \\n
    — <key name> <base64(4-byte key id || 64-byte Ed25519 signature)>\\n
    [more signature lines, e.g. witness cosignatures]

Key id = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]; verifier key
text = ``<name>+<8 hex key id>+<base64(0x01 || public key)>``.

Errors: bad arguments of your own (a signing key name with a space, a 31-byte public
key, a body without its final newline) raise :class:`ValidationError`, as does
:meth:`Checkpoint.from_text` on a malformed body. Everything wrong with a note you
were sent, malformed or unsigned, raises a :class:`VerificationError` subclass
from :func:`open_note` / :func:`open_checkpoint`, so ``except VerificationError``
fails closed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.ed25519 import InvalidSignature, Verifier
from provenance.core.errors import SignatureError, ValidationError, VerificationError

__all__ = [
    "ED25519_SIGNATURE_TYPE",
    "MAX_SIGNATURES",
    "MAX_TREE_SIZE",
    "Checkpoint",
    "format_verifier_key",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_verifier_key",
    "sign_checkpoint",
    "sign_note",
]

ED25519_SIGNATURE_TYPE = 0x01
"""signed-note signature type byte for Ed25519."""
MAX_SIGNATURES = 100
"""More signature lines than this make a note malformed (the spec's minimum is 16)."""
MAX_TREE_SIZE = 2**64 - 1
"""Tree sizes are unsigned 64-bit in every interoperable implementation."""

ROOT_HASH_SIZE = 32
PUBLIC_KEY_SIZE = 32
KEY_ID_SIZE = 4
_SIG_PREFIX = "— "  # em dash U+2014, space

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # ASCII controls except newline


# --- helpers ---------------------------------------------------------------------------------


def b64encode(data: bytes) -> str:
    """Standard padded base64 text (RFC 4648 §4), as signed notes write it."""
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(field: str, text: str) -> bytes:
    """Strict RFC 4648 §4 base64: padded, no stray characters, canonical trailing bits."""
    if len(text) % 4 or not _BASE64.fullmatch(text):
        raise ValidationError(field, f"is not standard padded base64: {text[:60]!r}")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValidationError(field, f"is not valid base64 ({exc}): {text[:60]!r}") from None
    if b64encode(data) != text:
        raise ValidationError(field, f"is not canonical base64: {text[:60]!r}")
    return data


def _check_text(field: str, text: str) -> None:
    """Valid UTF-8 with no ASCII control characters other than newline."""
    if not isinstance(text, str):
        raise ValidationError(field, f"must be str, got {type(text).__name__}")
    bad = _CONTROL.search(text)
    if bad:
        raise ValidationError(
            field,
            f"contains control character U+{ord(bad.group()):04X} at offset {bad.start()} "
            "(lines must end in a bare \\n)",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(field, f"is not valid UTF-8 ({exc.reason})") from None


def _check_line(field: str, line: str) -> None:
    _check_text(field, line)
    if not line:
        raise ValidationError(field, "must not be empty")
    if "\n" in line:
        raise ValidationError(field, "must be a single line (contains a newline)")


def _check_key_name(name: str) -> None:
    """signed-note: non-empty, no Unicode spaces, no '+'."""
    _check_line("key name", name)
    if "+" in name or any(ch.isspace() for ch in name):
        raise ValidationError("key name", f"must not contain spaces or '+': {name!r}")


# --- checkpoint body -------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, tree size and RFC 6962 root hash.

    Validated on construction, so every instance serialises to a well-formed body.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line("origin", self.origin)
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise ValidationError("size", f"must be an int, got {type(self.size).__name__}")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValidationError("size", f"must be between 0 and 2**64-1, got {self.size}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != ROOT_HASH_SIZE:
            got = len(self.root_hash) if isinstance(self.root_hash, bytes) else "not bytes"
            raise ValidationError("root_hash", f"must be {ROOT_HASH_SIZE} bytes, got {got}")
        if not isinstance(self.extensions, tuple):
            raise ValidationError("extensions", "must be a tuple of lines")
        for i, line in enumerate(self.extensions):
            _check_line(f"extensions[{i}]", line)

    def to_text(self) -> str:
        """The checkpoint body (note text), every line ending in a newline."""
        lines = [self.origin, str(self.size), b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, body: str) -> Checkpoint:
        """Parse a checkpoint body strictly; raises :class:`ValidationError`."""
        _check_text("checkpoint", body)
        if not body.endswith("\n"):
            raise ValidationError("checkpoint", "must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise ValidationError(
                "checkpoint",
                f"needs at least 3 lines (origin, tree size, root hash), got {len(lines)}",
            )
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise ValidationError("origin", "must not be empty")
        if len(size_text) > 20 or not _DECIMAL.fullmatch(size_text):
            raise ValidationError(
                "size", f"must be ASCII decimal without leading zeroes, got {size_text[:40]!r}"
            )
        root_hash = b64decode_strict("root_hash", root_text)
        if len(root_hash) != ROOT_HASH_SIZE:
            raise ValidationError(
                "root_hash", f"must decode to {ROOT_HASH_SIZE} bytes, got {len(root_hash)}"
            )
        for i, line in enumerate(extensions):
            if not line:
                raise ValidationError(f"extensions[{i}]", "extension lines must not be empty")
        return cls(origin, int(size_text), root_hash, tuple(extensions))


# --- keys ------------------------------------------------------------------------------------


def key_id(name: str, public_key: bytes) -> bytes:
    """4-byte Ed25519 key id: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    _check_key_name(name)
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValidationError(
            "public_key", f"must be {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}"
        )
    data = name.encode() + b"\n" + bytes([ED25519_SIGNATURE_TYPE]) + public_key
    return hashlib.sha256(data).digest()[:KEY_ID_SIZE]


def format_verifier_key(name: str, public_key: bytes) -> str:
    """``<name>+<8 hex key id>+<base64(0x01 || public key)>``."""
    kid = key_id(name, public_key)
    return f"{name}+{kid.hex()}+{b64encode(bytes([ED25519_SIGNATURE_TYPE]) + public_key)}"


def parse_verifier_key(text: str) -> tuple[str, bytes]:
    """(name, 32-byte Ed25519 public key) from verifier key text; checks the key id.

    Like Go's note.NewVerifier, the hex key id may be upper or lower case. Newlines
    around the text (as read from a file) are ignored. Raises :class:`ValidationError`.
    """
    parts = text.strip("\n").split("+", 2) if isinstance(text, str) else []
    if len(parts) != 3:
        raise ValidationError("verifier_key", "must look like <name>+<8 hex key id>+<base64 key>")
    name, kid_hex, key_b64 = parts
    _check_key_name(name)
    if not _HEX8.fullmatch(kid_hex):
        raise ValidationError("verifier_key", f"key id must be 8 hex digits, got {kid_hex!r}")
    raw = b64decode_strict("verifier_key", key_b64)
    if not raw or raw[0] != ED25519_SIGNATURE_TYPE:
        kind = f"0x{raw[0]:02x}" if raw else "missing"
        raise ValidationError(
            "verifier_key", f"signature type {kind} is not supported (only 0x01, Ed25519)"
        )
    public_key = raw[1:]
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValidationError(
            "verifier_key", f"Ed25519 key must be {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}"
        )
    want = key_id(name, public_key).hex()
    if kid_hex.lower() != want:
        raise ValidationError(
            "verifier_key",
            f"key id {kid_hex} does not match name and key (want {want}); "
            "the key text is mistyped or tampered with",
        )
    return name, public_key


# --- signed notes ----------------------------------------------------------------------------


def _check_note_text(body: str) -> None:
    _check_text("note text", body)
    if not body.endswith("\n"):
        raise ValidationError("note text", "must end with a newline")


def sign_note(body: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Sign ``body`` (which must end in a newline) and return the signed note."""
    _check_note_text(body)
    kid = key_id(name, private_key.public_key().public_bytes_raw())  # validates the name
    signature = private_key.sign(body.encode("utf-8"))
    return f"{body}\n{_SIG_PREFIX}{name} {b64encode(kid + signature)}\n"


def _split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """(text, [(key name, key id, signature)]) of a syntactically valid note."""
    _check_text("note", note)
    # The text ends at the last blank line; the text itself may contain blank lines.
    split = note.rfind("\n\n")
    if split < 0:
        raise ValidationError("note", "has no blank line between the text and the signatures")
    body, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise ValidationError("note", "has no signature lines")
    if not block.endswith("\n"):
        raise ValidationError("note", "must end with a newline after the last signature line")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise ValidationError(
            "note", f"has {len(lines)} signature lines, more than the limit of {MAX_SIGNATURES}"
        )
    signatures = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_SIG_PREFIX):
            raise ValidationError(
                "note", f"signature line {number} does not start with an em dash and a space"
            )
        name, _, sig_b64 = line[len(_SIG_PREFIX) :].partition(" ")
        _check_key_name(name)
        if not sig_b64:
            raise ValidationError(
                f"signature line {number}", "has no base64 signature after the key name"
            )
        raw = b64decode_strict(f"signature line {number}", sig_b64)
        if len(raw) <= KEY_ID_SIZE:
            raise ValidationError(
                f"signature line {number}", "must hold a 4-byte key id and a signature"
            )
        signatures.append((name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:]))
    return body, signatures


def open_note(note: str, name: str, public_key: bytes) -> str:
    """Verify the signature by ``name`` / ``public_key`` on a signed note; return its text.

    Signatures by other keys (e.g. witness cosignatures) are ignored, as the spec
    requires. Every signature by this key must verify. Raises :class:`SignatureError`
    when the note is malformed, has no signature by this key or one fails to verify,
    and :class:`ValidationError` when ``public_key`` is not 32 bytes. An invalid key
    name is a :class:`SignatureError` too: callers may take it from untrusted text
    (the origin line), and no signature line can carry it.
    """
    try:
        _check_key_name(name)
    except ValidationError as exc:
        raise SignatureError(f"no signature can be by {name!r}: {exc}") from exc
    want = key_id(name, public_key)  # validates the key length
    try:
        body, signatures = _split_note(note)
    except ValidationError as exc:
        raise SignatureError(f"malformed note: {exc}") from exc
    mine = [sig for n, kid, sig in signatures if n == name and kid == want]
    if not mine:
        others = sorted({kid.hex() for n, kid, _ in signatures if n == name})
        hint = f" (it has signatures by {name} with key id {', '.join(others)})" if others else ""
        raise SignatureError(
            f"no signature by {name} with key id {want.hex()}{hint} — is this the right log key?"
        )
    try:
        verifier = Verifier(bytes(public_key))
    except ValueError as exc:
        raise ValidationError("public_key", f"is not an Ed25519 public key ({exc})") from None
    message = body.encode("utf-8")
    for sig in mine:
        try:
            verifier.verify(sig, message)
        except InvalidSignature:
            raise SignatureError(
                f"signature by {name} with key id {want.hex()} does not verify: the note text "
                "was altered after signing, or it was signed by a different key"
            ) from None
    return body


def sign_checkpoint(cp: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> str:
    """Signed note carrying ``cp``. The key name SHOULD equal ``cp.origin``."""
    return sign_note(cp.to_text(), name, private_key)


def open_checkpoint(
    note: str, name: str, public_key: bytes, *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint note (see :func:`open_note`) and parse its body.

    With ``origin``, also require the checkpoint to be for that log. A correctly
    signed body that is not a valid checkpoint raises :class:`VerificationError`.
    """
    body = open_note(note, name, public_key)
    try:
        cp = Checkpoint.from_text(body)
    except ValidationError as exc:
        raise VerificationError(f"signed note is not a valid checkpoint: {exc}") from exc
    if origin is not None and cp.origin != origin:
        raise VerificationError(
            f"checkpoint is for log {cp.origin!r}, expected {origin!r}; "
            "was it fetched from the wrong log?"
        )
    return cp
