"""The signed envelope of wire protocol v1 and v2 (docs/protocol.md).

A v2 envelope is a v1 envelope whose `data` keeps some fields private: it
carries their digests in `data._sd` (selective disclosure,
`provenance.core.disclosure`, docs/protocol.md §14). `v` is 2 exactly when
`data` holds `_sd`, so the version of a stored event follows from its data.

An `Envelope` is always well-formed: `Envelope.from_json` checks structure and
the kind's `data` rules before one exists. Signing lives in
`provenance.core.signing`; this module only verifies.

- signing bytes = RFC 8785 bytes of the object without ``sig``
- event id      = hex SHA-256 of the RFC 8785 bytes of the whole object

"This signature was checked" is a mark only this module's verifier sets
(`Envelope.verify_signature`, or `SignatureVouchers.redeem` for a check done
in another process) and `signature_checked` reads; it holds the very field
and cache objects that were checked, so it is void on a subclass, on a copy
made in another process, and once a field or cache is replaced. The ledger
skips its own check only for marked envelopes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import operator
import re
import secrets
from collections.abc import Sequence
from typing import Any, NamedTuple

from provenance.core import disclosure, fields, kinds
from provenance.core.ed25519 import InvalidSignature
from provenance.core.errors import ProvenanceError, SignatureError, ValidationError
from provenance.core.identity import public_key_from_did, verifier_for
from provenance.core.jcs import canonicalize, parse_json
from provenance.core.timefmt import parse_time

VERSION = 1
VERSION_DISCLOSURE = 2  # `data` keeps fields private (docs/protocol.md §14)
VERSIONS = (VERSION, VERSION_DISCLOSURE)
_V2_DATA = '{"' + disclosure.SD + '":'  # JCS puts `_sd` first: data keys are lowercase
MAX_LOTS = 64
MAX_ENVELOPE_BYTES = 64 * 1024
MAX_SEQ = 2**53 - 1
VOUCHER_BYTES = 32  # a signature check vouched for across processes (SignatureVouchers)
TOP_LEVEL = frozenset({"v", "kind", "signer", "seq", "time", "batches", "data", "sig"})

_json_str = json.JSONEncoder(ensure_ascii=False).encode
_SIG = re.compile(r"[A-Za-z0-9_-]{85}[AQgw]")  # 64 bytes, canonical base64url


def _str(value: str) -> str:
    """JSON string literal; validated protocol fields need no escaping."""
    if '"' in value or "\\" in value or not value.isprintable():
        return _json_str(value)
    return f'"{value}"'


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, field: str = "sig") -> bytes:
    if not isinstance(text, str) or "=" in text:
        raise ValidationError(field, "must be base64url without padding")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValidationError(field, f"is not base64url: {exc}") from None
    if b64url(raw) != text:
        raise ValidationError(field, "is not canonical base64url (no padding, no stray bits)")
    return raw


def _prefix(lots: Sequence[str] | None, data_json: str, kind: str, seq: int) -> str:
    member = "" if lots is None else '"batches":[' + ",".join(map(_str, lots)) + "],"
    return f'{{{member}"data":{data_json},"kind":{_str(kind)},"seq":{seq}'


def version_of(data_json: str) -> int:
    """The wire version of an envelope with this canonical `data` text: 2 when
    it commits to private fields (`_sd`), else 1."""
    return VERSION_DISCLOSURE if data_json.startswith(_V2_DATA) else VERSION


def _suffix(signer: str, time: str, version: int = VERSION) -> str:
    return f',"signer":{_str(signer)},"time":{_str(time)},"v":{version}}}'


def canonical_pair(
    kind: str,
    signer: str,
    seq: int,
    time: str,
    lots: Sequence[str] | None,
    data_json: str,
    sig: str,
) -> tuple[bytes, bytes]:
    """(signing bytes, whole canonical bytes) straight from stored fields, for
    bulk verification; `data_json` must already be canonical JSON text.
    JCS member order: batches, data, kind, seq, sig, signer, time, v."""
    prefix = _prefix(lots, data_json, kind, seq)
    suffix = _suffix(signer, time, version_of(data_json))
    return (prefix + suffix).encode(), (prefix + f',"sig":{_str(sig)}' + suffix).encode()


class Envelope:
    """One signed event. Immutable by convention; build with `from_json`."""

    __slots__ = (
        "_body",
        "_checked",
        "_data",
        "_id",
        "_prefix_text",
        "_sig_bytes",
        "_suffix_text",
        "_time_us",
        "data_json",
        "kind",
        "lots",
        "seq",
        "sig",
        "signer",
        "time",
    )

    kind: str
    signer: str
    seq: int
    time: str
    lots: tuple[str, ...] | None
    data_json: str
    sig: str

    def __init__(
        self,
        kind: str,
        signer: str,
        seq: int,
        time: str,
        lots: tuple[str, ...] | None,
        data: dict[str, Any],
        sig: str,
        *,
        data_json: str | None = None,
        time_us: int | None = None,
    ):
        self.kind = kind
        self.signer = signer
        self.seq = seq
        self.time = time
        self._time_us = time_us
        self.lots = lots
        self._data = data
        self.data_json = canonicalize(data).decode("utf-8") if data_json is None else data_json
        self.sig = sig
        self._body: str | None = None
        self._id: bytes | None = None
        self._prefix_text: str | None = None
        self._suffix_text: str | None = None
        self._sig_bytes: bytes | None = None
        self._checked: _Checked | None = None

    @classmethod
    def from_stored(
        cls,
        kind: str,
        signer: str,
        seq: int,
        time: str,
        lots: tuple[str, ...] | None,
        data_json: str,
        signature: bytes,
    ) -> Envelope:
        """Rebuild a stored event without re-validating it; `data` and
        `time_us` are parsed only when asked for. Verification recomputes
        everything that matters from these fields."""
        envelope = cls(
            kind,
            signer,
            seq,
            time,
            lots,
            None,
            b64url(signature),  # type: ignore[arg-type]
            data_json=data_json,
            time_us=None,
        )
        envelope._sig_bytes = signature
        return envelope

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self.data_json)
        return self._data

    @property
    def time_us(self) -> int:
        if self._time_us is None:
            self._time_us = parse_time(self.time)
        return self._time_us

    # --- canonical forms (JCS sorts: batches, data, kind, seq, sig, signer, time, v)

    def _prefix(self) -> str:
        if self._prefix_text is None:
            self._prefix_text = _prefix(self.lots, self.data_json, self.kind, self.seq)
        return self._prefix_text

    def _suffix(self) -> str:
        if self._suffix_text is None:
            self._suffix_text = _suffix(self.signer, self.time, self.version)
        return self._suffix_text

    @property
    def version(self) -> int:
        """The wire version: 2 when `data` keeps fields private, else 1."""
        return version_of(self.data_json)

    def signing_bytes(self) -> bytes:
        """RFC 8785 bytes of the envelope without `sig`: what the signer signed."""
        return (self._prefix() + self._suffix()).encode("utf-8")

    def canonical_bytes(self) -> bytes:
        """RFC 8785 bytes of the whole envelope; its SHA-256 is the event id."""
        if self._body is None:
            self._body = self._prefix() + f',"sig":{_str(self.sig)}' + self._suffix()
        return self._body.encode("utf-8")

    @property
    def id_bytes(self) -> bytes:
        if self._id is None:
            self._id = hashlib.sha256(self.canonical_bytes()).digest()
        return self._id

    @property
    def event_id(self) -> str:
        return self.id_bytes.hex()

    @property
    def signature(self) -> bytes:
        if self._sig_bytes is None:
            self._sig_bytes = b64url_decode(self.sig)
        return self._sig_bytes

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "v": self.version,
            "kind": self.kind,
            "signer": self.signer,
            "seq": self.seq,
            "time": self.time,
        }
        if self.lots is not None:
            obj["batches"] = list(self.lots)
        obj["data"] = self.data
        obj["sig"] = self.sig
        return obj

    def __repr__(self) -> str:
        return f"<Envelope {self.kind} {self.signer[:20]}… seq={self.seq} id={self.event_id[:12]}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Envelope) and self.id_bytes == other.id_bytes

    def __hash__(self) -> int:
        return hash(self.id_bytes)

    # --- verification

    def verify_signature(self) -> None:
        """Raise SignatureError unless `sig` is the signer's Ed25519 signature.
        On success the envelope is marked checked (see `signature_checked`)."""
        e = self if type(self) is Envelope else plain(self)  # the stored fields, no overrides
        prefix, suffix = _fresh(e)  # from the fields, not from caches
        try:
            signature = b64url_decode(e.sig)
            verifier_for(e.signer).verify(signature, (prefix + suffix).encode("utf-8"))
        except InvalidSignature:
            raise SignatureError(
                f"signature does not verify for {e.signer} seq {e.seq}: the envelope was "
                "changed after signing, or signed with another key"
            ) from None
        if e is self:
            _mark(self, prefix, suffix, signature)

    # --- parsing

    @classmethod
    def from_json(cls, value: Any) -> Envelope:
        """Build from wire bytes, text or a parsed object, strictly.

        Raises ValidationError naming the field and the rule. Does not check
        the signature (see `verify_signature`) or anything needing ledger state.
        """
        if isinstance(value, (bytes, bytearray, str)):
            size = (
                len(value.encode("utf-8", "surrogatepass"))
                if isinstance(value, str)
                else len(value)
            )
            if size > MAX_ENVELOPE_BYTES:
                raise ValidationError("", too_large(size))
            value = parse_json(bytes(value) if isinstance(value, bytearray) else value)
        unsigned = parse_unsigned(value, require_sig=True)
        sig = value["sig"]
        if not isinstance(sig, str) or not _SIG.fullmatch(sig):
            raise ValidationError(
                "sig", "must be a 64-byte Ed25519 signature in base64url without padding (86 chars)"
            )
        return cls(sig=sig, **unsigned)


class NotAnEnvelope(NamedTuple):
    """Input already found to be no envelope before it was parsed as one (a
    message over its size limit, an array over its length limit): the ledger
    refuses it with *reason* (`malformed` or `schema`) and *message*, and
    records it with *raw*. It saves parsing a megabyte only to say less."""

    reason: str
    message: str
    raw: bytes


def too_large(size: int, what: str = "envelope") -> str:
    """The reason for an envelope (or *what*) over MAX_ENVELOPE_BYTES."""
    return f"{what} of {size} bytes is larger than the limit of {MAX_ENVELOPE_BYTES} bytes"


def verify_signatures(envelopes: Sequence[Envelope]) -> list[str | None]:
    """Check each envelope's signature: None where it verifies, else why not.
    An envelope this module marked checked is not checked again; any other
    is checked by `Envelope.verify_signature` itself (never a subclass's
    override). (libsodium releases the GIL while verifying, so callers may
    spread chunks of envelopes over threads.)"""
    failures: list[str | None] = []
    for envelope in envelopes:
        if signature_checked(envelope):
            failures.append(None)
            continue
        try:
            Envelope.verify_signature(envelope)
        except ProvenanceError as exc:  # SignatureError, or a signer that is no key
            failures.append(str(exc))
        else:
            failures.append(None)
    return failures


# --- "this signature was checked": a mark only this module makes

_SEAL = object()  # identity does not survive pickling: a mark from elsewhere is void


class _Checked:
    """The mark: the very objects (fields and the caches derived from them)
    that were checked; any of them replaced voids it."""

    __slots__ = ("seal", "values")

    def __init__(self, values: tuple[Any, ...]):
        self.seal = _SEAL
        self.values = values


_FIELDS = ("kind", "signer", "seq", "time", "lots", "data_json", "sig")
_MARKED = (*_FIELDS, "_prefix_text", "_suffix_text", "_body", "_id", "_sig_bytes")
# The slots themselves: a subclass's property of the same name cannot answer for them.
_SLOTS = {name: Envelope.__dict__[name] for name in (*_MARKED, "_checked")}
_marked_values = operator.attrgetter(*_MARKED)  # only ever used on the plain class


def _field(envelope: Envelope, name: str) -> Any:
    return _SLOTS[name].__get__(envelope, Envelope)


def _fresh(envelope: Envelope) -> tuple[str, str]:
    """The canonical prefix and suffix from the fields as they are now (no cache)."""
    if type(envelope) is not Envelope:  # the stored fields, not what a subclass answers
        envelope = plain(envelope)
    e = envelope
    return (
        _prefix(e.lots, e.data_json, e.kind, e.seq),
        _suffix(e.signer, e.time, version_of(e.data_json)),
    )


def _mark(
    envelope: Envelope, prefix: str, suffix: str, signature: bytes, body: bytes | None = None
) -> None:
    """Set the caches from what was checked, and the mark over all of it."""
    envelope._prefix_text, envelope._suffix_text = prefix, suffix
    text = prefix + f',"sig":{_str(envelope.sig)}' + suffix
    envelope._body = text
    envelope._id = hashlib.sha256(text.encode("utf-8") if body is None else body).digest()
    envelope._sig_bytes = signature
    envelope._checked = _Checked(_marked_values(envelope))


def signature_checked(envelope: Envelope) -> bool:
    """Did this module's verifier check *envelope*'s signature, for exactly
    the fields (and derived caches) it has now? False for a subclass
    (whatever it claims), for a mark made anywhere else, and for an envelope
    changed after the check."""
    if type(envelope) is not Envelope:
        return False
    checked = envelope._checked
    if type(checked) is not _Checked or checked.seal is not _SEAL:
        return False
    return all(map(operator.is_, _marked_values(envelope), checked.values))


def plain(envelope: Envelope) -> Envelope:
    """*envelope* as the plain `Envelope` class: itself, or for a subclass a
    new, unmarked envelope from its stored fields, so that no override of a
    method or property decides what is checked and stored."""
    if type(envelope) is Envelope:
        return envelope
    kind, signer, seq, time, lots, data_json, sig = (_field(envelope, n) for n in _FIELDS)
    return Envelope(kind, signer, seq, time, lots, None, sig, data_json=data_json)  # type: ignore[arg-type]


class SignatureVouchers:
    """Signature checks done in another process (the ingest's prep processes),
    vouched for with a random key that only this object and its copies hold:
    `check` verifies and returns a voucher (keyed BLAKE2b, a MAC, of the
    envelope's canonical bytes); `redeem`, in the process that appends, marks
    a plain envelope checked if its voucher is this key's for exactly its
    bytes. A voucher costs two MACs (~1 µs each) instead of a second Ed25519
    verify (~70 µs). Pass the object to the other process only over our own
    pipes.
    """

    __slots__ = ("_key",)

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def _mac(self, data: bytes) -> bytes:
        return hashlib.blake2b(data, key=self._key, digest_size=VOUCHER_BYTES).digest()

    def check(self, envelope: Envelope) -> bytes:
        """Verify *envelope*'s signature (raises SignatureError) and vouch for it."""
        envelope = plain(envelope)
        Envelope.verify_signature(envelope)  # on success, the caches are what it checked
        return self._mac(envelope.canonical_bytes())

    def redeem(self, envelope: Envelope, voucher: bytes) -> bool:
        """Mark *envelope* checked if *voucher* vouches for it; True if so."""
        if type(envelope) is not Envelope or not isinstance(voucher, bytes):
            return False
        sig = envelope.sig
        if not isinstance(sig, str) or not _SIG.fullmatch(sig):  # canonical: decodes as is
            return False
        prefix, suffix = _fresh(envelope)
        whole = (prefix + f',"sig":{_str(sig)}' + suffix).encode("utf-8")
        if not hmac.compare_digest(voucher, self._mac(whole)):
            return False
        _mark(envelope, prefix, suffix, base64.urlsafe_b64decode(sig + "=="), whole)
        return True


def parse_unsigned(value: Any, require_sig: bool = False) -> dict[str, Any]:
    """Validate every field of an envelope but `sig`; return constructor kwargs."""
    if not isinstance(value, dict):
        raise ValidationError("", "an envelope must be a JSON object")
    unknown = set(value) - TOP_LEVEL
    if unknown:
        raise ValidationError(
            sorted(unknown)[0],
            f"is not an envelope field (allowed: {', '.join(sorted(TOP_LEVEL))})",
        )
    for name in ("v", "kind", "signer", "seq", "time", "data", *(("sig",) if require_sig else ())):
        if name not in value:
            raise ValidationError(name, "is required")
    version = value["v"]
    if version not in VERSIONS or isinstance(version, bool):
        raise ValidationError(
            "v", "must be 1, or 2 when data keeps fields private (wire protocol v1 and v2)"
        )
    kind = value["kind"]
    if not isinstance(kind, str) or kind not in kinds.KIND_CODES:
        raise ValidationError(
            "kind", f"unknown kind {kind!r}; known: {', '.join(kinds.KIND_CODES)}"
        )
    signer = value["signer"]
    public_key_from_did(signer, "signer")
    seq = value["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
        raise ValidationError("seq", f"must be an integer from 0 to {MAX_SEQ}")
    time = value["time"]
    time_us = parse_time(time)
    lots = _parse_lots(kind, value.get("batches", None), "batches" in value)
    data = value["data"]
    _validate_data(version, kind, data, lots)
    return {
        "kind": kind,
        "signer": signer,
        "seq": seq,
        "time": time,
        "time_us": time_us,
        "lots": lots,
        "data": data,
        "data_json": _canonical_data(data),
    }


def _validate_data(version: int, kind: str, data: Any, lots: tuple[str, ...] | None) -> None:
    """The kind's schema; in v2, over the public fields, beside the digests."""
    if version == VERSION:
        if isinstance(data, dict) and disclosure.SD in data:
            raise ValidationError("v", "must be 2: data keeps fields private (data._sd)")
        kinds.validate_data(kind, data, lots)
        return
    if not isinstance(data, dict):
        raise ValidationError("data", "must be an object")
    _digests, public = disclosure.commitments(kind, data)
    kinds.validate_data(kind, public, lots)


def _canonical_data(data: dict[str, Any]) -> str:
    try:
        return canonicalize(data).decode("utf-8")
    except ValidationError as exc:
        raise ValidationError("data", exc.rule) from None


def _parse_lots(kind: str, lots: Any, present: bool) -> tuple[str, ...] | None:
    if kind in kinds.NO_LOTS:
        if present:
            raise ValidationError(
                "batches", f"a {kind} event concerns an identity, not lots: omit it"
            )
        return None
    if not present:
        if kind in kinds.LOTS_OPTIONAL:
            return None
        raise ValidationError("batches", f"is required for {kind}: the lot URIs it concerns")
    if not isinstance(lots, list) or not 1 <= len(lots) <= MAX_LOTS:
        raise ValidationError("batches", f"must be a list of 1 to {MAX_LOTS} lot URIs")
    for index, uri in enumerate(lots):
        fields.lot_uri(uri, f"batches[{index}]")
    if len(set(lots)) != len(lots):
        raise ValidationError("batches", "lists a lot twice")
    return tuple(lots)
