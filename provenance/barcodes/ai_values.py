"""One GS1 AI value checked as the GS1 Barcode Syntax Engine checks it.

:func:`validate_ai_value` applies an AI's length, character set and every content rule
("linter") that :mod:`provenance.barcodes.dictionary` (:data:`AI_TABLE`) names for it: check
digits, :func:`check_pair`, dates, times, coordinates and the rest. Every AI whose content
rules are all implemented here is supported — see :data:`SUPPORTED_AIS`; the AIs whose
values must be checked against external code lists (ISO 3166 countries, ISO 4217
currencies, IBAN, package types, coupons, :data:`UNSUPPORTED_LINTERS`) are refused with a
message saying so rather than accepted unchecked. Pure: strings in, values out,
:class:`~provenance.barcodes.dictionary.GS1SyntaxError` on bad input.
"""

from __future__ import annotations

import calendar
import re
import string
from collections.abc import Callable, Iterable
from types import MappingProxyType

from provenance.barcodes.dictionary import (
    AI_TABLE,
    SYNTAX_DICTIONARY_RELEASE,
    AIDefinition,
    GS1SyntaxError,
)
from provenance.core.gs1 import (
    _CSET82_HUMAN,
    _DIGITS,
    _HEX_DIGITS,
    CSET82,
    _require_str,
    check_digit,
)

__all__ = [
    "SUPPORTED_AIS",
    "UNSUPPORTED_LINTERS",
    "check_pair",
    "is_supported",
    "validate_ai_value",
]


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
