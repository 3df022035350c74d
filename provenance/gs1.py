"""GS1 identifiers for lots and GS1 Digital Link URIs.

Two layers, both pure (strings in, strings out, :class:`~provenance.errors.ValidationError`
on bad input; no I/O, no environment, no clock unless a caller leaves ``today`` out):

* **Lots** — GTIN check digits, batch/lot numbers and the canonical URI of a lot,
  ``https://id.gs1.org/01/{GTIN-14}/10/{lot}`` (:func:`lot_uri`, :func:`parse_lot_uri`,
  :class:`LotId`), used by the ledger.
* **Digital Link** — :class:`DigitalLink`: a primary key with its key qualifiers, GS1 data
  attributes and other query parameters; generated and parsed exactly as the GS1 Barcode
  Syntax Engine does (AI order, percent-encoding, per-AI format and check-character
  validation, key-qualifier and data-attribute rules, AI associations). The resolver entry
  points are :func:`parse_digital_link` and :func:`expiry`.

Rules come from the GS1 Barcode Syntax Dictionary, release 2026-01-27, embedded below as
``_DICTIONARY_LINES`` and parsed by :func:`parse_syntax_dictionary` (the tests check the
embedded copy against the dictionary file line by line). Every AI whose content rules
("linters") are all implemented here is supported — see :data:`SUPPORTED_AIS`; the AIs
whose values must be checked against external code lists (ISO 3166 countries, ISO 4217
currencies, IBAN, package types, coupons) are refused with a message saying so rather than
accepted unchecked. Byte-level behaviour is checked against the engine's own test vectors in
``tests/test_gs1.py``.
"""

from __future__ import annotations

import calendar
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

from provenance.errors import ValidationError

__all__ = [
    "AI_BATCH_LOT",
    "AI_CPV",
    "AI_EXPIRY",
    "AI_GTIN",
    "AI_SERIAL",
    "AI_TABLE",
    "AI_TITLES",
    "CSET82",
    "DEFAULT_BASE",
    "GTIN_LENGTHS",
    "GTIN_QUALIFIERS",
    "MAX_AIS",
    "QUALIFIER_MAX_LENGTH",
    "SUPPORTED_AIS",
    "SYNTAX_DICTIONARY_RELEASE",
    "UNSUPPORTED_LINTERS",
    "AIComponent",
    "AIDefinition",
    "DigitalLink",
    "GS1SyntaxError",
    "LotId",
    "check_digit",
    "check_pair",
    "expiry",
    "format_element_string",
    "gtin_uri",
    "lot_uri",
    "normalize_gtin",
    "parse_digital_link",
    "parse_element_string",
    "parse_lot_uri",
    "parse_syntax_dictionary",
    "percent_decode",
    "percent_encode",
    "validate_ai_value",
    "validate_check_digit",
    "validate_lot",
]

DEFAULT_BASE = "https://id.gs1.org"
"""The canonical stem of GS1 Digital Link URIs (GS1's own resolver)."""

AI_GTIN = "01"
AI_BATCH_LOT = "10"
AI_SERIAL = "21"
AI_CPV = "22"
AI_EXPIRY = "17"

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


# --- GS1 Barcode Syntax Dictionary --------------------------------------------------------

SYNTAX_DICTIONARY_RELEASE = "2026-01-27"
"""Release of the GS1 Barcode Syntax Dictionary embedded here (and assumed by the vectors)."""

MAX_AIS = 64
"""Most AIs one message may carry: the GS1 Barcode Syntax Engine's limit, mirrored."""

# The AI entries of the GS1 Barcode Syntax Dictionary, release 2026-01-27, one entry per item
# with runs of blanks collapsed to one space; the file's comment block is left out. Two long
# entries are split before their title. The dictionary is
#   Copyright (c) 2020-2021 BWIPP project, (c) 2020-2021 Zint Project, (c) 2021-2025 GS1 AISBL,
#   licensed under the Apache License, Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0),
#   from https://github.com/gs1/gs1-syntax-dictionary, tag 2026-01-27.
# tests/test_gs1.py checks it against tests/vectors/gs1-syntax-dictionary/ entry by entry; to
# update, regenerate it from a new release the same way and re-run those tests.
_DICTIONARY_LINES: tuple[str, ...] = (
    "00 *? N18,csum,gcppos2 dlpkey # SSCC",
    "01 *? N14,csum,gcppos2 ex=255,37 dlpkey=22,10,21|235 # GTIN",
    "02 *? N14,csum,gcppos2 ex=01,03 req=37 # CONTENT",
    "03 * N14,csum,gcppos2 ex=01,02,37 # MTO GTIN",
    "10 ? X..20 req=01,02,03,8006,8026 # BATCH/LOT",
    "11 *? N6,yymmd0 req=01,02,03,8006,8026 # PROD DATE",
    "12 *? N6,yymmd0 req=8020 # DUE DATE",
    "13 *? N6,yymmd0 req=01,02,03,8006,8026 # PACK DATE",
    "15 *? N6,yymmd0 req=01,02,03,8006,8026 # BEST BEFORE or BEST BY",
    "16 *? N6,yymmd0 req=01,02,03,8006,8026 # SELL BY",
    "17 *? N6,yymmd0 req=01,02,03,255,8006,8026 # USE BY or EXPIRY",
    "20 *? N2 req=01,02,8006,8026 # VARIANT",
    "21 X..20 req=01,03,8006 ex=235 # SERIAL",
    "22 X..20 req=01 # CPV",
    "235 X..28 req=01 # TPX",
    "240 ? X..30 req=01,02,8006,8026 # ADDITIONAL ID",
    "241 ? X..30 req=01,02,8006,8026 # CUST. PART No.",
    "242 ? N..6 req=01,02,8006,8026 # MTO VARIANT",
    "243 ? X..20 req=01 # PCN",
    "250 ? X..30 req=01,8006 req=21 # SECONDARY SERIAL",
    "251 ? X..30 req=01,8006 # REF. TO SOURCE",
    "253 ? N13,csum,gcppos1 [X..17] dlpkey # GDTI",
    "254 X..20 req=414 # GLN EXTENSION COMPONENT",
    "255 ? N13,csum,gcppos1 [N..12] dlpkey ex=01,02,415,8006,8020,8026 # GCN",
    "30 ? N..8 req=01,02 # VAR. COUNT",
    "3100-3105 *? N6 req=01,02 ex=310n # NET WEIGHT (kg)",
    "3110-3115 *? N6 req=01,02 ex=311n # LENGTH (m)",
    "3120-3125 *? N6 req=01,02 ex=312n # WIDTH (m)",
    "3130-3135 *? N6 req=01,02 ex=313n # HEIGHT (m)",
    "3140-3145 *? N6 req=01,02 ex=314n # AREA (m²)",
    "3150-3155 *? N6 req=01,02 ex=315n # NET VOLUME (l)",
    "3160-3165 *? N6 req=01,02 ex=316n # NET VOLUME (m³)",
    "3200-3205 *? N6 req=01,02 ex=320n # NET WEIGHT (lb)",
    "3210-3215 *? N6 req=01,02 ex=321n # LENGTH (in)",
    "3220-3225 *? N6 req=01,02 ex=322n # LENGTH (ft)",
    "3230-3235 *? N6 req=01,02 ex=323n # LENGTH (yd)",
    "3240-3245 *? N6 req=01,02 ex=324n # WIDTH (in)",
    "3250-3255 *? N6 req=01,02 ex=325n # WIDTH (ft)",
    "3260-3265 *? N6 req=01,02 ex=326n # WIDTH (yd)",
    "3270-3275 *? N6 req=01,02 ex=327n # HEIGHT (in)",
    "3280-3285 *? N6 req=01,02 ex=328n # HEIGHT (ft)",
    "3290-3295 *? N6 req=01,02 ex=329n # HEIGHT (yd)",
    "3300-3305 *? N6 req=00,01 ex=330n # GROSS WEIGHT (kg)",
    "3310-3315 *? N6 req=00,01 ex=331n # LENGTH (m), log",
    "3320-3325 *? N6 req=00,01 ex=332n # WIDTH (m), log",
    "3330-3335 *? N6 req=00,01 ex=333n # HEIGHT (m), log",
    "3340-3345 *? N6 req=00,01 ex=334n # AREA (m²), log",
    "3350-3355 *? N6 req=00,01 ex=335n # VOLUME (l), log",
    "3360-3365 *? N6 req=00,01 ex=336n # VOLUME (m³), log",
    "3370-3375 *? N6 req=01 ex=337n # KG PER m²",
    "3400-3405 *? N6 req=00,01 ex=340n # GROSS WEIGHT (lb)",
    "3410-3415 *? N6 req=00,01 ex=341n # LENGTH (in), log",
    "3420-3425 *? N6 req=00,01 ex=342n # LENGTH (ft), log",
    "3430-3435 *? N6 req=00,01 ex=343n # LENGTH (yd), log",
    "3440-3445 *? N6 req=00,01 ex=344n # WIDTH (in), log",
    "3450-3455 *? N6 req=00,01 ex=345n # WIDTH (ft), log",
    "3460-3465 *? N6 req=00,01 ex=346n # WIDTH (yd), log",
    "3470-3475 *? N6 req=00,01 ex=347n # HEIGHT (in), log",
    "3480-3485 *? N6 req=00,01 ex=348n # HEIGHT (ft), log",
    "3490-3495 *? N6 req=00,01 ex=349n # HEIGHT (yd), log",
    "3500-3505 *? N6 req=01,02 ex=350n # AREA (in²)",
    "3510-3515 *? N6 req=01,02 ex=351n # AREA (ft²)",
    "3520-3525 *? N6 req=01,02 ex=352n # AREA (yd²)",
    "3530-3535 *? N6 req=00,01 ex=353n # AREA (in²), log",
    "3540-3545 *? N6 req=00,01 ex=354n # AREA (ft²), log",
    "3550-3555 *? N6 req=00,01 ex=355n # AREA (yd²), log",
    "3560-3565 *? N6 req=01,02 ex=356n # NET WEIGHT (tr oz)",
    "3570-3575 *? N6 req=01,02 ex=357n # NET VOLUME (oz)",
    "3600-3605 *? N6 req=01,02 ex=360n # NET VOLUME (qt (US))",
    "3610-3615 *? N6 req=01,02 ex=361n # NET VOLUME (gal.)",
    "3620-3625 *? N6 req=00,01 ex=362n # VOLUME (qt (US)), log",
    "3630-3635 *? N6 req=00,01 ex=363n # VOLUME (gal (US)), log",
    "3640-3645 *? N6 req=01,02 ex=364n # NET VOLUME (in³)",
    "3650-3655 *? N6 req=01,02 ex=365n # NET VOLUME (ft³)",
    "3660-3665 *? N6 req=01,02 ex=366n # NET VOLUME (yd³)",
    "3670-3675 *? N6 req=00,01 ex=367n # VOLUME (in³), log",
    "3680-3685 *? N6 req=00,01 ex=368n # VOLUME (ft³), log",
    "3690-3695 *? N6 req=00,01 ex=369n # VOLUME (yd³), log",
    "37 ? N..8 req=00 req=02,8026 # COUNT",
    "3900-3909 ? N..15 req=255,8020 ex=390n,391n,394n,8111 # AMOUNT",
    "3910-3919 ? N3,iso4217 N..15 req=8020 ex=391n # AMOUNT",
    "3920-3929 ? N..15 req=01 req=30,31nn,32nn,35nn,36nn ex=392n,393n # PRICE",
    "3930-3939 ? N3,iso4217 N..15 req=30,31nn,32nn,35nn,36nn ex=393n # PRICE",
    "3940-3943 ? N4 req=255 ex=394n,8111 # PRCNT OFF",
    "3950-3955 ? N6 req=30,31nn,32nn,35nn,36nn ex=392n,393n,395n,8005 # PRICE/UoM",
    "400 ? X..30 # ORDER NUMBER",
    "401 ? X..30,gcppos1 dlpkey # GINC",
    "402 ? N17,csum,gcppos1 dlpkey # GSIN",
    "403 ? X..30 req=00 # ROUTE",
    "410 *? N13,csum,gcppos1 # SHIP TO LOC",
    "411 *? N13,csum,gcppos1 # BILL TO",
    "412 *? N13,csum,gcppos1 # PURCHASE FROM",
    "413 *? N13,csum,gcppos1 # SHIP FOR LOC",
    "414 *? N13,csum,gcppos1 dlpkey=254|7040 # LOC No.",
    "415 *? N13,csum,gcppos1 req=8020 dlpkey=8020 # PAY TO",
    "416 *? N13,csum,gcppos1 # PROD/SERV LOC",
    "417 *? N13,csum,gcppos1 dlpkey=7040 # PARTY",
    "420 ? X..20 ex=421 # SHIP TO POST",
    "421 ? N3,iso3166 X..9 ex=4307 # SHIP TO POST",
    "422 ? N3,iso3166 req=01,02,8006,8026 ex=426 # ORIGIN",
    "423 ? N3,iso3166 [N3],iso3166 [N3],iso3166 [N3],iso3166 [N3],iso3166 req=01,02 ex=426"
    " # COUNTRY - INITIAL PROCESS",
    "424 ? N3,iso3166 req=01,02 ex=426 # COUNTRY - PROCESS",
    "425 ? N3,iso3166 [N3],iso3166 [N3],iso3166 [N3],iso3166 [N3],iso3166 req=01,02 ex=426"
    " # COUNTRY - DISASSEMBLY",
    "426 ? N3,iso3166 req=01,02 # COUNTRY - FULL PROCESS",
    "427 ? X..3 req=01,02 req=422 # ORIGIN SUBDIVISION",
    "4300 ? X..35,pcenc req=00 # SHIP TO COMP",
    "4301 ? X..35,pcenc req=00 # SHIP TO NAME",
    "4302 ? X..70,pcenc req=00 # SHIP TO ADD1",
    "4303 ? X..70,pcenc req=4302 # SHIP TO ADD2",
    "4304 ? X..70,pcenc req=00 # SHIP TO SUB",
    "4305 ? X..70,pcenc req=00 # SHIP TO LOC",
    "4306 ? X..70,pcenc req=00 # SHIP TO REG",
    "4307 ? X2,iso3166alpha2 req=00 # SHIP TO COUNTRY",
    "4308 ? X..30 req=00 # SHIP TO PHONE",
    "4309 ? N10,latitude N10,longitude req=00 # SHIP TO GEO",
    "4310 ? X..35,pcenc req=00 # RTN TO COMP",
    "4311 ? X..35,pcenc req=00 # RTN TO NAME",
    "4312 ? X..70,pcenc req=00 # RTN TO ADD1",
    "4313 ? X..70,pcenc req=4312 # RTN TO ADD2",
    "4314 ? X..70,pcenc req=00 # RTN TO SUB",
    "4315 ? X..70,pcenc req=00 # RTN TO LOC",
    "4316 ? X..70,pcenc req=00 # RTN TO REG",
    "4317 ? X2,iso3166alpha2 req=00 # RTN TO COUNTRY",
    "4318 ? X..20 req=00 # RTN TO POST",
    "4319 ? X..30 req=00 # RTN TO PHONE",
    "4320 ? X..35,pcenc req=00 # SRV DESCRIPTION",
    "4321 ? N1,yesno req=00 # DANGEROUS GOODS",
    "4322 ? N1,yesno req=00 # AUTH TO LEAVE",
    "4323 ? N1,yesno req=00 # SIG REQUIRED",
    "4324 ? N6,yymmd0 N4,hhmi req=00 # NOT BEF DEL DT",
    "4325 ? N6,yymmd0 N4,hhmi req=00 # NOT AFT DEL DT",
    "4326 ? N6,yymmdd req=00 # REL DATE",
    "4330 ? N6 [X1],hyphen req=00 ex=4331 # MAX TEMP F.",
    "4331 ? N6 [X1],hyphen req=00 ex=4330 # MAX TEMP C.",
    "4332 ? N6 [X1],hyphen req=00 ex=4333 # MIN TEMP F.",
    "4333 ? N6 [X1],hyphen req=00 ex=4332 # MIN TEMP C.",
    "7001 ? N13 req=01,02,8006,8026 # NSN",
    "7002 ? X..30 req=01,02 # MEAT CUT",
    "7003 ? N6,yymmdd N4,hhmi req=01,02 # EXPIRY TIME",
    "7004 ? N..4 req=01+10 # ACTIVE POTENCY",
    "7005 ? X..12 req=01,02 # CATCH AREA",
    "7006 ? N6,yymmdd req=01,02 # FIRST FREEZE DATE",
    "7007 ? N6,yymmdd [N6],yymmdd req=01,02 # HARVEST DATE",
    "7008 ? X..3 req=01,02 # AQUATIC SPECIES",
    "7009 ? X..10 req=01,02 # FISHING GEAR TYPE",
    "7010 ? X..2 req=01,02 # PROD METHOD",
    "7011 ? N6,yymmdd [N4],hhmi req=01,02 # TEST BY DATE",
    "7020 ? X..20 req=01,8006 req=416 # REFURB LOT",
    "7021 ? X..20 req=01,8006 # FUNC STAT",
    "7022 ? X..20 req=7021 # REV STAT",
    "7023 ? X..30,gcppos1 # GIAI - ASSEMBLY",
    "7030 ? N3,iso3166999 X..27 req=01,02 # PROCESSOR # 0",
    "7031 ? N3,iso3166999 X..27 req=01,02 # PROCESSOR # 1",
    "7032 ? N3,iso3166999 X..27 req=01,02 # PROCESSOR # 2",
    "7033 ? N3,iso3166999 X..27 req=01,02 # PROCESSOR # 3",
    "7034 ? N3,iso3166999 X..27 req=01,02 # PROCESSOR # 4",
    "7035 ? N3,iso3166999 X..27 req=01,02 # PROCESSOR # 5",
    "7036 ? N3,iso3166999 X..27 req=01,02 # PROCESSOR # 6",
    "7037 ? N3,iso3166999 X..27 req=01,02 # PROCESSOR # 7",
    "7038 ? N3,iso3166999 X..27 req=01,02 # PROCESSOR # 8",
    "7039 ? N3,iso3166999 X..27 req=01,02 # PROCESSOR # 9",
    "7040 N1 X1 X1 X1,importeridx # UIC+EXT",
    "7041 X..4,packagetype req=00 # UFRGT UNIT TYPE",
    "710 ? X..20 req=01 # NHRN PZN",
    "711 ? X..20 req=01 # NHRN CIP",
    "712 ? X..20 req=01 # NHRN CN",
    "713 ? X..20 req=01 # NHRN DRN",
    "714 ? X..20 req=01 # NHRN AIM",
    "715 ? X..20 req=01 # NHRN NDC",
    "716 ? X..20 req=01 # NHRN AIC",
    "717 ? X..20 req=01 # NHRN SRN",
    "7230 ? X2 X..28 req=01,8004 # CERT # 1",
    "7231 ? X2 X..28 req=01,8004 # CERT # 2",
    "7232 ? X2 X..28 req=01,8004 # CERT # 3",
    "7233 ? X2 X..28 req=01,8004 # CERT # 4",
    "7234 ? X2 X..28 req=01,8004 # CERT # 5",
    "7235 ? X2 X..28 req=01,8004 # CERT # 6",
    "7236 ? X2 X..28 req=01,8004 # CERT # 7",
    "7237 ? X2 X..28 req=01,8004 # CERT # 8",
    "7238 ? X2 X..28 req=01,8004 # CERT # 9",
    "7239 ? X2 X..28 req=01,8004 # CERT # 10",
    "7240 ? X..20 req=01,8006 # PROTOCOL",
    "7241 ? N2,mediatype req=8017,8018 # AIDC MEDIA TYPE",
    "7242 ? X..25 req=8017,8018 # VCN",
    "7250 ? N8,yyyymmdd req=8018 ex=7251 # DOB",
    "7251 ? N8,yyyymmdd N4,hhmi req=8018 ex=7250 # DOB TIME",
    "7252 ? N1,iso5218 req=8018 # BIO SEX",
    "7253 ? X..40,pcenc req=8017,8018 ex=7256,7259 # FAMILY NAME",
    "7254 ? X..40,pcenc req=8017,8018 ex=7256,7259 # GIVEN NAME",
    "7255 ? X..10 req=8017,8018 ex=7256,7259 # SUFFIX",
    "7256 ? X..90,pcenc req=8017,8018 # FULL NAME",
    "7257 ? X..70,pcenc req=8018 # PERSON ADDR",
    "7258 ? X3,posinseqslash req=8018+7259 # BIRTH SEQUENCE",
    "7259 ? X..40,pcenc req=8018 ex=7256 # BABY",
    "8001 ? N4,nonzero N5,nonzero N3,nonzero N1,winding N1 req=01 # DIMENSIONS",
    "8002 ? X..20 # CMT No.",
    "8003 ? N1,zero N13,csum,gcppos1 [X..16] dlpkey # GRAI",
    "8004 ? X..30,gcppos1 dlpkey=7040 # GIAI",
    "8005 ? N6 req=01,02 # PRICE PER UNIT",
    "8006 ? N14,csum,gcppos2 N4,pieceoftotal ex=01,37 dlpkey=22,10,21 # ITIP",
    "8007 ? X..34,iban req=415 # IBAN",
    "8008 ? N6,yymmdd N2,hh [N2],mi [N2],ss req=01,02 # PROD TIME",
    "8009 ? X..50 req=00,01 # OPTSEN",
    "8010 ? Y..30,gcppos1 dlpkey=8011 # CPID",
    "8011 N..12,nozeroprefix req=8010 # CPID SERIAL",
    "8012 ? X..20 req=01,8006 # VERSION",
    "8013 ? X..25,csumalpha,gcppos1 dlpkey # GMN",
    "8014 X..25,csumalpha,gcppos1,hasnondigit req=01 # MUDI",
    "8017 ? N18,csum,gcppos1 ex=8018 dlpkey=8019 # GSRN - PROVIDER",
    "8018 ? N18,csum,gcppos1 ex=8017 dlpkey=8019 # GSRN - RECIPIENT",
    "8019 N..10 req=8017,8018 # SRIN",
    "8020 X..25 req=415 # REF No.",
    "8026 ? N14,csum,gcppos2 N4,pieceoftotal req=37 ex=02,8006 # ITIP CONTENT",
    "8030 ? Z..90 req=00,01+21,253,255,8003,8004,8006+21,8010+8011,8017,8018 # DIGSIG",
    "8040 N15 req=01+21 # IMEI",
    "8041 N15 req=01+21+8040 # IMEI2",
    "8042 N32 req=01+21+8040 # ESIM",
    "8043 N18 [N..2] req=01+21+8040 # PSIM",
    "8110 ? X..70,couponcode",
    "8111 ? N4 req=255 # POINTS",
    "8112 ? X..70,couponposoffer",
    "8200 X..70 req=01 # PRODUCT URL",
    "90 ? X..30 # INTERNAL",
    "91-99 ? X..90 # INTERNAL",
)

_FLAGS = frozenset("*?")  # "*": predefined length; "?": may be a Digital Link data attribute
_COMPONENT_RE = re.compile(
    r"(?P<open>\[)?(?P<charset>[NXYZ])(?:(?P<min>\d*)\.\.(?P<max>\d+)|(?P<fixed>\d+))"
    r"(?(open)\])(?P<linters>(?:,[a-z0-9]+)*)"
)
_AI_RANGE_RE = re.compile(r"(?P<first>\d{2,4})(?:-(?P<last>\d{2,4}))?")


class GS1SyntaxError(ValidationError):
    """A GS1 element string, AI value or Digital Link URI breaks a rule of the GS1 Barcode
    Syntax Dictionary or the GS1 Digital Link standard.

    ``rule`` names the AI and the rule, e.g. ``"(01) GTIN check digit is 3, expected 2"``;
    ``ai`` is that AI (``None`` for URI-level problems) and ``code`` a stable identifier: the
    engine's linter name for content rules (``GS1_LINTER_INCORRECT_CHECK_DIGIT``), else a
    short name such as ``UNKNOWN_AI``, ``VALUE_TOO_LONG`` or ``INVALID_KEY_QUALIFIERS``.
    """

    def __init__(self, field: str, rule: str, *, code: str, ai: str | None = None):
        super().__init__(field, rule)
        self.code = code
        self.ai = ai

    def for_field(self, field: str) -> GS1SyntaxError:
        """The same error reported against another input field."""
        return GS1SyntaxError(field, self.rule, code=self.code, ai=self.ai)


@dataclass(frozen=True)
class AIComponent:
    """One component of an AI's format, e.g. ``N14,csum,gcppos2`` or ``[X..17]``."""

    charset: str  # "N" digits, "X" CSET 82, "Y" CSET 39, "Z" CSET 64 (base64url)
    min_length: int
    max_length: int
    optional: bool
    linters: tuple[str, ...]

    @property
    def spec(self) -> str:
        """The component as the dictionary writes it, without linters: ``N6``, ``[X..17]``."""
        if self.min_length == self.max_length:
            text = f"{self.charset}{self.max_length}"
        elif self.min_length == 1:
            text = f"{self.charset}..{self.max_length}"
        else:
            text = f"{self.charset}{self.min_length}..{self.max_length}"
        return f"[{text}]" if self.optional else text


@dataclass(frozen=True)
class AIDefinition:
    """One Application Identifier as the GS1 Barcode Syntax Dictionary defines it."""

    ai: str
    title: str
    fixed_length: bool  # flag "*": predefined length, no FNC1 separator after it
    dl_attribute: bool  # flag "?": permitted as a Digital Link query-string data attribute
    components: tuple[AIComponent, ...]
    requires: tuple[tuple[tuple[str, ...], ...], ...] = ()  # each req=: alternatives of groups
    excludes: tuple[str, ...] = ()  # ex=: AIs or patterns ("310n") it must not appear with
    dl_qualifiers: tuple[tuple[str, ...], ...] | None = None  # dlpkey= alternatives; None: no key

    @property
    def primary_key(self) -> bool:
        """Whether the AI is a Digital Link primary key (``dlpkey``)."""
        return self.dl_qualifiers is not None

    @property
    def label(self) -> str:
        """``(17) USE BY or EXPIRY``: how messages name the AI."""
        return f"({self.ai}) {self.title}" if self.title else f"({self.ai})"

    @property
    def spec(self) -> str:
        """The format without linters, e.g. ``N13 [X..17]``."""
        return " ".join(component.spec for component in self.components)

    @property
    def min_length(self) -> int:
        return sum(c.min_length for c in self.components if not c.optional)

    @property
    def max_length(self) -> int:
        return sum(c.max_length for c in self.components)

    @property
    def linters(self) -> tuple[str, ...]:
        return tuple(name for c in self.components for name in c.linters)

    @property
    def supported(self) -> bool:
        """Whether every content rule of the AI is implemented here."""
        return all(name in _LINTERS for name in self.linters)


def _parse_component(match: re.Match[str]) -> AIComponent:
    if match["fixed"] is not None:
        low = high = int(match["fixed"])
    else:
        low, high = int(match["min"] or 1), int(match["max"])
    linters = tuple(name for name in match["linters"].split(",") if name)
    return AIComponent(match["charset"], low, high, match["open"] is not None, linters)


def _parse_attributes(tokens: list[str], where: str) -> dict[str, object]:
    requires: list[tuple[tuple[str, ...], ...]] = []
    excludes: list[str] = []
    qualifiers: list[tuple[str, ...]] | None = None
    for token in tokens:
        key, has_value, value = token.partition("=")
        if key == "req" and value:
            requires.append(tuple(tuple(group.split("+")) for group in value.split(",")))
        elif key == "ex" and value:
            excludes.extend(value.split(","))
        elif key == "dlpkey":
            qualifiers = qualifiers or []
            if not has_value:
                qualifiers.append(())
            else:
                qualifiers.extend(tuple(alt.split(",")) for alt in value.split("|"))
        else:
            raise ValueError(f"{where}: unknown attribute {token!r}")
    return {
        "requires": tuple(requires),
        "excludes": tuple(excludes),
        "dl_qualifiers": None if qualifiers is None else tuple(qualifiers),
    }


def parse_syntax_dictionary(text: str) -> dict[str, AIDefinition]:
    """Parse the text of ``gs1-syntax-dictionary.txt`` into ``{ai: AIDefinition}``.

    Ranges such as ``3100-3105`` become one entry per AI. Raises :class:`ValueError` on
    anything the format (as documented in the file's header) does not allow, including
    flags and attributes this parser does not know, so a new release is reviewed, not
    silently misread.
    """
    table: dict[str, AIDefinition] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {number}"
        body, _, title = line.partition("#")
        tokens = body.split()
        ais = _AI_RANGE_RE.fullmatch(tokens.pop(0))
        if ais is None:
            raise ValueError(f"{where}: {raw!r} does not start with an AI or an AI range")
        flags = ""
        if tokens and _COMPONENT_RE.fullmatch(tokens[0]) is None:
            flags = tokens.pop(0)
            unknown = set(flags) - set(_FLAGS)
            if unknown:
                raise ValueError(f"{where}: unknown flag(s) {''.join(sorted(unknown))!r}")
        components: list[AIComponent] = []
        while tokens and (match := _COMPONENT_RE.fullmatch(tokens[0])) is not None:
            components.append(_parse_component(match))
            tokens.pop(0)
        if not components:
            raise ValueError(f"{where}: no format specification")
        attributes = _parse_attributes(tokens, where)
        first, last = ais["first"], ais["last"] or ais["first"]
        for code in range(int(first), int(last) + 1):
            ai = str(code).zfill(len(first))
            table[ai] = AIDefinition(
                ai=ai,
                title=title.strip(),
                fixed_length="*" in flags,
                dl_attribute="?" in flags,
                components=tuple(components),
                **attributes,  # type: ignore[arg-type]
            )
    return table


# --- linters: the content rules of the Syntax Dictionary ----------------------------------

# A linter looks at one component (``data``, starting at ``offset`` within the AI value) and
# returns None, or (engine error code, what is wrong) with 1-based positions in the value.
_Lint = Callable[[str, int], "tuple[str, str] | None"]

_CSET39 = frozenset(string.ascii_uppercase + string.digits + "#-/")
_CSET64 = frozenset(string.ascii_letters + string.digits + "-_")
_CSET32 = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # check characters of the check pair, by value
_CSET82_ORDER = (
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)
_PRIMES = (
    2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
    97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167, 173, 179, 181,
    191, 193, 197, 199, 211, 223, 227, 229, 233, 239, 241, 251, 257, 263, 269, 271, 277, 281,
    283, 293, 307, 311, 313, 317, 331, 337, 347, 349, 353, 359, 367, 373, 379, 383, 389, 397,
    401, 409, 419, 421, 431, 433, 439, 443, 449, 457, 461, 463, 467, 479, 487, 491, 499, 503,
    509,
)  # fmt: skip
_IMPORTER_INDEX = frozenset(string.ascii_letters + string.digits + "-_")
_MEDIA_TYPES = frozenset([f"{n:02d}" for n in range(1, 11)] + [str(n) for n in range(80, 100)])
_CENTURY_WINDOW = 51  # GS1 General Specifications 7.12: YY 51 or more ahead = previous century


def _bad_char(
    data: str, offset: int, allowed: frozenset[str], code: str, what: str
) -> tuple[str, str] | None:
    for i, char in enumerate(data):
        if char not in allowed:
            return code, f"character {char!r} at position {offset + i + 1} is not {what}"
    return None


def _lint_numeric(data: str, offset: int) -> tuple[str, str] | None:
    return _bad_char(data, offset, _DIGITS, "GS1_LINTER_NON_DIGIT_CHARACTER", "a digit")


def _lint_cset82(data: str, offset: int) -> tuple[str, str] | None:
    what = f"allowed (GS1 AI encodable character set 82: {_CSET82_HUMAN})"
    return _bad_char(data, offset, CSET82, "GS1_LINTER_INVALID_CSET82_CHARACTER", what)


def _lint_cset39(data: str, offset: int) -> tuple[str, str] | None:
    what = "allowed (GS1 AI encodable character set 39: A-Z 0-9 # - /)"
    return _bad_char(data, offset, _CSET39, "GS1_LINTER_INVALID_CSET39_CHARACTER", what)


def _lint_cset64(data: str, offset: int) -> tuple[str, str] | None:
    body = data.rstrip("=")
    pads = len(data) - len(body)
    if pads > 2 or (pads and len(data) % 3):
        return "GS1_LINTER_INVALID_CSET64_PADDING", (
            f"has {pads} '=' padding character(s) after {len(body)} characters;"
            " base64url padding makes the length a multiple of 3 with at most two '='"
        )
    what = "allowed (base64url: A-Z a-z 0-9 - _, then optional '=' padding)"
    return _bad_char(body, offset, _CSET64, "GS1_LINTER_INVALID_CSET64_CHARACTER", what)


def _lint_csum(data: str, offset: int) -> tuple[str, str] | None:
    if not data:
        return "GS1_LINTER_TOO_SHORT_FOR_CHECK_DIGIT", "is too short for a check digit"
    expected = check_digit(data[:-1]) if len(data) > 1 else "0"
    if data[-1] != expected:
        return "GS1_LINTER_INCORRECT_CHECK_DIGIT", f"check digit is {data[-1]}, expected {expected}"
    return None


def check_pair(body: str, *, field: str = "body") -> str:
    """The two GS1 check characters (AI 8013 GMN, 8014 MUDI) that follow ``body``.

    ``body`` is 0 to 97 characters of CSET 82; each character's value (its position in
    CSET 82) is weighted by the primes 2, 3, 5, ... from the right, the sum taken modulo
    1021, and its high and low five bits name two characters of CSET 32.
    ``check_pair("1987654Ad4X4bL5ttr2310c")`` is ``"2K"``.
    """
    _require_str(body, field)
    if len(body) > len(_PRIMES):
        raise GS1SyntaxError(
            field,
            f"has {len(body)} characters; the check pair is defined here for at most"
            f" {len(_PRIMES)}",
            code="GS1_LINTER_TOO_LONG_FOR_CHECK_PAIR_IMPLEMENTATION",
        )
    problem = _lint_cset82(body, 0)
    if problem:
        raise GS1SyntaxError(field, problem[1], code=problem[0])
    weights = _PRIMES[len(body) - 1 :: -1] if body else ()
    total = sum(_CSET82_ORDER.index(c) * w for c, w in zip(body, weights, strict=True)) % 1021
    return _CSET32[total >> 5] + _CSET32[total & 31]


def _lint_csumalpha(data: str, offset: int) -> tuple[str, str] | None:
    if len(data) < 2:
        return "GS1_LINTER_TOO_SHORT_FOR_CHECK_PAIR", "is too short for a check character pair"
    try:
        expected = check_pair(data[:-2])
    except GS1SyntaxError as exc:
        return exc.code, exc.rule
    if data[-2:] != expected:
        return "GS1_LINTER_INCORRECT_CHECK_PAIR", (
            f"check characters are {data[-2:]!r}, expected {expected!r}"
        )
    return None


def _lint_gcppos1(data: str, offset: int) -> tuple[str, str] | None:
    if len(data) < 4:
        return "GS1_LINTER_TOO_SHORT_FOR_GCP", "is too short to start with a GS1 Company Prefix"
    for i, char in enumerate(data[:4]):
        if char not in _DIGITS:
            return "GS1_LINTER_INVALID_GCP_PREFIX", (
                f"character {char!r} at position {offset + i + 1} cannot be part of a GS1"
                " Company Prefix (digits)"
            )
    return None


def _lint_gcppos2(data: str, offset: int) -> tuple[str, str] | None:
    if not data:
        return "GS1_LINTER_TOO_SHORT_FOR_GCP", "is too short to contain a GS1 Company Prefix"
    return _lint_gcppos1(data[1:], offset + 1)


def _days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _check_date(data: str, offset: int, year: int, *, day_zero: bool) -> tuple[str, str] | None:
    month, day = int(data[-4:-2]), int(data[-2:])
    if not 1 <= month <= 12:
        return "GS1_LINTER_ILLEGAL_MONTH", (
            f"month {data[-4:-2]} (position {offset + len(data) - 3}) is not 01-12"
        )
    if day == 0 and day_zero:
        return None
    if not 1 <= day <= _days_in_month(year, month):
        detail = " of a year that is not a leap year" if (month, day) == (2, 29) else ""
        return (
            "GS1_LINTER_ILLEGAL_DAY",
            f"day {data[-2:]} does not exist in month {month:02d}{detail}",
        )
    return None


def _date_format(data: str, offset: int, length: int) -> tuple[str, str] | None:
    if len(data) != length:
        code = "GS1_LINTER_DATE_TOO_SHORT" if len(data) < length else "GS1_LINTER_DATE_TOO_LONG"
        return code, f"has a date of {len(data)} digits; expected {length}"
    return _lint_numeric(data, offset)


def _yymm_year(data: str) -> int:
    # Only leap years matter for validation. The engine fixes the reference year (2021), so
    # YY maps to 1972-2071; 2000 is a leap year and 2100 is never reached.
    yy = int(data[:2])
    return (1900 if yy >= 72 else 2000) + yy


def _lint_yymmd0(data: str, offset: int) -> tuple[str, str] | None:
    problem = _date_format(data, offset, 6)
    return problem or _check_date(data, offset, _yymm_year(data), day_zero=True)


def _lint_yymmdd(data: str, offset: int) -> tuple[str, str] | None:
    problem = _date_format(data, offset, 6)
    return problem or _check_date(data, offset, _yymm_year(data), day_zero=False)


def _lint_yyyymmdd(data: str, offset: int) -> tuple[str, str] | None:
    problem = _date_format(data, offset, 8)
    return problem or _check_date(data, offset, int(data[:4]), day_zero=False)


def _ranged(code: str, what: str, high: int) -> _Lint:
    def lint(data: str, offset: int) -> tuple[str, str] | None:
        if len(data) != 2 or not data.isdigit() or int(data) > high:
            return code, f"{what} {data!r} (position {offset + 1}) is not 00-{high:02d}"
        return None

    return lint


_lint_hh = _ranged("GS1_LINTER_ILLEGAL_HOUR", "hour", 23)
_lint_mi = _ranged("GS1_LINTER_ILLEGAL_MINUTE", "minute", 59)
_lint_ss = _ranged("GS1_LINTER_ILLEGAL_SECOND", "second", 59)


def _lint_hhmi(data: str, offset: int) -> tuple[str, str] | None:
    return _lint_hh(data[:2], offset) or _lint_mi(data[2:], offset + 2)


def _one_of(code: str, allowed: Iterable[str], what: str) -> _Lint:
    values = frozenset(allowed)

    def lint(data: str, offset: int) -> tuple[str, str] | None:
        if data not in values:
            return code, f"{data!r} (position {offset + 1}) is not {what}"
        return None

    return lint


def _lint_nonzero(data: str, offset: int) -> tuple[str, str] | None:
    if not data.strip("0"):
        return "GS1_LINTER_ILLEGAL_ZERO_VALUE", (
            f"{data!r} (position {offset + 1}) must not be zero"
        )
    return None


def _lint_nozeroprefix(data: str, offset: int) -> tuple[str, str] | None:
    if data.startswith("0"):
        return "GS1_LINTER_ILLEGAL_ZERO_PREFIX", (
            f"{data!r} (position {offset + 1}) must not start with 0"
        )
    return None


def _lint_hasnondigit(data: str, offset: int) -> tuple[str, str] | None:
    if data.isdigit():
        return "GS1_LINTER_REQUIRES_NON_DIGIT_CHARACTER", "must contain a character other than 0-9"
    return None


def _lint_pieceoftotal(data: str, offset: int) -> tuple[str, str] | None:
    piece, total = data[:2], data[2:]
    if int(piece) == 0:
        return "GS1_LINTER_ZERO_PIECE_NUMBER", f"piece number {piece} must not be 00"
    if int(total) == 0:
        return "GS1_LINTER_ZERO_TOTAL_PIECES", f"total number of pieces {total} must not be 00"
    if int(piece) > int(total):
        return "GS1_LINTER_PIECE_NUMBER_EXCEEDS_TOTAL", (
            f"piece number {piece} is more than the total, {total}"
        )
    return None


def _lint_posinseqslash(data: str, offset: int) -> tuple[str, str] | None:
    match = re.fullmatch(r"(\d+)/(\d+)", data)
    if match is None:
        return "GS1_LINTER_POSITION_IN_SEQUENCE_MALFORMED", (
            f"{data!r} is not a position in a sequence, '<position>/<end>' such as '1/3'"
        )
    position, end = match[1], match[2]
    if position.startswith("0") or end.startswith("0"):
        return "GS1_LINTER_ILLEGAL_ZERO_PREFIX", (
            f"{data!r}: neither number may be 0 or start with 0"
        )
    if int(position) > int(end):
        return "GS1_LINTER_POSITION_EXCEEDS_END", f"{data!r}: position {position} is past the end"
    return None


def _lint_pcenc(data: str, offset: int) -> tuple[str, str] | None:
    for i, char in enumerate(data):
        if char == "%" and not (
            i + 2 < len(data) and data[i + 1] in _HEX_DIGITS and data[i + 2] in _HEX_DIGITS
        ):
            return "GS1_LINTER_INVALID_PERCENT_SEQUENCE", (
                f"'%' at position {offset + i + 1} is not followed by two hex digits"
            )
    return None


def _coordinate(code: str, length_code: str, what: str, high: int) -> _Lint:
    def lint(data: str, offset: int) -> tuple[str, str] | None:
        if len(data) != 10:
            return length_code, f"{what} has {len(data)} digits; expected 10"
        problem = _lint_numeric(data, offset)
        if problem:
            return problem
        if int(data) > high:
            return code, f"{what} {data} is more than {high}"
        return None

    return lint


def _lint_importeridx(data: str, offset: int) -> tuple[str, str] | None:
    if len(data) != 1:
        return "GS1_LINTER_IMPORTER_IDX_MUST_BE_ONE_CHARACTER", "importer index is one character"
    if data not in _IMPORTER_INDEX:
        return "GS1_LINTER_INVALID_IMPORT_IDX_CHARACTER", (
            f"importer index {data!r} (position {offset + 1}) is not one of - 0-9 A-Z _ a-z"
        )
    return None


_CHARSET_LINTERS: dict[str, _Lint] = {
    "N": _lint_numeric,
    "X": _lint_cset82,
    "Y": _lint_cset39,
    "Z": _lint_cset64,
}
_LINTERS: dict[str, _Lint] = {
    "csum": _lint_csum,
    "csumalpha": _lint_csumalpha,
    "gcppos1": _lint_gcppos1,
    "gcppos2": _lint_gcppos2,
    "yymmd0": _lint_yymmd0,
    "yymmdd": _lint_yymmdd,
    "yyyymmdd": _lint_yyyymmdd,
    "hh": _lint_hh,
    "mi": _lint_mi,
    "ss": _lint_ss,
    "hhmi": _lint_hhmi,
    "zero": _one_of("GS1_LINTER_NOT_ZERO", ["0"], "0"),
    "nonzero": _lint_nonzero,
    "nozeroprefix": _lint_nozeroprefix,
    "hasnondigit": _lint_hasnondigit,
    "pieceoftotal": _lint_pieceoftotal,
    "posinseqslash": _lint_posinseqslash,
    "pcenc": _lint_pcenc,
    "hyphen": _one_of("GS1_LINTER_NOT_HYPHEN", ["-"], "'-'"),
    "yesno": _one_of("GS1_LINTER_NOT_ZERO_OR_ONE", ["0", "1"], "0 (no) or 1 (yes)"),
    "winding": _one_of(
        "GS1_LINTER_INVALID_WINDING_DIRECTION", ["0", "1", "9"], "a winding direction (0, 1, 9)"
    ),
    "iso5218": _one_of(
        "GS1_LINTER_INVALID_BIOLOGICAL_SEX_CODE", ["0", "1", "2", "9"], "an ISO 5218 sex code"
    ),
    "mediatype": _one_of(
        "GS1_LINTER_INVALID_MEDIA_TYPE", _MEDIA_TYPES, "an AIDC media type (01-10, 80-99)"
    ),
    "latitude": _coordinate(
        "GS1_LINTER_INVALID_LATITUDE", "GS1_LINTER_LATITUDE_INVALID_LENGTH", "latitude", 1800000000
    ),
    "longitude": _coordinate(
        "GS1_LINTER_INVALID_LONGITUDE",
        "GS1_LINTER_LONGITUDE_INVALID_LENGTH",
        "longitude",
        3600000000,
    ),
    "importeridx": _lint_importeridx,
}

UNSUPPORTED_LINTERS = MappingProxyType(
    {
        "iso3166": "the ISO 3166 numeric country code list",
        "iso3166999": "the ISO 3166 numeric country code list",
        "iso3166alpha2": "the ISO 3166 alpha-2 country code list",
        "iso4217": "the ISO 4217 currency code list",
        "iban": "the IBAN country formats",
        "packagetype": "the UN/ECE package type code list",
        "couponcode": "the North American coupon code structure",
        "couponposoffer": "the positive offer file coupon structure",
    }
)
"""Content rules of the dictionary not implemented here, with what they would check
against. AIs that use them are refused (:class:`GS1SyntaxError` code ``UNSUPPORTED_AI``)."""

AI_TABLE: Mapping[str, AIDefinition] = MappingProxyType(
    parse_syntax_dictionary("\n".join(_DICTIONARY_LINES))
)
"""Every AI of the GS1 Barcode Syntax Dictionary (release 2026-01-27), supported or not."""

SUPPORTED_AIS: frozenset[str] = frozenset(ai for ai, d in AI_TABLE.items() if d.supported)
"""AIs this module validates, parses and generates: all of :data:`AI_TABLE` except those
needing a rule in :data:`UNSUPPORTED_LINTERS`."""


def _enumerate_dl_paths() -> dict[str, tuple[tuple[str, ...], ...]]:
    """For each primary key, every valid key-qualifier path (the key, then an in-order
    subset of one ``dlpkey`` alternative), sorted as the engine sorts them (as strings)."""
    paths: dict[str, set[tuple[str, ...]]] = {}
    for ai, definition in AI_TABLE.items():
        for alternative in definition.dl_qualifiers or ():
            found = paths.setdefault(ai, {(ai,)})
            for mask in range(1, 1 << len(alternative)):
                chosen = (q for i, q in enumerate(alternative) if mask >> i & 1)
                found.add((ai, *chosen))
    return {ai: tuple(sorted(found, key=" ".join)) for ai, found in paths.items()}


_DL_PATHS = _enumerate_dl_paths()
_FIELD_ELEMENT_STRING = "element_string"


def _definition(ai: str, field: str) -> AIDefinition:
    """The definition of a supported AI, or a GS1SyntaxError saying why there is none."""
    definition = AI_TABLE.get(ai)
    if definition is None:
        raise GS1SyntaxError(
            field,
            f"({ai}) is not a GS1 Application Identifier (it is not in the GS1 Barcode Syntax"
            f" Dictionary, release {SYNTAX_DICTIONARY_RELEASE})",
            code="UNKNOWN_AI",
            ai=ai,
        )
    if not definition.supported:
        missing = next(name for name in definition.linters if name not in _LINTERS)
        raise GS1SyntaxError(
            field,
            f"{definition.label} is not supported here: its values are checked against"
            f" {UNSUPPORTED_LINTERS.get(missing, missing)}, which this module does not carry",
            code="UNSUPPORTED_AI",
            ai=ai,
        )
    return definition


def _check_components(definition: AIDefinition, data: str, field: str) -> int:
    """Validate the components of ``definition`` against the start of ``data`` as the engine
    does (each component takes up to its maximum length); return how much they took."""
    if not data:
        raise GS1SyntaxError(
            field, f"{definition.label} is empty", code="EMPTY_VALUE", ai=definition.ai
        )
    position = 0
    for component in definition.components:
        part = data[position : position + component.max_length]
        if component.optional and not part:
            continue
        if len(part) < component.min_length:
            raise GS1SyntaxError(
                field,
                f"{definition.label} is too short: {data[:position] + part!r} does not fill"
                f" its format {definition.spec}",
                code="VALUE_TOO_SHORT",
                ai=definition.ai,
            )
        for lint in (_CHARSET_LINTERS[component.charset], *map(_LINTERS.get, component.linters)):
            assert lint is not None  # unsupported AIs never get here
            problem = lint(part, position)
            if problem:
                raise GS1SyntaxError(
                    field, f"{definition.label} {problem[1]}", code=problem[0], ai=definition.ai
                )
        position += len(part)
    return position


def _check_value(definition: AIDefinition, value: str, field: str) -> None:
    _require_str(value, field)
    length, low, high = len(value), definition.min_length, definition.max_length
    if value and not low <= length <= high:
        wanted = f"exactly {high}" if low == high else f"{low} to {high}"
        raise GS1SyntaxError(
            field,
            f"{definition.label} has {length} characters; it must have {wanted}"
            f" ({definition.spec})",
            code="VALUE_TOO_SHORT" if length < low else "VALUE_TOO_LONG",
            ai=definition.ai,
        )
    _check_components(definition, value, field)


def validate_ai_value(ai: str, value: str, *, field: str = "value") -> str:
    """Return ``value`` if it is a valid value of AI ``ai``: its length, character set and
    every content rule of the Syntax Dictionary (check digits, dates, ...).

    ``validate_ai_value("17", "261231")`` passes; ``validate_ai_value("01",
    "09506000134353")`` raises ``(01) GTIN check digit is 3, expected 2``.
    """
    _require_str(ai, "ai")
    _check_value(_definition(ai, field), value, field)
    return value


# --- element strings ----------------------------------------------------------------------

AIPairs = tuple[tuple[str, str], ...]


def _ai_at(data: str, position: int) -> str | None:
    for length in (2, 3, 4):
        ai = data[position : position + length]
        if len(ai) == length and ai.isascii() and ai.isdigit() and ai in AI_TABLE:
            return ai
    return None


def _parse_unbracketed(text: str, field: str) -> list[tuple[str, str]]:
    """``^0112345678901231^10ABC``: '^' is FNC1 (first, and after variable-length AIs)."""
    if not text.startswith("^"):
        raise GS1SyntaxError(
            field,
            "must start with '(' (bracketed AIs) or '^' (FNC1, unbracketed AIs)",
            code="MISSING_FNC1",
        )
    data, position, pairs = text[1:], 0, []
    if not data:
        raise GS1SyntaxError(field, "has no AIs after the FNC1 ('^')", code="EMPTY")
    while position < len(data):
        ai = _ai_at(data, position)
        if ai is None:
            raise GS1SyntaxError(
                field,
                f"no GS1 AI starts at position {position + 2} ({data[position : position + 4]!r})",
                code="UNKNOWN_AI",
            )
        definition = _definition(ai, field)
        start = position + len(ai)
        end = data.find("^", start)
        end = len(data) if end < 0 else end
        taken = _check_components(definition, data[start:end], field)
        position = start + taken
        if not definition.fixed_length and position < end:
            raise GS1SyntaxError(
                field,
                f"{definition.label} is too long: {data[start:end]!r} goes past its format"
                f" {definition.spec}",
                code="VALUE_TOO_LONG",
                ai=ai,
            )
        pairs.append((ai, data[start:position]))
        if position < len(data) and data[position] == "^":
            position += 1
    return pairs


def _parse_bracketed(text: str, field: str) -> list[tuple[str, str]]:
    """``(01)12345678901231(10)ABC``; a literal '(' in a value is written ``\\(``."""
    position, pairs = 0, []
    while position < len(text):
        close = text.find(")", position)
        if text[position] != "(" or close < 0:
            raise GS1SyntaxError(
                field,
                f"expected '(AI)' at position {position + 1}; bracketed AI data looks like"
                " (01)09506000134352(10)LOT42",
                code="BRACKETED_SYNTAX",
            )
        ai = text[position + 1 : close]
        if not (2 <= len(ai) <= 4 and ai.isascii() and ai.isdigit()):
            raise GS1SyntaxError(field, f"'({ai})' is not an AI (2 to 4 digits)", code="UNKNOWN_AI")
        definition = _definition(ai, field)
        parts, cursor = [], close + 1
        while True:
            bracket = text.find("(", cursor)
            if bracket < 0:
                parts.append(text[cursor:])
                cursor = len(text)
                break
            if text[bracket - 1] == "\\":
                parts.append(text[cursor : bracket - 1] + "(")
                cursor = bracket + 1
                continue
            parts.append(text[cursor:bracket])
            cursor = bracket
            break
        value = "".join(parts)
        _check_value(definition, value, field)
        pairs.append((ai, value))
        position = cursor
    return pairs


def _matches(ai: str, pattern: str) -> bool:
    """Whether ``ai`` matches a ``req=``/``ex=`` pattern: an AI, or one with trailing 'n's
    standing for any digit (``310n``, ``31nn``)."""
    return len(ai) == len(pattern) and ai.startswith(pattern.rstrip("n"))


def _check_associations(pairs: AIPairs, field: str) -> None:
    """The engine's association checks: repeated AIs agree, ``ex=`` mutual exclusions,
    ``req=`` requisites and the serialised key a digital signature (8030) needs."""
    first: dict[str, str] = {}
    for ai, value in pairs:
        if first.setdefault(ai, value) != value:
            raise GS1SyntaxError(
                field,
                f"{AI_TABLE[ai].label} appears twice with different values:"
                f" {first[ai]!r} and {value!r}",
                code="REPEATED_AI_DIFFERS",
                ai=ai,
            )
    present = list(first)
    for ai in present:
        definition = AI_TABLE[ai]
        others = [other for other in present if other != ai]
        for pattern in definition.excludes:
            clash = next((other for other in others if _matches(other, pattern)), None)
            if clash is not None:
                raise GS1SyntaxError(
                    field,
                    f"{definition.label} may not appear together with {AI_TABLE[clash].label}",
                    code="MUTUALLY_EXCLUSIVE_AIS",
                    ai=ai,
                )
        for alternatives in definition.requires:
            if not any(
                all(any(_matches(other, p) for other in others) for p in group)
                for group in alternatives
            ):
                wanted = " or ".join("+".join(f"({p})" for p in group) for group in alternatives)
                raise GS1SyntaxError(
                    field,
                    f"{definition.label} needs {wanted} in the same data",
                    code="REQUIRED_AI_MISSING",
                    ai=ai,
                )
    if "8030" in first:
        for ai, serial_from in (("253", 13), ("255", 13), ("8003", 14)):
            if ai in first and len(first[ai]) <= serial_from:
                raise GS1SyntaxError(
                    field,
                    f"{AI_TABLE['8030'].label} needs a serialised key, but"
                    f" {AI_TABLE[ai].label} {first[ai]!r} has no serial component",
                    code="DIGSIG_NEEDS_SERIALISED_KEY",
                    ai="8030",
                )


def parse_element_string(
    text: str, *, check_associations: bool = True, field: str = _FIELD_ELEMENT_STRING
) -> AIPairs:
    """``(AI, value)`` pairs of a GS1 element string, validated.

    Accepts the bracketed form ``(01)09506000134352(10)LOT42`` (``\\(`` is a literal '(')
    and the unbracketed form ``^010950600013435210LOT42`` ('^' is FNC1). Every value is
    checked (length, character set, check digits, dates, ...); with ``check_associations``
    (the default) so are the relations between AIs: repeated AIs must agree, ``ex=`` pairs
    may not meet and each ``req=`` must be met. At most :data:`MAX_AIS` AIs.
    """
    _require_str(text, field)
    if text.startswith("^"):
        pairs = _parse_unbracketed(text, field)
    elif text:
        pairs = _parse_bracketed(text, field)
    else:
        raise GS1SyntaxError(field, "is empty; expected AI data such as (01)…(10)…", code="EMPTY")
    if len(pairs) > MAX_AIS:
        raise GS1SyntaxError(
            field, f"has {len(pairs)} AIs; at most {MAX_AIS} are allowed", code="TOO_MANY_AIS"
        )
    if check_associations:
        _check_associations(tuple(pairs), field)
    return tuple(pairs)


def format_element_string(pairs: Iterable[tuple[str, str]], *, unbracketed: bool = False) -> str:
    """Write AI pairs as a bracketed element string, ``(01)…(10)…`` with '(' in values
    escaped as ``\\(``, or with ``unbracketed`` in the engine's FNC1 notation ``^01…10…``
    ('^' first and after each variable-length AI that is not last). Values are not checked."""
    pairs = list(pairs)
    if not unbracketed:
        return "".join(f"({ai}){value.replace('(', chr(92) + '(')}" for ai, value in pairs)
    out = ["^"]
    for index, (ai, value) in enumerate(pairs):
        out.append(ai + value)
        definition = AI_TABLE.get(ai)
        if index < len(pairs) - 1 and not (definition and definition.fixed_length):
            out.append("^")
    return "".join(out)


# --- GS1 Digital Link ---------------------------------------------------------------------

_FIELD_DL = "digital_link"
_FIELD_URI = "uri"


def _pairs(items: Iterable[tuple[str, str]] | Mapping[str, str], what: str) -> AIPairs:
    if isinstance(items, Mapping):
        items = items.items()
    if isinstance(items, str):
        raise ValidationError(what, "must be (name, value) pairs or a mapping, not a string")
    out = []
    for item in items:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise ValidationError(what, f"item {item!r} is not a (name, value) pair")
        name, value = item
        _require_str(name, what)
        _require_str(value, what)
        out.append((name, value))
    return tuple(out)


def _is_ai_name(name: str) -> bool:
    return bool(name) and name.isascii() and name.isdigit()


def _order_qualifiers(key: AIDefinition, qualifiers: AIPairs, field: str) -> AIPairs:
    """The qualifiers in the key's ``dlpkey`` order, or an error if no alternative of the
    key takes them all."""
    given = [ai for ai, _ in qualifiers]
    if len(set(given)) != len(given):
        dup = next(ai for ai in given if given.count(ai) > 1)
        raise GS1SyntaxError(
            field, f"key qualifier ({dup}) is given twice", code="DUPLICATE_AI", ai=dup
        )
    if not given:
        return ()
    for alternative in key.dl_qualifiers or ():
        if set(given) <= set(alternative):
            return tuple(sorted(qualifiers, key=lambda pair: alternative.index(pair[0])))
    options = " or ".join(",".join(alt) for alt in key.dl_qualifiers or () if alt) or "none"
    raise GS1SyntaxError(
        field,
        f"({', '.join(given)}) cannot qualify {key.label} in a Digital Link path; its key"
        f" qualifiers are {options} (in that order, from one group)",
        code="INVALID_KEY_QUALIFIERS",
        ai=key.ai,
    )


def _belongs_in_path(path: tuple[str, ...], ai: str) -> bool:
    """Whether inserting ``ai`` somewhere after the key gives a valid path: then the engine
    insists it is written in the path, not the query."""
    candidates = _DL_PATHS.get(path[0], ())
    return any((*path[:i], ai, *path[i:]) in candidates for i in range(1, len(path) + 1))


@dataclass(frozen=True, eq=False)
class DigitalLink:
    """A GS1 Digital Link: primary key, key qualifiers, data attributes, other parameters.

    * ``key_ai``/``key``: the primary key, e.g. ``"01"`` and the GTIN-14.
    * ``qualifiers``: key qualifiers as ``(AI, value)`` pairs, kept in the order the
      dictionary's ``dlpkey`` gives (for (01): 22, 10, 21 — or 235); any order is accepted
      and sorted.
    * ``attributes``: GS1 data attributes (query-string AIs such as (17) expiry, (15) best
      before, (3103) net weight), in the order given; a mapping is accepted too.
    * ``params``: other query parameters (``linkType``, ...) as decoded ``(name, value)``
      pairs; a parameter written without '=' has the value ``""``.

    Construction validates everything the GS1 Barcode Syntax Engine does: each value
    (length, character set, check digits, dates, ...), the key-qualifier path, that each
    attribute may be a data attribute and does not belong in the path, no duplicate AIs, and
    the AI associations (``req=``, ``ex=``). Errors are :class:`GS1SyntaxError`.

    Equality ignores the order of ``attributes`` (the standard gives it no meaning); the
    order of ``params`` counts.
    """

    key_ai: str
    key: str
    qualifiers: AIPairs = ()
    attributes: AIPairs = ()
    params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        field = _FIELD_DL
        _require_str(self.key_ai, "key_ai")
        key = _definition(self.key_ai, field)
        if not key.primary_key:
            raise GS1SyntaxError(
                field,
                f"{key.label} is not a GS1 Digital Link primary key",
                code="NOT_A_PRIMARY_KEY",
                ai=self.key_ai,
            )
        qualifiers = _pairs(self.qualifiers, "qualifiers")
        attributes = _pairs(self.attributes, "attributes")
        params = _pairs(self.params, "params")
        for ai, value in ((self.key_ai, self.key), *qualifiers, *attributes):
            _check_value(_definition(ai, field), value, field)
        qualifiers = _order_qualifiers(key, qualifiers, field)
        path = (self.key_ai, *(ai for ai, _ in qualifiers))
        seen = set(path)
        for ai, _ in attributes:
            definition = AI_TABLE[ai]
            if ai in seen:
                raise GS1SyntaxError(
                    field, f"{definition.label} is given twice", code="DUPLICATE_AI", ai=ai
                )
            seen.add(ai)
            if not definition.dl_attribute:
                raise GS1SyntaxError(
                    field,
                    f"{definition.label} may not be a Digital Link data attribute"
                    " (query parameter)",
                    code="NOT_A_DL_ATTRIBUTE",
                    ai=ai,
                )
            if _belongs_in_path(path, ai):
                raise GS1SyntaxError(
                    field,
                    f"{definition.label} qualifies {key.label} here, so it belongs in the"
                    f" path (/{ai}/…), not in the query",
                    code="AI_SHOULD_BE_IN_PATH",
                    ai=ai,
                )
        for name, _ in params:
            if not name or _is_ai_name(name):
                raise ValidationError(
                    "params", f"name {name!r} must be non-empty and not all digits (an AI)"
                )
        _check_associations(((self.key_ai, self.key), *qualifiers, *attributes), field)
        object.__setattr__(self, "qualifiers", qualifiers)
        object.__setattr__(self, "attributes", attributes)
        object.__setattr__(self, "params", params)

    def _identity(self) -> tuple[object, ...]:
        return (self.key_ai, self.key, self.qualifiers, frozenset(self.attributes), self.params)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DigitalLink):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def for_gtin(
        cls,
        gtin: str,
        *,
        cpv: str | None = None,
        lot: str | None = None,
        serial: str | None = None,
        expiry: date | str | None = None,
        attributes: Iterable[tuple[str, str]] | Mapping[str, str] = (),
        params: Iterable[tuple[str, str]] = (),
    ) -> DigitalLink:
        """A trade item: GTIN-8/12/13/14 (stored as GTIN-14), optional (22) CPV, (10) lot and
        (21) serial, and an optional (17) expiry (a date, or YYMMDD text) before any other
        attributes."""
        qualifiers = [
            (ai, value)
            for ai, value in ((AI_CPV, cpv), (AI_BATCH_LOT, lot), (AI_SERIAL, serial))
            if value is not None
        ]
        extra = list(_pairs(attributes, "attributes"))
        if expiry is not None:
            text = f"{expiry:%y%m%d}" if isinstance(expiry, date) else expiry
            extra.insert(0, (AI_EXPIRY, text))
        return cls(AI_GTIN, normalize_gtin(gtin), tuple(qualifiers), tuple(extra), tuple(params))

    @classmethod
    def from_element_string(cls, text: str) -> DigitalLink:
        """The Digital Link of a GS1 element string, chosen as the engine's generator does.

        The first AI that is a primary key becomes the key; of its ``dlpkey`` paths the one
        using most of the given AIs (the first such in the engine's sorted order) gives the
        qualifiers; every other AI becomes a data attribute, in the given order, repeats
        collapsed. ``(01)09506000134352(17)261231(10)LOT42`` gives the path
        ``/01/09506000134352/10/LOT42`` and the attribute (17).
        """
        field = _FIELD_ELEMENT_STRING
        pairs = parse_element_string(text, field=field)
        key_ai = next((ai for ai, _ in pairs if AI_TABLE[ai].primary_key), None)
        if key_ai is None:
            raise GS1SyntaxError(
                field,
                "has no GS1 Digital Link primary key such as (01) GTIN or (00) SSCC",
                code="NO_PRIMARY_KEY",
            )
        counts = {ai: sum(1 for other, _ in pairs if other == ai) for ai, _ in pairs}
        best, most = (key_ai,), 0
        for candidate in _DL_PATHS[key_ai]:
            used = sum(counts.get(ai, 0) for ai in candidate[1:])
            if used > most:
                best, most = candidate, used
        values = dict(reversed(pairs))  # the first value of each AI
        qualifiers = tuple((ai, values[ai]) for ai in best[1:] if ai in values)
        in_path = {key_ai, *(ai for ai, _ in qualifiers)}
        attributes = tuple((ai, value) for ai, value in dict.fromkeys(pairs) if ai not in in_path)
        try:
            return cls(key_ai, values[key_ai], qualifiers, attributes)
        except GS1SyntaxError as exc:
            raise exc.for_field(field) from None

    @classmethod
    def parse(cls, uri: str, *, zero_suppressed_gtin: bool = False) -> DigitalLink:
        """Parse an absolute GS1 Digital Link URI on any http(s) resolver, as the engine does.

        The stem (host and any path before the key) is not kept. The key is the rightmost
        ``/AI/value`` pair, scanning back from the end in pairs, whose AI is a primary key;
        after it come its qualifiers in ``dlpkey`` order. In the query, numeric names are
        AIs (an unknown one is an error), other names are kept as :attr:`params`; ``+`` is a
        space there and a literal '+' in the path. A fragment is ignored; a trailing '/' is
        an error. ``zero_suppressed_gtin`` maps the engine's legacy option: a GTIN-8/12/13
        for (01) is zero-padded to 14 digits instead of refused.
        """
        return _parse_dl(uri, _FIELD_URI, relative=False, zero_suppressed_gtin=zero_suppressed_gtin)

    # --- output ---------------------------------------------------------------------------

    @property
    def ai_pairs(self) -> AIPairs:
        """Key, qualifiers, then attributes: the element string's ``(AI, value)`` pairs."""
        return ((self.key_ai, self.key), *self.qualifiers, *self.attributes)

    def get(self, ai: str) -> str | None:
        """The value of AI ``ai`` (key, qualifier or attribute), or None."""
        return next((value for other, value in self.ai_pairs if other == ai), None)

    @property
    def gtin(self) -> str | None:
        return self.get(AI_GTIN)

    @property
    def lot(self) -> str | None:
        return self.get(AI_BATCH_LOT)

    @property
    def serial(self) -> str | None:
        return self.get(AI_SERIAL)

    @property
    def lot_id(self) -> LotId | None:
        """The lot named by a ``/01/{GTIN}/…/10/{lot}`` link, else None."""
        lot = dict(self.qualifiers).get(AI_BATCH_LOT)
        if self.key_ai != AI_GTIN or lot is None:
            return None
        return LotId(self.key, lot)

    def to_uri(self, base: str = DEFAULT_BASE) -> str:
        """The URI, byte for byte as the GS1 engine generates it from :meth:`element_string`.

        ``{base}/{key AI}/{key}[/{AI}/{qualifier}…][?{AI}={value}&…]``: values
        percent-encoded (:func:`percent_encode`), attributes of predefined length first and
        the others after, each group in the given order. :attr:`params` follow the
        attributes. One trailing '/' of ``base`` is dropped; ``base=""`` gives a relative
        reference.
        """
        parts = [_stem(base)]
        for ai, value in ((self.key_ai, self.key), *self.qualifiers):
            parts.append(f"/{ai}/{percent_encode(value)}")
        query = [
            f"{ai}={percent_encode(value, in_query=True)}"
            for fixed in (True, False)
            for ai, value in self.attributes
            if AI_TABLE[ai].fixed_length is fixed
        ]
        for name, value in self.params:
            encoded = percent_encode(name, in_query=True)
            query.append(f"{encoded}={percent_encode(value, in_query=True)}" if value else encoded)
        if query:
            parts.append("?" + "&".join(query))
        return "".join(parts)

    def element_string(self, *, unbracketed: bool = False) -> str:
        """The GS1 element string of :attr:`ai_pairs`: ``(01)…(10)…(17)…``, or with
        ``unbracketed`` the FNC1 form ``^01…10…^17…`` (see :func:`format_element_string`).
        :attr:`params` are not AI data and are left out."""
        return format_element_string(self.ai_pairs, unbracketed=unbracketed)


def _dl_error(field: str, rule: str, code: str, ai: str | None = None) -> GS1SyntaxError:
    return GS1SyntaxError(field, rule, code=code, ai=ai)


def _find_key(segments: tuple[str, ...], field: str) -> int:
    """Index of the primary key's AI segment: scan ``/AI/value`` pairs back from the end."""
    index, passed = len(segments) - 2, None
    while index >= 0:
        definition = AI_TABLE.get(segments[index])
        if definition is None:
            break
        if definition.primary_key:
            return index
        index, passed = index - 2, definition
    hint = ""
    if passed is not None:
        hint = f"; {passed.label} is not a key and must follow one, as in /01/{{GTIN}}/21/…"
    raise _dl_error(
        field,
        "has no GS1 Digital Link primary key in its path: expected …/01/{GTIN}[/10/{lot}] or"
        f" another key such as /00/{{SSCC}}{hint}",
        "NO_PRIMARY_KEY",
    )


def _decode_value(ai: str, raw: str, field: str, *, in_query: bool, pad_gtin: bool) -> str:
    value = percent_decode(raw, in_query, field=field)
    if pad_gtin and ai == AI_GTIN and len(value) in (8, 12, 13):
        value = value.zfill(GTIN14_LENGTH)
    return value


def _parse_dl(uri: str, field: str, *, relative: bool, zero_suppressed_gtin: bool) -> DigitalLink:
    split = _split_uri(uri, field, relative=relative)
    if split.trailing_slash:
        raise _dl_error(field, "must not end with '/'", "TRAILING_SLASH")
    segments = split.segments
    start = _find_key(segments, field)
    pairs = list(zip(segments[start::2], segments[start + 1 :: 2], strict=True))
    path = tuple(ai for ai, _ in pairs)
    if path not in _DL_PATHS[path[0]]:
        key = AI_TABLE[path[0]]
        options = " or ".join(",".join(alt) for alt in key.dl_qualifiers or () if alt) or "none"
        raise _dl_error(
            field,
            f"path /{'/…/'.join(path)}/… is not a valid key-qualifier sequence: after"
            f" {key.label} may come {options}, in that order",
            "INVALID_KEY_QUALIFIERS",
            path[0],
        )
    values = [
        (ai, _decode_value(ai, raw, field, in_query=False, pad_gtin=zero_suppressed_gtin))
        for ai, raw in pairs
    ]
    attributes: list[tuple[str, str]] = []
    params: list[tuple[str, str]] = []
    for item in (split.query or "").split("&"):
        if not item:
            continue
        raw_name, has_value, raw_value = item.partition("=")
        if not has_value or not _is_ai_name(raw_name):
            name = percent_decode(raw_name, True, field=field)
            if name:
                params.append((name, percent_decode(raw_value, True, field=field)))
            continue
        if raw_name not in AI_TABLE:
            raise _dl_error(
                field,
                f"query parameter {raw_name}= is numeric but ({raw_name}) is not a GS1 AI",
                "UNKNOWN_AI",
                raw_name,
            )
        if not raw_value:
            raise _dl_error(
                field, f"{AI_TABLE[raw_name].label} has an empty value", "EMPTY_VALUE", raw_name
            )
        value = _decode_value(
            raw_name, raw_value, field, in_query=True, pad_gtin=zero_suppressed_gtin
        )
        attributes.append((raw_name, value))
    try:
        return DigitalLink(
            values[0][0], values[0][1], tuple(values[1:]), tuple(attributes), tuple(params)
        )
    except GS1SyntaxError as exc:
        raise exc.for_field(field) from None


def parse_digital_link(path_and_query: str, *, zero_suppressed_gtin: bool = False) -> DigitalLink:
    """Parse what a resolver receives: ``/01/09506000134352/10/LOT42?17=261231`` (a
    relative reference, still percent-encoded — use the raw request URI, not a decoded
    path) or a whole http(s) URI. Rules as :meth:`DigitalLink.parse`; errors are
    :class:`GS1SyntaxError` (a ``ValidationError``: answer 400 with its ``rule``)."""
    return _parse_dl(
        path_and_query, "path", relative=True, zero_suppressed_gtin=zero_suppressed_gtin
    )


def _gs1_date(yymmdd: str, today: date, field: str) -> date:
    """YYMMDD as a date: the century by the GS1 sliding window around ``today``'s year
    (General Specifications 7.12), day 00 meaning the last day of the month."""
    yy, month, day = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:6])
    century = today.year - today.year % 100
    ahead = yy - today.year % 100
    if ahead >= _CENTURY_WINDOW:
        century -= 100
    elif ahead <= -_CENTURY_WINDOW + 1:
        century += 100
    year = century + yy
    try:
        return date(year, month, day or _days_in_month(year, month))
    except ValueError as exc:
        raise ValidationError(field, f"{yymmdd!r} is not a date in {year}") from exc


def expiry(dl: DigitalLink, *, today: date | None = None) -> date | None:
    """The expiry date of the item: (17) USE BY or EXPIRY, else the date part of (7003)
    EXPIRY TIME; None when the link carries neither.

    YYMMDD's century follows GS1's sliding window around ``today`` (default: the current
    date); a day of ``00`` means the last day of that month.
    """
    value = dl.get(AI_EXPIRY)
    if value is None:
        with_time = dl.get("7003")
        if with_time is None:
            return None
        value = with_time[:6]
    return _gs1_date(value, today or date.today(), "expiry")
