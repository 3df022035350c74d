"""Selective disclosure (wire protocol v2, docs/protocol.md §14), pure.

A producer keeps some of an event's `data` fields private: the signed
envelope carries, in place of each value, the digest of a *disclosure*, the
RFC 9901 (SD-JWT) shape adapted to our JCS envelopes:

- disclosure = base64url (no padding) of the UTF-8 JSON array
  ``[salt, name, value]``; the salt is base64url of 16 to 64 random bytes
  (at least 128 bits, RFC 9901 §9.3);
- digest     = base64url (no padding) of SHA-256 over the disclosure's ASCII
  characters (RFC 9901 §4.2.3);
- ``data._sd`` lists the digests in ascending order, ``data._sd_alg`` is
  ``"sha-256"``; the envelope says ``"v": 2``.

The signature and the event id cover the digests, never the values. Only
top-level fields of `data` may be private, and only those in
`PRIVATE_FIELDS` for the kind: the fields the ledger's rules read stay public.
There are no decoy digests: the ledger is handed every disclosure when it
appends, so it can hold each hidden field to the kind's schema and refuse a
field it needs hidden.

`conceal` makes disclosures (the signing side); `commitments` checks the
`_sd` structure of a v2 `data`; `open_disclosures` checks disclosures
against an envelope's digests and returns the values; `disclose` merges them
back. No I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from provenance.core import kinds
from provenance.core.ed25519 import InvalidSignature
from provenance.core.errors import ValidationError, VerificationError
from provenance.core.identity import verifier_for
from provenance.core.jcs import canonicalize, parse_json

if TYPE_CHECKING:
    from provenance.core.envelope import Envelope

SD = "_sd"
SD_ALG = "_sd_alg"
ALGORITHM = "sha-256"
SALT_BYTES = 16  # 128 bits, RFC 9901 §9.3's minimum
MAX_SALT_BYTES = 64
MAX_DISCLOSURE_CHARS = 16 * 1024
DIGEST_CHARS = 43  # base64url of 32 bytes, no padding

# What each kind may keep private: top-level `data` fields that no ledger
# rule, derived table or export needs to read (docs/protocol.md §14). A
# kind's required fields always stay public; so do lots (`batches`), `to`,
# `shipment`, a recall's class, quantities that custody and over-shipping
# rules read, profiles and categories the cold chain judges by, and every
# field of kinds not listed here.
PRIVATE_FIELDS: dict[str, frozenset[str]] = {
    "commission": frozenset({"origin", "produced", "ext"}),
    "ship": frozenset({"location", "ext"}),
    "receive": frozenset({"location", "condition", "ext"}),
    "transform": frozenset({"location", "ext"}),
    "inspect": frozenset({"document", "notes", "ext"}),
    "dispense": frozenset({"location", "ext"}),
}

_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_DIGEST = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")  # 32 bytes, canonical


class DisclosureError(VerificationError):
    """A disclosure does not match the envelope's signed digests, or is not
    one the protocol allows. Fail closed."""


@dataclass(frozen=True)
class Disclosure:
    """One disclosed field: the encoded disclosure as sent, its digest, and
    the salt, name and value it decodes to."""

    encoded: str
    digest: str
    salt: str
    name: str
    value: Any


# The form an envelope travels in with its disclosures (CLI files, HTTP, MQTT):
# {"envelope": {...}, "disclosures": ["...", ...]}; a bare envelope stays valid.
WRAPPER = frozenset({"envelope", "disclosures"})


def is_wrapped(value: Any) -> bool:
    """Is *value* (parsed JSON) an envelope with its disclosures?"""
    return isinstance(value, dict) and "envelope" in value and "sig" not in value


def unwrap(value: Mapping[str, Any]) -> tuple[Any, list[Any]]:
    """The envelope and the disclosures of the wrapper form (ValidationError
    if it holds anything else)."""
    unknown = set(value) - WRAPPER
    if unknown:
        raise ValidationError(
            sorted(unknown)[0], 'is not allowed beside "envelope" and "disclosures"'
        )
    disclosures = value.get("disclosures")
    if not isinstance(disclosures, list):
        raise ValidationError("disclosures", "must be a list of encoded disclosures")
    return value["envelope"], disclosures


class Disclosed(NamedTuple):
    """A signed v2 envelope with the disclosures of its private fields, as a
    signer hands it to the ledger (`Ledger.append` takes it as an item)."""

    envelope: Envelope
    disclosures: tuple[str, ...]

    @property
    def event_id(self) -> str:
        return self.envelope.event_id

    @property
    def seq(self) -> int:
        return self.envelope.seq

    def to_json(self) -> dict[str, Any]:
        """The wrapper form, `{"envelope": …, "disclosures": […]}`."""
        return wrap(self.envelope.to_json(), self.disclosures)


def wrap(envelope: Mapping[str, Any], disclosures: Sequence[str]) -> dict[str, Any]:
    """The wrapper form; a bare envelope when there is nothing to disclose."""
    if not disclosures:
        return dict(envelope)
    return {"envelope": dict(envelope), "disclosures": list(disclosures)}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str, field: str) -> bytes:
    if not isinstance(text, str) or not _B64URL.fullmatch(text):
        raise ValidationError(field, "must be base64url without padding")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValidationError(field, f"is not base64url: {exc}") from None
    if _b64url(raw) != text:
        raise ValidationError(field, "is not canonical base64url (no padding, no stray bits)")
    return raw


def digest_of(encoded: str) -> str:
    """The digest of an encoded disclosure: base64url(SHA-256(ASCII bytes))."""
    return _b64url(hashlib.sha256(encoded.encode("ascii")).digest())


def encode(salt: str, name: str, value: Any) -> str:
    """The disclosure of *name* = *value* with *salt*: base64url of the JCS
    bytes of ``[salt, name, value]`` (any JSON encoding verifies; ours is JCS,
    so a vector is reproducible)."""
    return _b64url(canonicalize([salt, name, value]))


def new_salt() -> str:
    """A fresh salt: 128 random bits, base64url."""
    return _b64url(secrets.token_bytes(SALT_BYTES))


def decode(encoded: Any, field: str = "disclosure") -> Disclosure:
    """Parse one encoded disclosure, strictly (raises ValidationError)."""
    if not isinstance(encoded, str) or len(encoded) > MAX_DISCLOSURE_CHARS:
        raise ValidationError(
            field, f"must be a base64url string of at most {MAX_DISCLOSURE_CHARS} characters"
        )
    raw = _b64url_decode(encoded, field)
    try:
        value = parse_json(raw)
    except ValidationError as exc:
        raise ValidationError(field, f"does not decode to JSON: {exc}") from None
    if not isinstance(value, list) or len(value) != 3:
        raise ValidationError(field, "must decode to a JSON array [salt, name, value]")
    salt, name, content = value
    salt_bytes = _b64url_decode(salt, f"{field} salt") if isinstance(salt, str) else None
    if salt_bytes is None or not SALT_BYTES <= len(salt_bytes) <= MAX_SALT_BYTES:
        raise ValidationError(
            f"{field} salt",
            f"must be base64url of {SALT_BYTES} to {MAX_SALT_BYTES} random bytes (≥ 128 bits)",
        )
    if not isinstance(name, str) or name in (SD, SD_ALG, "..."):
        raise ValidationError(f"{field} name", "must be the name of a data field")
    return Disclosure(encoded, digest_of(encoded), salt, name, content)


def private_fields(kind: str) -> frozenset[str]:
    """The `data` fields an event of *kind* may keep private (maybe none)."""
    return PRIVATE_FIELDS.get(kind, frozenset())


def conceal(
    kind: str,
    data: Mapping[str, Any],
    names: Iterable[str],
    salt: Callable[[], str] = new_salt,
) -> tuple[dict[str, Any], list[str]]:
    """Replace the fields *names* of *data* by digests: the v2 `data` to sign
    and the disclosures (in the order of *names*). Refuses a field the kind
    may not keep private, or one *data* does not hold (ValidationError)."""
    names = list(names)
    allowed = private_fields(kind)
    public = dict(data)
    disclosures: list[str] = []
    if SD in public or SD_ALG in public:
        raise ValidationError(f"data.{SD}", "is already there: conceal the plain data once")
    for name in names:
        if name not in allowed:
            raise ValidationError(f"data.{name}", cannot_hide(kind, name))
        if name not in public:
            raise ValidationError(f"data.{name}", "is not in the event's data: nothing to keep")
        disclosures.append(encode(salt(), name, public.pop(name)))
    if disclosures:
        public[SD] = sorted(digest_of(d) for d in disclosures)
        public[SD_ALG] = ALGORITHM
    return public, disclosures


def cannot_hide(kind: str, name: str) -> str:
    """Why *name* of a *kind* event cannot be kept private."""
    allowed = private_fields(kind)
    if not allowed:
        return f"a {kind} event keeps nothing private: the ledger's rules read all of it"
    return (
        f"cannot be kept private in a {kind} event: the ledger needs it; "
        f"a {kind} may keep private only {', '.join(sorted(allowed))}"
    )


def commitments(kind: str, data: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The digests of a v2 `data` and its public fields (without `_sd` and
    `_sd_alg`); raises ValidationError unless `_sd` is a sorted list of 1 to
    as many distinct digests as the kind has private fields, and `_sd_alg`
    is sha-256."""
    allowed = private_fields(kind)
    digests = data.get(SD)
    if SD not in data:
        raise ValidationError(
            f"data.{SD}", "is required in a v2 envelope (with no private field, sign v1)"
        )
    if not allowed:
        raise ValidationError(f"data.{SD}", cannot_hide(kind, "data"))
    if data.get(SD_ALG) != ALGORITHM:
        raise ValidationError(f"data.{SD_ALG}", f'must be "{ALGORITHM}"')
    if not isinstance(digests, list) or not 1 <= len(digests) <= len(allowed):
        raise ValidationError(
            f"data.{SD}",
            f"must list 1 to {len(allowed)} digests (one per private field of a {kind}; no decoys)",
        )
    for position, digest in enumerate(digests):
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise ValidationError(
                f"data.{SD}[{position}]", "must be a SHA-256 digest in base64url (43 characters)"
            )
    if digests != sorted(set(digests)):
        raise ValidationError(f"data.{SD}", "must list distinct digests in ascending order")
    public = {name: value for name, value in data.items() if name not in (SD, SD_ALG)}
    return tuple(digests), public


def open_disclosures(
    kind: str,
    data: Mapping[str, Any],
    lots: tuple[str, ...] | None,
    disclosures: Sequence[Any],
    *,
    complete: bool = False,
) -> list[Disclosure]:
    """Check *disclosures* against the signed digests in *data* (a v2
    envelope's) and return them decoded. Each must match a digest, name a
    field the kind may keep private and the public fields do not hold, and
    no field or digest twice; the disclosed values merged back must pass the
    kind's schema. With *complete*, every digest must be disclosed (as the
    ledger requires when it appends). Raises DisclosureError saying why."""
    try:
        digests, public = commitments(kind, data)
    except ValidationError as exc:
        raise DisclosureError(str(exc)) from None
    if not isinstance(disclosures, (list, tuple)) or len(disclosures) > len(digests):
        raise DisclosureError(
            f"disclosures: must be a list of at most {len(digests)} (the envelope's digests)"
        )
    opened: list[Disclosure] = []
    seen_names: set[str] = set()
    seen_digests: set[str] = set()
    for position, encoded in enumerate(disclosures):
        where = f"disclosures[{position}]"
        try:
            disclosure = decode(encoded, where)
        except ValidationError as exc:
            raise DisclosureError(str(exc)) from None
        if disclosure.digest not in digests:
            raise DisclosureError(
                f"{where}: its digest {disclosure.digest} is not among the envelope's signed "
                "digests: it was changed, or belongs to another event"
            )
        if disclosure.digest in seen_digests or disclosure.name in seen_names:
            raise DisclosureError(f"{where}: discloses {disclosure.name!r} twice")
        if disclosure.name not in private_fields(kind):
            raise DisclosureError(
                f"{where}: data.{disclosure.name} {cannot_hide(kind, disclosure.name)}"
            )
        if disclosure.name in public:
            raise DisclosureError(
                f"{where}: data.{disclosure.name} is also public in the envelope: a field is "
                "either public or private"
            )
        seen_names.add(disclosure.name)
        seen_digests.add(disclosure.digest)
        opened.append(disclosure)
    if complete and len(opened) != len(digests):
        raise DisclosureError(
            f"the envelope commits to {len(digests)} private fields but {len(opened)} "
            "disclosures came with it: the ledger needs every one (it checks them against "
            "the kind's schema and keeps them from the public)"
        )
    try:
        kinds.validate_data(kind, disclose(public, opened), lots)
    except ValidationError as exc:
        raise DisclosureError(f"a disclosed value breaks the {kind} schema: {exc}") from None
    return opened


def disclose(public: Mapping[str, Any], opened: Iterable[Disclosure]) -> dict[str, Any]:
    """The public fields with the disclosed values merged back (no `_sd`)."""
    merged = {name: value for name, value in public.items() if name not in (SD, SD_ALG)}
    for disclosure in opened:
        merged[disclosure.name] = disclosure.value
    return merged


def hidden(data: Mapping[str, Any]) -> int:
    """How many fields of *data* are kept private (0 for a v1 `data`)."""
    digests = data.get(SD)
    return len(digests) if isinstance(digests, list) else 0


# --- grants: a signer lets another party see its disclosures

GRANT_CONTEXT = "provenance/disclosure-grant/v1"


def grant_bytes(grantor: str, grantee: str, time: str) -> bytes:
    """What a grantor signs to let *grantee* see the disclosures of every
    event it signed: the JCS bytes of the statement (docs/protocol.md §14)."""
    return canonicalize(
        {"context": GRANT_CONTEXT, "grantor": grantor, "grantee": grantee, "time": time}
    )


def verify_grant(grantor: str, grantee: str, time: str, sig: str) -> None:
    """Raise DisclosureError unless *sig* is *grantor*'s signature over the grant."""
    try:
        signature = _b64url_decode(sig, "sig")
        verifier_for(grantor).verify(signature, grant_bytes(grantor, grantee, time))
    except (InvalidSignature, ValidationError):
        raise DisclosureError(
            f"the grant from {grantor} to {grantee} is not signed by the grantor"
        ) from None


# --- a regulator's file of disclosures, checked against a proof bundle

FILE_FORMAT = "provenance-disclosures/v1"


def disclosures_file(lot_uri: str, events: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The file a permitted viewer exports: event id -> encoded disclosures."""
    return {
        "format": FILE_FORMAT,
        "lot": lot_uri,
        "events": {k: list(v) for k, v in events.items()},
    }


def check_file(
    value: Any, envelopes: Iterable[Envelope]
) -> list[tuple[Envelope, list[Disclosure]]]:
    """Check a disclosures file against the (already verified) envelopes of a
    bundle: each event it names must be a v2 event there, each disclosure must
    match one of that event's signed digests and pass the kind's schema.
    Returns the events with their disclosures; raises DisclosureError."""
    if not isinstance(value, dict) or value.get("format") != FILE_FORMAT:
        raise DisclosureError(f'not a disclosures file: "format" must be "{FILE_FORMAT}"')
    events = value.get("events")
    if not isinstance(events, dict):
        raise DisclosureError('"events" must map event ids to lists of disclosures')
    by_id = {envelope.event_id: envelope for envelope in envelopes}
    checked: list[tuple[Envelope, list[Disclosure]]] = []
    for event_id, disclosures in events.items():
        envelope = by_id.get(event_id)
        if envelope is None:
            raise DisclosureError(f"event {event_id} is not in the bundle")
        if envelope.version != 2:
            raise DisclosureError(f"event {event_id} keeps nothing private (a v1 envelope)")
        opened = open_disclosures(envelope.kind, envelope.data, envelope.lots, disclosures)
        checked.append((envelope, opened))
    return checked
