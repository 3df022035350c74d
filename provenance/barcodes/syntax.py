"""GS1 AI data checked and written as the GS1 Barcode Syntax Engine does: AI values, element
strings and GS1 Digital Links.

Pure (strings in, values out, :class:`~provenance.barcodes.dictionary.GS1SyntaxError` on bad
input; no I/O, no environment, no clock unless a caller leaves ``today`` out):

* **AI values** — :func:`validate_ai_value`: length, character set and every content rule
  ("linter") the Syntax Dictionary names for the AI (check digits, :func:`check_pair`,
  dates, ...).
* **Element strings** — :func:`parse_element_string`, :func:`format_element_string`:
  bracketed ``(01)…(10)…`` and unbracketed ``^01…10…`` AI data, with the AI associations
  (``req=``, ``ex=``, repeated AIs).
* **Digital Link** — :class:`DigitalLink`: a primary key with its key qualifiers, GS1 data
  attributes and other query parameters; generated and parsed exactly as the engine does
  (AI order, percent-encoding, key-qualifier and data-attribute rules). The resolver entry
  points are :func:`parse_digital_link` and :func:`expiry`.

The rules are those of :mod:`provenance.barcodes.dictionary` (:data:`AI_TABLE`). Every AI whose
content rules are all implemented here is supported — see :data:`SUPPORTED_AIS`; the AIs
whose values must be checked against external code lists (ISO 3166 countries, ISO 4217
currencies, IBAN, package types, coupons) are refused with a message saying so rather than
accepted unchecked. Byte-level behaviour is checked against the engine's own test vectors in
``tests/test_gs1.py``. Lot identifiers and their canonical URIs are :mod:`provenance.core.gs1`.
"""

from __future__ import annotations

import calendar
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

from provenance.barcodes.dictionary import (
    AI_TABLE,
    SYNTAX_DICTIONARY_RELEASE,
    AIDefinition,
    GS1SyntaxError,
)
from provenance.core.errors import ValidationError
from provenance.core.gs1 import (
    _CSET82_HUMAN,
    _DIGITS,
    _HEX_DIGITS,
    AI_BATCH_LOT,
    AI_CPV,
    AI_EXPIRY,
    AI_GTIN,
    AI_SERIAL,
    CSET82,
    DEFAULT_BASE,
    GTIN14_LENGTH,
    LotId,
    _require_str,
    _split_uri,
    _stem,
    check_digit,
    normalize_gtin,
    percent_decode,
    percent_encode,
)

__all__ = [
    "MAX_AIS",
    "SUPPORTED_AIS",
    "UNSUPPORTED_LINTERS",
    "DigitalLink",
    "check_pair",
    "expiry",
    "format_element_string",
    "is_supported",
    "parse_digital_link",
    "parse_element_string",
    "validate_ai_value",
]

MAX_AIS = 64
"""Most AIs one message may carry: the GS1 Barcode Syntax Engine's limit, mirrored."""


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


def is_supported(definition: AIDefinition) -> bool:
    """Whether every content rule of the AI is implemented here."""
    return all(name in _LINTERS for name in definition.linters)


SUPPORTED_AIS: frozenset[str] = frozenset(ai for ai, d in AI_TABLE.items() if is_supported(d))
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
    if not is_supported(definition):
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
