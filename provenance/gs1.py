"""GS1 identifiers for lots: GTIN check digits, batch/lot numbers and the canonical
GS1 Digital Link URI of a lot, ``https://id.gs1.org/01/{GTIN-14}/10/{lot}``.

Pure functions: strings in, strings out, :class:`~provenance.errors.ValidationError`
on bad input. No I/O, no environment, no clock.

Rules come from the GS1 General Specifications and the GS1 Barcode Syntax
Dictionary (release 2026-01-27); the byte-level URI behaviour (percent-encoding,
stem handling, path order) matches the GS1 Barcode Syntax Engine, checked against
its vectors in ``tests/test_gs1.py``.

Scope: the GTIN primary key with its qualifiers (22) CPV, (10) batch/lot and
(21) serial, in the order the dictionary's ``dlpkey`` gives. Query-string data
attributes and the other primary keys belong to a full Digital Link resolver,
which can build on :data:`AI_TITLES`, :func:`percent_encode` and
:func:`percent_decode`.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from types import MappingProxyType

from provenance.errors import ValidationError

__all__ = [
    "AI_BATCH_LOT",
    "AI_CPV",
    "AI_GTIN",
    "AI_SERIAL",
    "AI_TITLES",
    "CSET82",
    "DEFAULT_BASE",
    "GTIN_LENGTHS",
    "GTIN_QUALIFIERS",
    "QUALIFIER_MAX_LENGTH",
    "LotId",
    "check_digit",
    "gtin_uri",
    "lot_uri",
    "normalize_gtin",
    "parse_lot_uri",
    "percent_decode",
    "percent_encode",
    "validate_check_digit",
    "validate_lot",
]

DEFAULT_BASE = "https://id.gs1.org"
"""The canonical stem of GS1 Digital Link URIs (GS1's own resolver)."""

AI_GTIN = "01"
AI_BATCH_LOT = "10"
AI_SERIAL = "21"
AI_CPV = "22"

GTIN_QUALIFIERS: tuple[str, ...] = (AI_CPV, AI_BATCH_LOT, AI_SERIAL)
"""Key qualifiers of (01) in Digital Link path order (dictionary: ``dlpkey=22,10,21``)."""

AI_TITLES = MappingProxyType(
    {
        AI_GTIN: "GTIN",
        AI_BATCH_LOT: "batch/lot number",
        AI_SERIAL: "serial number",
        AI_CPV: "consumer product variant",
    }
)

GTIN_LENGTHS: tuple[int, ...] = (8, 12, 13, 14)
"""GTIN-8, GTIN-12 (UPC-A), GTIN-13 (EAN-13) and GTIN-14."""

GTIN14_LENGTH = 14

QUALIFIER_MAX_LENGTH = 20
"""(10), (21) and (22) are all ``X..20`` in the Syntax Dictionary."""

CSET82 = frozenset(string.ascii_letters + string.digits + "!\"%&'()*+,-./:;<=>?_")
"""GS1 AI encodable character set 82 (type ``X`` in the Syntax Dictionary)."""

_CSET82_HUMAN = "A-Z a-z 0-9 ! \" % & ' ( ) * + , - . / : ; < = > ? _"

_DIGITS = frozenset(string.digits)
_HEX_DIGITS = frozenset(string.hexdigits)

# RFC 3986 "unreserved": the only bytes the GS1 engine leaves unescaped.
_UNRESERVED = frozenset((string.ascii_letters + string.digits + "-._~").encode("ascii"))

# Characters that may appear literally anywhere in a URI (RFC 3986 unreserved,
# reserved and "%"). Space, '"', '<', '>', '\\', '^', '`', '{', '|', '}', controls
# and non-ASCII must be percent-encoded.
_URI_CHARS = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")

_SCHEMES = ("http", "https", "HTTP", "HTTPS")  # the engine rejects mixed case ("HtTp")
_URI_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)")
_HOST_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?")
_LOWER_ESCAPE_RE = re.compile(r"%(?:[0-9A-Fa-f][a-f]|[a-f][0-9A-Fa-f])")

_LOT_PATH_HINT = "/01/{GTIN}/10/{lot}"


# --- check digits -------------------------------------------------------------------------


def _require_digits(value: str, field: str, what: str) -> None:
    for position, char in enumerate(value, start=1):
        if char not in _DIGITS:
            raise ValidationError(
                field,
                f"{what} must contain only the digits 0-9; found {char!r} at position {position}"
                " — remove spaces, dashes and letters",
            )


def _require_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    return value


def check_digit(body: str, *, field: str = "body") -> str:
    """GS1 mod-10 check digit of ``body``, a digit string without its check digit.

    Works for every GS1 key with a trailing mod-10 check digit (GTIN-8/12/13/14,
    SSCC, GLN, GSRN, ...): weights 3, 1, 3, ... from the right, then the digit
    that brings the sum to a multiple of ten. ``check_digit("9501234567890")``
    is ``"3"`` (GTIN-14 95012345678903).
    """
    _require_str(body, field)
    if not body:
        raise ValidationError(field, "is empty; give the digits that precede the check digit")
    _require_digits(body, field, "the number")
    total = sum(int(digit) * (3 if i % 2 == 0 else 1) for i, digit in enumerate(reversed(body)))
    return str(-total % 10)


def validate_check_digit(code: str, field: str = "code") -> str:
    """Return ``code`` if its last digit is the right GS1 mod-10 check digit.

    For any digit string that ends in a check digit (GTIN, SSCC, GLN); no length
    rule is applied here — see :func:`normalize_gtin` for GTINs.
    """
    _require_str(code, field)
    if not code:
        raise ValidationError(field, "is empty; expected digits ending in a check digit")
    if len(code) == 1:
        raise ValidationError(field, "has one digit; expected digits ending in a check digit")
    _require_digits(code, field, "the number")
    expected = check_digit(code[:-1], field=field)
    if code[-1] != expected:
        raise ValidationError(
            field,
            f"check digit is {code[-1]}, expected {expected} — re-read the code from the label",
        )
    return code


def normalize_gtin(gtin: str, field: str = "gtin") -> str:
    """Validate a GTIN-8/12/13/14 and return its 14-digit form (zero-padded on the left).

    Rejects anything but ASCII digits, lengths other than 8, 12, 13 and 14, and
    a wrong check digit, each with its own message.
    """
    _require_str(gtin, field)
    if not gtin:
        raise ValidationError(field, "is empty; expected a GTIN of 8, 12, 13 or 14 digits")
    _require_digits(gtin, field, "a GTIN")
    if len(gtin) not in GTIN_LENGTHS:
        raise ValidationError(
            field,
            f"has {len(gtin)} digits; a GTIN has 8, 12, 13 or 14 digits (check digit included)",
        )
    validate_check_digit(gtin, field)
    return gtin.zfill(GTIN14_LENGTH)


# --- AI values ----------------------------------------------------------------------------


def _validate_cset82(value: str, field: str, ai: str, max_length: int) -> str:
    _require_str(value, field)
    label = f"a {AI_TITLES[ai]} (AI {ai})"
    if not value:
        raise ValidationError(field, f"is empty; {label} has 1 to {max_length} characters")
    if len(value) > max_length:
        raise ValidationError(
            field, f"has {len(value)} characters; {label} has at most {max_length}"
        )
    for position, char in enumerate(value, start=1):
        if char not in CSET82:
            raise ValidationError(
                field,
                f"character {char!r} at position {position} is not allowed; {label} uses"
                f" GS1 AI encodable character set 82: {_CSET82_HUMAN}",
            )
    return value


def validate_lot(lot: str, field: str = "lot") -> str:
    """Return ``lot`` if it is a valid AI (10) batch/lot number: 1 to 20 characters
    of GS1 AI encodable character set 82 (:data:`CSET82`). Never alters the value."""
    return _validate_cset82(lot, field, AI_BATCH_LOT, QUALIFIER_MAX_LENGTH)


# --- percent-encoding ---------------------------------------------------------------------


def percent_encode(value: str, in_query: bool = False) -> str:
    """Escape an AI value for a Digital Link URI, as the GS1 engine does.

    Only RFC 3986 unreserved characters (``A-Z a-z 0-9 - . _ ~``) stay as they
    are; every other byte of the UTF-8 form becomes ``%XX`` with upper-case hex.
    In a query value a space becomes ``+``; in a path segment it is ``%20``.
    """
    _require_str(value, "value")
    try:
        data = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            "value", f"contains an unpaired surrogate at position {exc.start + 1}"
        ) from exc
    out: list[str] = []
    for byte in data:
        if byte in _UNRESERVED:
            out.append(chr(byte))
        elif byte == 0x20 and in_query:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def percent_decode(value: str, in_query: bool = False, *, field: str = "value") -> str:
    """Unescape a Digital Link path segment or query value, as the GS1 engine does.

    ``%XX`` (either case of hex) becomes that byte; a malformed escape such as
    ``%4g`` or a trailing ``%2`` is kept as literal text. ``+`` means a space in
    a query value and a literal ``+`` in a path segment. NUL (``%00``) is
    rejected. Bytes that are not UTF-8 come back as lone surrogates
    (``surrogateescape``), so ``result.encode("utf-8", "surrogateescape")``
    gives the raw octets.
    """
    _require_str(value, field)
    out = bytearray()
    i = 0
    while i < len(value):
        char = value[i]
        escape = value[i + 1 : i + 3]
        if char == "%" and len(escape) == 2 and all(h in _HEX_DIGITS for h in escape):
            byte = int(escape, 16)
            if byte == 0:
                raise ValidationError(
                    field,
                    f"has a percent-encoded NUL (%00) at position {i + 1}; NUL is not allowed",
                )
            out.append(byte)
            i += 3
            continue
        if char == "\x00":
            raise ValidationError(field, f"has a NUL character at position {i + 1}")
        if char == "+" and in_query:
            out.append(0x20)
        else:
            out += char.encode("utf-8", "surrogateescape")
        i += 1
    return out.decode("utf-8", "surrogateescape")


# --- Digital Link URIs --------------------------------------------------------------------


@dataclass(frozen=True)
class _SplitURI:
    """An http(s) URI, or a relative reference starting with '/', cut into the parts a
    Digital Link parser needs."""

    scheme: str  # as written: http, https, HTTP or HTTPS; "" for a relative reference
    authority: str  # host[:port]; "" for a relative reference
    segments: tuple[str, ...]  # path segments, still percent-encoded
    trailing_slash: bool
    query: str | None  # None: no "?" at all
    fragment: str | None  # None: no "#" at all

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.authority}" if self.scheme else ""


def _split_uri(uri: str, field: str, *, relative: bool = False) -> _SplitURI:
    """Check the URI-level syntax the GS1 engine checks and cut the URI into parts.
    With ``relative``, a reference that starts with a single '/' is accepted too."""
    _require_str(uri, field)
    if not uri:
        raise ValidationError(field, f"is empty; expected https://…{_LOT_PATH_HINT}")
    for position, char in enumerate(uri, start=1):
        if char not in _URI_CHARS:
            raise ValidationError(
                field,
                f"character {char!r} at position {position} may not appear in a URI;"
                " percent-encode it (a space is %20)",
            )
    if relative and uri.startswith("/") and not uri.startswith("//"):
        return _split_rest("", "", uri, field)
    match = _URI_RE.fullmatch(uri)
    if match is None:
        raise ValidationError(field, f"is not an absolute URI; expected https://…{_LOT_PATH_HINT}")
    scheme = match["scheme"]
    if scheme not in _SCHEMES:
        if scheme.lower() in _SCHEMES:
            raise ValidationError(field, f"scheme {scheme!r} mixes upper and lower case; use https")
        raise ValidationError(field, f"scheme {scheme!r} is not allowed; use https")
    authority = match["authority"]
    if not authority:
        raise ValidationError(field, "has no host name after '//'")
    if "@" in authority:
        raise ValidationError(field, "must not contain user information ('user@') before the host")
    host = _HOST_RE.fullmatch(authority)
    if host is None:
        if "%" in authority and authority.startswith("["):
            raise ValidationError(
                field, "IPv6 zone identifiers ('%25…') are not allowed in the host"
            )
        raise ValidationError(
            field, f"host {authority!r} is not a domain name, IPv4 or [IPv6] address"
        )
    if host["port"] is not None and int(host["port"]) > 65535:
        raise ValidationError(field, f"port {host['port']} is out of range (0-65535)")
    return _split_rest(scheme, authority, match["rest"], field)


def _split_rest(scheme: str, authority: str, rest: str, field: str) -> _SplitURI:
    """Cut path, query and fragment of a URI whose scheme and authority are checked."""
    fragment: str | None = None
    if "#" in rest:
        rest, fragment = rest.split("#", 1)
        if "#" in fragment:
            raise ValidationError(field, "has a second '#'; percent-encode it as %23")
    query: str | None = None
    if "?" in rest:
        rest, query = rest.split("?", 1)
    if "[" in rest or "]" in rest:
        raise ValidationError(field, "'[' and ']' may not appear in the path; use %5B and %5D")
    segments: tuple[str, ...] = tuple(rest.split("/")[1:]) if rest else ()
    trailing_slash = bool(segments) and segments[-1] == ""
    if trailing_slash:
        segments = segments[:-1]
    if "" in segments:
        raise ValidationError(field, "has an empty path segment ('//')")
    return _SplitURI(scheme, authority, segments, trailing_slash, query, fragment)


def _stem(base: str, field: str = "base") -> str:
    """The URI stem to put before ``/01/…``: ``base`` without a trailing '/'. An empty
    base (the engine's empty stem) or one starting with '/' gives relative references."""
    _require_str(base, field)
    if base == "":
        return ""
    split = _split_uri(base, field, relative=True)
    if split.query is not None or split.fragment is not None:
        raise ValidationError(field, "must not contain a query ('?') or fragment ('#')")
    return split.origin + "".join(f"/{segment}" for segment in split.segments)


def gtin_uri(
    gtin: str,
    *,
    cpv: str | None = None,
    lot: str | None = None,
    serial: str | None = None,
    base: str = DEFAULT_BASE,
) -> str:
    """GS1 Digital Link URI of a GTIN with optional key qualifiers, byte for byte as the
    GS1 engine generates it: ``{base}/01/{GTIN-14}[/22/{cpv}][/10/{lot}][/21/{serial}]``.

    The GTIN is written in its 14-digit form, qualifiers in ``dlpkey`` order and
    percent-encoded with :func:`percent_encode`. One trailing '/' of ``base`` is
    dropped; ``base=""`` gives a relative reference (``/01/…``), as does a base that
    starts with '/'.
    """
    parts = [_stem(base), f"/{AI_GTIN}/", normalize_gtin(gtin)]
    values = {AI_CPV: (cpv, "cpv"), AI_BATCH_LOT: (lot, "lot"), AI_SERIAL: (serial, "serial")}
    for ai in GTIN_QUALIFIERS:
        value, field = values[ai]
        if value is not None:
            _validate_cset82(value, field, ai, QUALIFIER_MAX_LENGTH)
            parts.append(f"/{ai}/{percent_encode(value)}")
    return "".join(parts)


def lot_uri(gtin: str, lot: str, base: str = DEFAULT_BASE) -> str:
    """Canonical GS1 Digital Link URI of a lot: ``{base}/01/{GTIN-14}/10/{lot}``.

    ``lot_uri("9520123456788", "ABC+1")`` is
    ``"https://id.gs1.org/01/09520123456788/10/ABC%2B1"``.
    """
    return gtin_uri(gtin, lot=lot, base=base)


@dataclass(frozen=True)
class _LotParts:
    split: _SplitURI
    stem: str  # origin plus any path before /01/
    raw_gtin: str
    raw_lot: str
    gtin14: str
    lot: str


def _lot_parts(uri: str, field: str, *, relative: bool) -> _LotParts:
    split = _split_uri(uri, field, relative=relative)
    segments = split.segments
    if len(segments) < 4 or segments[-4] != AI_GTIN or segments[-2] != AI_BATCH_LOT:
        hint = ""
        if len(segments) >= 2 and segments[-2] in (AI_SERIAL, AI_CPV):
            title = AI_TITLES[segments[-2]]
            hint = (
                f"; it ends in a {title} (/{segments[-2]}/), so it names something other than a lot"
            )
        raise ValidationError(
            field, f"is not a lot identifier: the path must end in {_LOT_PATH_HINT}{hint}"
        )
    raw_gtin, raw_lot = segments[-3], segments[-1]
    try:
        gtin14 = normalize_gtin(percent_decode(raw_gtin, field=field), field)
    except ValidationError as exc:
        raise ValidationError(field, f"GTIN segment {raw_gtin!r}: {exc.rule}") from exc
    try:
        lot = validate_lot(percent_decode(raw_lot, field=field), field)
    except ValidationError as exc:
        raise ValidationError(field, f"lot segment {raw_lot!r}: {exc.rule}") from exc
    stem = split.origin + "".join(f"/{segment}" for segment in segments[:-4])
    return _LotParts(split, stem, raw_gtin, raw_lot, gtin14, lot)


def _non_canonical_reasons(parts: _LotParts, stem: str) -> list[str]:
    split = parts.split
    reasons: list[str] = []
    if parts.stem != stem:
        if stem.startswith("https://") and parts.stem == "http://" + stem[len("https://") :]:
            reasons.append("it uses http:// instead of https://")
        else:
            reasons.append(f"its base is {parts.stem!r}, not {stem!r}")
    if parts.raw_gtin != parts.gtin14:
        reasons.append(
            f"the GTIN is written {parts.raw_gtin!r}, not as the 14-digit GTIN {parts.gtin14!r}"
        )
    encoded = percent_encode(parts.lot)
    if parts.raw_lot != encoded:
        detail = "only A-Z a-z 0-9 - . _ ~ stay unescaped, '+' is %2B"
        if _LOWER_ESCAPE_RE.search(parts.raw_lot):
            detail = "percent escapes use upper-case hex (%2F, not %2f)"
        reasons.append(f"the lot is written {parts.raw_lot!r}, not {encoded!r} — {detail}")
    if split.trailing_slash:
        reasons.append("it ends with '/'")
    if split.query is not None:
        reasons.append("it has a query string ('?')")
    if split.fragment is not None:
        reasons.append("it has a fragment ('#')")
    return reasons


def parse_lot_uri(
    uri: str,
    require_canonical_base: bool = True,
    *,
    base: str = DEFAULT_BASE,
    field: str = "uri",
) -> tuple[str, str]:
    """Return ``(gtin14, lot)`` from a lot's GS1 Digital Link URI.

    With ``require_canonical_base`` (the default) the URI must be exactly
    ``lot_uri(gtin14, lot, base)``: https, that base, a 14-digit GTIN, canonical
    percent-encoding, no trailing '/', query or fragment. So each lot has one
    accepted spelling; the error says what differs and gives the canonical form.
    ``base=""`` expects the relative form ``/01/{GTIN-14}/10/{lot}`` (in both modes a
    relative reference is accepted only when ``base`` is relative).

    With ``require_canonical_base=False`` any http(s) host and path stem before
    ``/01/`` is accepted, as are GTIN-8/12/13 (returned zero-padded to 14 digits),
    any valid percent-encoding and a fragment (ignored). The path must still end
    in ``/01/{GTIN}/10/{lot}``; a trailing '/' or a non-empty query is rejected.
    """
    stem = _stem(base)
    parts = _lot_parts(uri, field, relative=not stem.startswith(("http", "HTTP")))
    if require_canonical_base:
        canonical = lot_uri(parts.gtin14, parts.lot, base)
        if uri != canonical:
            reasons = _non_canonical_reasons(parts, stem) or ["it is spelled differently"]
            raise ValidationError(
                field,
                f"is not the canonical lot URI: {'; '.join(reasons)}."
                f" The canonical form is {canonical}",
            )
        return parts.gtin14, parts.lot
    split = parts.split
    suggestion = lot_uri(parts.gtin14, parts.lot, parts.stem)
    if split.trailing_slash:
        raise ValidationError(field, f"must not end with '/'; remove it: {suggestion}")
    if split.query:
        raise ValidationError(
            field,
            f"has a query string ('?{split.query}'); a lot URI carries no data attributes"
            f" — use {suggestion}",
        )
    return parts.gtin14, parts.lot


@dataclass(frozen=True)
class LotId:
    """A lot: GTIN (stored as GTIN-14) plus AI (10) batch/lot number.

    Construction validates both and zero-pads the GTIN, so every ``LotId`` is
    well-formed and two spellings of one lot compare equal.
    """

    gtin: str
    lot: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "gtin", normalize_gtin(self.gtin))
        validate_lot(self.lot)

    @property
    def uri(self) -> str:
        """Canonical GS1 Digital Link URI, see :func:`lot_uri`."""
        return lot_uri(self.gtin, self.lot)

    @classmethod
    def parse(
        cls, uri: str, require_canonical_base: bool = True, *, base: str = DEFAULT_BASE
    ) -> LotId:
        """Inverse of :attr:`uri`; see :func:`parse_lot_uri` for what is accepted."""
        gtin, lot = parse_lot_uri(uri, require_canonical_base, base=base)
        return cls(gtin, lot)
