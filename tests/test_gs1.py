"""Tests for provenance.core.gs1 (check digits, lots and lot URIs),
provenance.barcodes.dictionary (the GS1 Barcode Syntax Dictionary) and
provenance.barcodes.ai_values, .element_strings and .digital_link (AI values, element
strings and GS1 Digital Link URIs).

Known-answer vectors come from the GS1 Barcode Syntax Engine (derived JSON in
../shared/conformance/gs1-syntax-engine, vendored in tests/vectors/gs1-syntax-engine) and the
dictionary from ../shared/conformance/gs1-syntax-dictionary (vendored likewise). A vector the
module cannot express is skipped with the reason, never silently dropped; the only reasons are
engine options we do not offer (AIs outside the dictionary, convenience alphas) and AIs whose
rules need code lists we do not carry (ai_values.UNSUPPORTED_LINTERS).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.paths import SHARED, VENDORED, conformance

from provenance.barcodes import ai_values, digital_link, element_strings
from provenance.barcodes import dictionary as gs1_dictionary
from provenance.core import gs1
from provenance.core.errors import ValidationError

ENGINE = "gs1-syntax-engine"
GTIN = "09520123456788"  # GS1's example GTIN, used throughout the DL standard
CANONICAL = "https://id.gs1.org/01/09520123456788/10/ABC123"


def _vectors(name: str) -> list[dict[str, Any]]:
    """The vectors of one engine file, or [] when no copy exists (the parametrised test is
    then reported as skipped with "got empty parameter set")."""
    try:
        path = conformance(f"{ENGINE}/{name}")
    except pytest.skip.Exception:
        return []
    return json.loads(path.read_text(encoding="utf-8"))["vectors"]


def _params(name: str, keep: Callable[[dict[str, Any]], bool] = lambda v: True) -> list[Any]:
    return [
        pytest.param(v, id=v["origin"].removeprefix("src/c-lib/"))
        for v in _vectors(name)
        if keep(v)
    ]


_BRACKETED = re.compile(r"\((\d{2,4})\)((?:\\\(|[^(])*)")


def _ai_pairs(bracketed: str) -> list[tuple[str, str]]:
    """(AI, value) pairs of a bracketed element string ("\\(" is a literal "(")."""
    pairs = [(m[1], m[2]) for m in _BRACKETED.finditer(bracketed)]
    assert "".join(f"({ai}){value}" for ai, value in pairs) == bracketed
    return [(ai, value.replace("\\(", "(")) for ai, value in pairs]


def _rejects(call: Any, *args: Any, **kwargs: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        call(*args, **kwargs)
    return info.value


# --- check digits: check_digits.json ------------------------------------------------------


@pytest.mark.parametrize("vector", _params("check_digits.json"))
def test_check_digit_vector(vector: dict[str, Any]) -> None:
    if vector["algorithm"] != "gs1_mod10":
        _check_pair_vector(vector)
        return
    code: str = vector["input"]
    is_gtin_length = len(code) in gs1.GTIN_LENGTHS
    if vector["valid"]:
        assert gs1.check_digit(code[:-1]) == code[-1]
        assert gs1.validate_check_digit(code) == code
        if is_gtin_length:
            assert gs1.normalize_gtin(code) == code.zfill(14)
        else:  # the SSCC vector: 18 digits, not a GTIN
            assert "a GTIN has 8, 12, 13 or 14 digits" in _rejects(gs1.normalize_gtin, code).rule
        return
    error = _rejects(gs1.validate_check_digit, code)
    marked = vector["error_markup"].index("*")  # the engine wraps the offending characters
    if vector["error"] == "GS1_LINTER_TOO_SHORT_FOR_CHECK_DIGIT":
        expected_rule = "is empty"
    elif vector["error"] == "GS1_LINTER_NON_DIGIT_CHARACTER":
        expected_rule = f"found {code[marked]!r} at position {marked + 1}"
    else:
        assert vector["error"] == "GS1_LINTER_INCORRECT_CHECK_DIGIT"
        assert marked == len(code) - 1
        expected_rule = f"check digit is {code[-1]}, expected {gs1.check_digit(code[:-1])}"
    assert expected_rule in error.rule
    assert error.field == "code"
    if is_gtin_length or not code:
        assert expected_rule in _rejects(gs1.normalize_gtin, code).rule


def _check_pair_vector(vector: dict[str, Any]) -> None:
    """AI (8013)/(8014) alphanumeric check pair: check_pair() computes it; the (8013) GMN
    check runs it as the csumalpha linter with the engine's error codes."""
    code: str = vector["input"]
    if vector["valid"]:
        assert ai_values.check_pair(code[:-2]) == code[-2:]
        return
    error = vector["error"]
    if error == "GS1_LINTER_TOO_SHORT_FOR_CHECK_PAIR":
        assert len(code) < 2
    elif error == "GS1_LINTER_INCORRECT_CHECK_PAIR":
        assert ai_values.check_pair(code[:-2]) != code[-2:]
    else:  # the body itself is refused: too long, or a character outside CSET 82
        assert _rejects(ai_values.check_pair, code[:-2]).code == error
    assert ai_values._LINTERS["csumalpha"](code, 0)[0] == error


def test_check_pair_known_values() -> None:
    assert ai_values.check_pair("1987654Ad4X4bL5ttr2310c") == "2K"
    assert ai_values.check_pair("") == "22"
    assert "GS1 AI encodable character set 82" in _rejects(ai_values.check_pair, "AB C").rule


def test_check_digit_known_values() -> None:
    assert gs1.check_digit("9501234567890") == "3"
    assert gs1.check_digit("952012345678") == "8"
    assert gs1.check_digit("0") == "0"
    assert gs1.check_digit("1") == "7"  # weight 3: 3 + 7 = 10


@pytest.mark.parametrize("body", ["", "12 4", "１２３", "12a", "٣٤٥"])
def test_check_digit_rejects_non_digits(body: str) -> None:
    assert _rejects(gs1.check_digit, body).field == "body"


# --- GTIN ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gtin", "expected"),
    [
        ("02345673", "00000002345673"),  # GTIN-8
        ("416000336108", "00416000336108"),  # GTIN-12
        ("9520123456788", GTIN),  # GTIN-13
        (GTIN, GTIN),  # GTIN-14
    ],
)
def test_normalize_gtin_pads_to_14(gtin: str, expected: str) -> None:
    assert gs1.normalize_gtin(gtin) == expected


def test_normalize_gtin_bad_check_digit_message() -> None:
    error = _rejects(gs1.normalize_gtin, "09520123456789")
    assert error.field == "gtin"
    assert error.rule == "check digit is 9, expected 8 — re-read the code from the label"


@pytest.mark.parametrize(
    ("gtin", "fragment"),
    [
        ("123456789012312", "has 15 digits; a GTIN has 8, 12, 13 or 14 digits"),
        ("1234567", "has 7 digits"),
        ("123456789", "has 9 digits"),
        ("12345678901", "has 11 digits"),
        ("", "is empty"),
        ("0952012345678A", "found 'A' at position 14"),
        ("9520-12345678-8", "found '-' at position 5"),
        (" 9520123456788", "found ' ' at position 1"),
        ("９５２０１２３４５６７８８", "found '９' at position 1"),  # full-width digits
        ("٩٥٢٠١٢٣٤٥٦٧٨٨", "only the digits 0-9"),  # Arabic-Indic digits pass str.isdigit()
    ],
)
def test_normalize_gtin_rejections(gtin: str, fragment: str) -> None:
    error = _rejects(gs1.normalize_gtin, gtin, field="item.gtin")
    assert error.field == "item.gtin"
    assert fragment in error.rule


def test_normalize_gtin_rejects_non_strings() -> None:
    assert "must be a string" in _rejects(gs1.normalize_gtin, 9520123456788).rule


# --- batch/lot and CSET 82 ----------------------------------------------------------------


def test_cset82_is_the_set_the_check_pair_vectors_enumerate() -> None:
    """The upstream check-pair test walks all of CSET 82 (dl.c 215-220), so the characters
    of the valid check-pair inputs are exactly the 82 characters."""
    vectors = _vectors("check_digits.json")
    if not vectors:
        pytest.skip("check_digits.json not found")
    seen = set().union(
        *(
            v["input"]
            for v in vectors
            if v["algorithm"] == "gs1_alphanumeric_check_pair" and v["valid"]
        )
    )
    assert seen == gs1.CSET82
    assert len(gs1.CSET82) == 82


def test_validate_lot_accepts_every_cset82_character_and_20_characters() -> None:
    for char in gs1.CSET82:
        assert gs1.validate_lot(char) == char
    assert gs1.validate_lot("A" * 20) == "A" * 20
    assert gs1.validate_lot("!\"%&'()*+,-./:;<=>?_") == "!\"%&'()*+,-./:;<=>?_"


@pytest.mark.parametrize(
    ("lot", "fragment"),
    [
        ("", "is empty; a batch/lot number (AI 10) has 1 to 20 characters"),
        ("A" * 21, "has 21 characters; a batch/lot number (AI 10) has at most 20"),
        ("AB C", "character ' ' at position 3 is not allowed"),
        ("AB~C", "character '~' at position 3"),
        ("#1", "character '#' at position 1"),
        ("LOT^1", "character '^'"),  # conflated with FNC1 by the engine
        ("é", "character 'é'"),
        ("A\x00", "character '\\x00'"),
        ("A\tB", "GS1 AI encodable character set 82"),
    ],
)
def test_validate_lot_rejections(lot: str, fragment: str) -> None:
    error = _rejects(gs1.validate_lot, lot)
    assert error.field == "lot"
    assert fragment in error.rule


def _valid_with_gtin_or_lot(vector: dict[str, Any]) -> bool:
    return vector["valid"] and any(ai in ("01", "10") for ai, _ in vector["expected_ai_pairs"])


@pytest.mark.parametrize("vector", _params("ai_element_string_parse.json", _valid_with_gtin_or_lot))
def test_ai_element_string_values(vector: dict[str, Any]) -> None:
    """Every (01) and (10) value the engine accepts, we accept unchanged. (The invalid vectors
    in this file test element-string syntax: brackets, AI lookup, empty values.)"""
    for ai, value in vector["expected_ai_pairs"]:
        if ai not in ("01", "10"):
            continue
        if ai == "01":
            assert gs1.normalize_gtin(value) == value
        else:
            assert gs1.validate_lot(value) == value


def _linter_skip_reason(vector: dict[str, Any]) -> str | None:
    missing = sorted(
        {
            name
            for ai, _ in _ai_pairs(vector["input"])
            for name in gs1_dictionary.AI_TABLE[ai].linters
            if name in ai_values.UNSUPPORTED_LINTERS
        }
    )
    return f"needs linter(s) {missing}, not implemented (AI refused)" if missing else None


@pytest.mark.parametrize("vector", _params("ai_linters.json"))
def test_ai_linter_vector(vector: dict[str, Any]) -> None:
    """One element string per content rule: accepted, or refused with the engine's error
    code. Vectors for the rules in UNSUPPORTED_LINTERS are skipped (those AIs are refused)."""
    reason = _linter_skip_reason(vector)
    if reason:
        pytest.skip(reason)
    text: str = vector["input"]
    result = vector["expected_linter_result"]
    if result == "GS1_LINTER_OK":
        assert list(
            element_strings.parse_element_string(text, check_associations=False)
        ) == _ai_pairs(text)
        return
    error = _rejects(element_strings.parse_element_string, text, check_associations=False)
    assert error.code == result, error.rule
    assert error.rule.startswith(f"({error.ai}) {gs1_dictionary.AI_TABLE[error.ai].title} ")
    value = dict(_ai_pairs(text))[error.ai]
    assert _rejects(ai_values.validate_ai_value, error.ai, value).code == result
    ours = {  # the lot functions agree with the dictionary rules
        "GS1_LINTER_INCORRECT_CHECK_DIGIT": "check digit is",
        "GS1_LINTER_INVALID_CSET82_CHARACTER": "is not allowed",
    }
    if error.ai in ("01", "10") and result in ours:
        check = gs1.normalize_gtin if error.ai == "01" else gs1.validate_lot
        assert ours[result] in _rejects(check, value).rule


def test_table_matches_syntax_dictionary() -> None:
    """The hand-written AI facts agree with the GS1 Barcode Syntax Dictionary."""
    text = conformance("gs1-syntax-dictionary/gs1-syntax-dictionary.txt").read_text("utf-8")
    entries = {
        line.split()[0]: line.split("#")[0].split()
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert "N14,csum,gcppos2" in entries["01"]
    assert "dlpkey=22,10,21|235" in entries["01"]
    assert entries["01"][1] == "*?"  # pre-defined length, DL data attribute
    assert ",".join(gs1.GTIN_QUALIFIERS) == "22,10,21"
    for ai in (gs1.AI_BATCH_LOT, gs1.AI_SERIAL, gs1.AI_CPV):
        assert f"X..{gs1.QUALIFIER_MAX_LENGTH}" in entries[ai]


# --- percent-encoding: dl_uri_percent_encoding.json ---------------------------------------


@pytest.mark.parametrize("vector", _params("dl_uri_percent_encoding.json"))
def test_percent_encoding_vector(vector: dict[str, Any]) -> None:
    for in_query, key in ((False, "expected_path_component"), (True, "expected_query_component")):
        if vector["direction"] == "encode":
            assert gs1.percent_encode(vector["input"], in_query=in_query) == vector[key]
        elif vector.get(f"{key}_bytes_hex") is not None:
            decoded = gs1.percent_decode(vector["input"], in_query=in_query)
            assert decoded.encode("utf-8", "surrogateescape").hex() == vector[f"{key}_bytes_hex"]
        elif vector[key] is None:
            assert "NUL" in _rejects(gs1.percent_decode, vector["input"], in_query=in_query).rule
        else:
            assert gs1.percent_decode(vector["input"], in_query=in_query) == vector[key]


def test_percent_encode_non_ascii_is_utf8_with_upper_case_hex() -> None:
    assert gs1.percent_encode("é~") == "%C3%A9~"
    assert gs1.percent_decode("%c3%a9") == "é"


@given(st.text().filter(lambda s: "\x00" not in s), st.booleans())
def test_percent_round_trip(value: str, in_query: bool) -> None:
    encoded = gs1.percent_encode(value, in_query=in_query)
    assert re.fullmatch(r"(?:[A-Za-z0-9._~+-]|%[0-9A-F]{2})*", encoded)
    assert gs1.percent_decode(encoded, in_query=in_query) == value


# --- URI generation: dl_uri_generate.json -------------------------------------------------

# AIs gtin_uri can place in the path, and data attributes that only ever go in the query.
# For vectors with the latter we check the path part: the engine writes path and query
# independently (primary key and qualifiers in the path, everything else after "?").
# DigitalLink.to_uri is tested against every vector below (test_digital_link_generate_vector).
_PATH_AIS = {"01": None, "22": "cpv", "10": "lot", "21": "serial"}
_QUERY_ONLY_AIS = {"95", "98", "99"}


def _gtin_uri_can_express(vector: dict[str, Any]) -> bool:
    if vector.get("options") or vector["ai_data"] is None or not vector["valid"]:
        return False
    ais = {ai for ai, _ in _ai_pairs(vector["ai_data"])}
    return "01" in ais and ais <= set(_PATH_AIS) | _QUERY_ONLY_AIS


@pytest.mark.parametrize("vector", _params("dl_uri_generate.json", _gtin_uri_can_express))
def test_dl_generate_vector(vector: dict[str, Any]) -> None:
    """gtin_uri (the lot layer) writes the engine's path for the vectors it can express."""
    pairs = list(dict.fromkeys(_ai_pairs(vector["ai_data"])))  # the engine collapses repeats
    assert len({ai for ai, _ in pairs}) == len(pairs), "conflicting repeated AI values"
    values = dict(pairs)
    kwargs = {_PATH_AIS[ai]: value for ai, value in pairs if _PATH_AIS.get(ai)}
    base = gs1.DEFAULT_BASE if vector["stem"] is None else vector["stem"]
    expected: str = vector["expected"]
    path_part, _, query = expected.partition("?")
    query_ais = [ai for ai in values if ai in _QUERY_ONLY_AIS]
    assert [p.split("=")[0] for p in query.split("&") if p] == query_ais
    assert gs1.gtin_uri(values["01"], base=base, **kwargs) == path_part
    if set(kwargs) == {"lot"}:
        assert gs1.lot_uri(values["01"], kwargs["lot"], base) == path_part


def test_lot_uri_examples() -> None:
    assert gs1.lot_uri("9520123456788", "ABC123") == CANONICAL
    assert gs1.lot_uri(GTIN, "ABC+123", "https://example.com/") == (
        "https://example.com/01/09520123456788/10/ABC%2B123"
    )
    assert gs1.lot_uri(GTIN, "A/B%C", "") == "/01/09520123456788/10/A%2FB%25C"
    assert gs1.lot_uri(GTIN, "x", "https://example.com/dl/v1") == (
        "https://example.com/dl/v1/01/09520123456788/10/x"
    )
    assert gs1.gtin_uri(GTIN, serial="S1", lot="L1", cpv="V1") == (
        "https://id.gs1.org/01/09520123456788/22/V1/10/L1/21/S1"
    )


@pytest.mark.parametrize(
    ("base", "fragment"),
    [
        ("ftp://example.com", "scheme 'ftp' is not allowed"),
        ("HtTpS://example.com", "mixes upper and lower case"),
        ("example.com", "is not an absolute URI"),
        ("https://", "has no host name"),
        ("https://example.com?x=1", "must not contain a query"),
        ("https://example.com/#top", "must not contain a query ('?') or fragment"),
        ("https://example.com//dl", "empty path segment"),
        ("https://exa mple.com", "character ' ' at position 12"),
        ("https://me@example.com", "user information"),
    ],
)
def test_lot_uri_rejects_bad_base(base: str, fragment: str) -> None:
    error = _rejects(gs1.lot_uri, GTIN, "ABC", base)
    assert error.field == "base"
    assert fragment in error.rule


def test_lot_uri_validates_gtin_and_lot() -> None:
    assert _rejects(gs1.lot_uri, "09520123456789", "A").field == "gtin"
    assert _rejects(gs1.lot_uri, GTIN, "").field == "lot"
    assert _rejects(gs1.gtin_uri, GTIN, serial="A B").field == "serial"


# --- URI parsing --------------------------------------------------------------------------


@pytest.mark.parametrize("vector", _params("dl_uri_parse.json"))
def test_dl_parse_vector(vector: dict[str, Any]) -> None:
    """The engine's (01)+(10) URIs parse to its AI values; every other URI, valid or not, is
    refused: parse_lot_uri never mistakes another identifier for a lot."""
    uri: str = vector["uri"]
    pairs = vector.get("expected_ai_pairs") or []
    if vector["valid"] and not vector.get("options") and [a for a, _ in pairs] == ["01", "10"]:
        expected = (pairs[0][1], pairs[1][1])
        assert gs1.parse_lot_uri(uri, require_canonical_base=False) == expected
        if uri == gs1.lot_uri(*expected):
            assert gs1.parse_lot_uri(uri) == expected
        else:
            _rejects(gs1.parse_lot_uri, uri)
        return
    for strict in (True, False):
        _rejects(gs1.parse_lot_uri, uri, require_canonical_base=strict)


def _is_lot_uri_conversion(vector: dict[str, Any]) -> bool:
    if not vector["input"].lower().startswith("http"):
        return False
    bracketed = vector["expected_bracketed"]
    return bracketed is None or [ai for ai, _ in _ai_pairs(bracketed)] == ["01", "10"]


@pytest.mark.parametrize(
    "vector", _params("element_string_conversions.json", _is_lot_uri_conversion)
)
def test_element_string_conversion_vector(vector: dict[str, Any]) -> None:
    """The conversions whose input is a (01)+(10) Digital Link URI or a refused URI, through
    the lot layer (all conversions: test_element_string_conversion_vector_full)."""
    if vector["expected_bracketed"] is None:
        for strict in (True, False):
            _rejects(gs1.parse_lot_uri, vector["input"], require_canonical_base=strict)
        return
    pairs = _ai_pairs(vector["expected_bracketed"])
    expected = (pairs[0][1], pairs[1][1])
    base = vector["input"].split("/01/")[0]
    assert gs1.parse_lot_uri(vector["input"], require_canonical_base=False) == expected
    assert gs1.parse_lot_uri(vector["input"], base=base) == expected
    assert gs1.lot_uri(*expected, base=base) == vector["input"]


def test_parse_canonical() -> None:
    assert gs1.parse_lot_uri(CANONICAL) == (GTIN, "ABC123")
    assert gs1.parse_lot_uri("https://id.gs1.org/01/09520123456788/10/A%2FB%25C") == (
        GTIN,
        "A/B%C",
    )


@pytest.mark.parametrize(
    ("uri", "fragment", "canonical"),
    [
        (
            "http://id.gs1.org/01/09520123456788/10/ABC123",
            "it uses http:// instead of https://",
            "ABC123",
        ),
        ("https://id.gs1.org/01/09520123456788/10/ABC123/", "it ends with '/'", "ABC123"),
        ("https://id.gs1.org/01/9520123456788/10/ABC123", "not as the 14-digit GTIN", "ABC123"),
        (
            "https://id.gs1.org/01/09520123456788/10/ABC123?17=250101",
            "has a query string",
            "ABC123",
        ),
        ("https://id.gs1.org/01/09520123456788/10/ABC123?", "has a query string", "ABC123"),
        ("https://id.gs1.org/01/09520123456788/10/ABC123#top", "has a fragment", "ABC123"),
        (
            "https://example.com/01/09520123456788/10/ABC123",
            "its base is 'https://example.com'",
            "ABC123",
        ),
        ("https://id.gs1.org/dl/01/09520123456788/10/ABC123", "its base is", "ABC123"),
        (
            "HTTPS://id.gs1.org/01/09520123456788/10/ABC123",
            "its base is 'HTTPS://id.gs1.org'",
            "ABC123",
        ),
        ("https://ID.GS1.ORG/01/09520123456788/10/ABC123", "its base is", "ABC123"),
        ("https://id.gs1.org:443/01/09520123456788/10/ABC123", "its base is", "ABC123"),
        ("https://id.gs1.org/01/09520123456788/10/ABC%3d123", "upper-case hex", "ABC%3D123"),
        ("https://id.gs1.org/01/09520123456788/10/ABC%41123", "not 'ABCA123'", "ABCA123"),
        ("https://id.gs1.org/01/09520123456788/10/ABC+123", "'+' is %2B", "ABC%2B123"),
        ("https://id.gs1.org/01/09520123456788/10/ABC%2", "not 'ABC%252'", "ABC%252"),
        ("https://id.gs1.org/01/%30%39520123456788/10/ABC123", "the GTIN is written", "ABC123"),
    ],
)
def test_parse_rejects_non_canonical(uri: str, fragment: str, canonical: str) -> None:
    """The error says what differs and ends with the canonical form."""
    error = _rejects(gs1.parse_lot_uri, uri)
    assert error.field == "uri"
    assert error.rule.startswith("is not the canonical lot URI: ")
    assert fragment in error.rule
    assert error.rule.endswith(f". The canonical form is {CANONICAL[:-6]}{canonical}")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://id.gs1.org/01/09520123456788/10/ABC123", (GTIN, "ABC123")),
        ("HTTPS://example.com/dl/01/9520123456788/10/ABC%3d1", (GTIN, "ABC=1")),
        ("https://a/01/02345673/10/X+Y", ("00000002345673", "X+Y")),
        ("https://a/01/416000336108/10/x", ("00416000336108", "x")),
        ("https://a/01/09520123456788/10/x#frag", (GTIN, "x")),
        ("https://a/01/09520123456788/10/x?", (GTIN, "x")),
        ("https://[2001:db8::1]:8443/01/09520123456788/10/x", (GTIN, "x")),
        ("https://a/10/z/01/09520123456788/10/x", (GTIN, "x")),  # stem looks like AIs
        ("https://a/01/09520123456788/10/ABC%2", (GTIN, "ABC%2")),  # engine: literal "%2"
    ],
)
def test_parse_lenient(uri: str, expected: tuple[str, str]) -> None:
    assert gs1.parse_lot_uri(uri, require_canonical_base=False) == expected


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("https://a/01/09520123456788/10/x/", "must not end with '/'"),
        ("https://a/01/09520123456788/10/x?17=250101", "a lot URI carries no data attributes"),
        ("https://a/01/09520123456789/10/x", "GTIN segment '09520123456789': check digit is 9"),
        ("https://a/01/095201234567888/10/x", "has 15 digits"),
        ("https://a/01/0952012345678A/10/x", "found 'A'"),
        ("https://a/01/09520123456788/10/" + "A" * 21, "has 21 characters"),
        ("https://a/01/09520123456788/10/A%20B", "character ' ' at position 2"),
        ("https://a/01/09520123456788/10/A%7EB", "character '~'"),
        ("https://a/01/09520123456788/10/A%C3%A9", "character 'é'"),
        ("https://a/01/09520123456788/10/A%00B", "NUL"),
        ("https://a/01/09520123456788/10/A B", "percent-encode it"),
        ("https://a/01/09520123456788/10/", "the path must end in /01/{GTIN}/10/{lot}"),
        ("https://a/01/09520123456788", "the path must end in /01/{GTIN}/10/{lot}"),
        ("https://a/01/09520123456788/10/x/21/1", "serial number (/21/)"),
        ("https://a/01/09520123456788/22/V/10/x/21/1", "serial number (/21/)"),
        ("https://a/10/x/01/09520123456788", "the path must end in"),
        ("https://a/01//09520123456788/10/x", "empty path segment"),
        ("https://evil.example@id.gs1.org/01/09520123456788/10/x", "user information"),
        ("ftp://a/01/09520123456788/10/x", "scheme 'ftp'"),
        ("HtTp://a/01/09520123456788/10/x", "mixes upper and lower case"),
        ("/01/09520123456788/10/x", "is not an absolute URI"),
        ("", "is empty"),
    ],
)
def test_parse_rejections_in_both_modes(uri: str, fragment: str) -> None:
    lenient = _rejects(gs1.parse_lot_uri, uri, require_canonical_base=False)
    assert fragment in lenient.rule
    assert lenient.field == "uri"
    _rejects(gs1.parse_lot_uri, uri)


def test_parse_with_own_canonical_base() -> None:
    base = "https://dl.example.com/"
    uri = gs1.lot_uri(GTIN, "L1", base)
    assert uri == "https://dl.example.com/01/09520123456788/10/L1"
    assert gs1.parse_lot_uri(uri, base=base) == (GTIN, "L1")
    assert "its base is" in _rejects(gs1.parse_lot_uri, gs1.lot_uri(GTIN, "L1"), base=base).rule


def test_relative_references() -> None:
    """base="" is the engine's empty stem: relative references, accepted only when asked for."""
    relative = "/01/09520123456788/10/x"
    assert gs1.lot_uri("9520123456788", "x", "") == relative
    assert gs1.parse_lot_uri(relative, base="") == (GTIN, "x")
    assert gs1.parse_lot_uri("/dl/01/9520123456788/10/x", False, base="") == (GTIN, "x")
    assert "is not an absolute URI" in _rejects(gs1.parse_lot_uri, relative).rule
    assert "is not an absolute URI" in _rejects(gs1.parse_lot_uri, relative, False).rule
    assert (
        "its base is 'https://a'"
        in _rejects(gs1.parse_lot_uri, "https://a" + relative, base="").rule
    )
    assert "is not an absolute URI" in _rejects(gs1.parse_lot_uri, "//a" + relative, base="").rule


def test_every_single_character_edit_of_a_canonical_uri_is_caught() -> None:
    """The canonical form is unique: any edit is refused or names a different lot."""
    uri = "https://id.gs1.org/01/09520123456788/10/A%2FB"
    original = gs1.parse_lot_uri(uri)
    edits = {uri[:i] + uri[i + 1 :] for i in range(len(uri))}
    for i in range(len(uri)):
        edits |= {uri[:i] + c + uri[i + 1 :] for c in "0A9a/%+?#fF"}
        edits.add(uri[:i] + "0" + uri[i:])
    edits.discard(uri)
    for edited in sorted(edits):
        try:
            parsed = gs1.parse_lot_uri(edited)
        except ValidationError:
            continue
        assert parsed != original, edited


# --- LotId --------------------------------------------------------------------------------


def test_lot_id() -> None:
    lot = gs1.LotId("9520123456788", "ABC123")
    assert lot.gtin == GTIN
    assert lot == gs1.LotId(GTIN, "ABC123")
    assert lot.uri == CANONICAL
    assert gs1.LotId.parse(CANONICAL) == lot
    assert gs1.LotId.parse("http://a/01/9520123456788/10/ABC123", False) == lot
    with pytest.raises(AttributeError):
        lot.lot = "other"  # type: ignore[misc]
    assert _rejects(gs1.LotId, "9520123456789", "A").field == "gtin"
    assert _rejects(gs1.LotId, GTIN, "A" * 21).field == "lot"
    assert _rejects(gs1.LotId.parse, CANONICAL + "/").field == "uri"


# --- round trips --------------------------------------------------------------------------


@st.composite
def gtins(draw: st.DrawFn) -> str:
    length = draw(st.sampled_from(gs1.GTIN_LENGTHS))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    return body + gs1.check_digit(body)


lots = st.text("".join(sorted(gs1.CSET82)), min_size=1, max_size=20)
bases = st.sampled_from(
    [
        gs1.DEFAULT_BASE,
        "https://example.com/",
        "http://a/dl/v1",
        "HTTPS://192.0.2.1:8443",
        "https://[2001:db8::1]/01/x",
        "",
        "/dl/",
    ]
)


@given(gtins(), lots)
def test_round_trip_canonical(gtin: str, lot: str) -> None:
    uri = gs1.lot_uri(gtin, lot)
    assert gs1.parse_lot_uri(uri) == (gtin.zfill(14), lot)
    assert gs1.LotId.parse(uri) == gs1.LotId(gtin, lot)
    assert gs1.LotId(gtin, lot).uri == uri


@given(gtins(), lots, bases)
def test_round_trip_any_base(gtin: str, lot: str, base: str) -> None:
    uri = gs1.lot_uri(gtin, lot, base)
    assert gs1.parse_lot_uri(uri, False, base=base) == (gtin.zfill(14), lot)
    assert gs1.parse_lot_uri(uri, base=base) == (gtin.zfill(14), lot)


@given(gtins())
def test_normalize_gtin_is_idempotent(gtin: str) -> None:
    gtin14 = gs1.normalize_gtin(gtin)
    assert len(gtin14) == 14
    assert gs1.normalize_gtin(gtin14) == gtin14
    assert gtin14.lstrip("0") == gtin.lstrip("0")


# --- vendored copies ----------------------------------------------------------------------


def test_vendored_vectors_are_unedited() -> None:
    folder = VENDORED / ENGINE
    listed = re.findall(r"^([0-9a-f]{64})  (\S+)$", (folder / "ATTRIBUTION.md").read_text(), re.M)
    assert {name for _, name in listed} == {p.name for p in folder.glob("*.json")}
    for digest, name in listed:
        data = (folder / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
        shared = SHARED / ENGINE / name
        if shared.exists():
            assert shared.read_bytes() == data, name


# --- GS1 Barcode Syntax Dictionary --------------------------------------------------------

DICTIONARY = "gs1-syntax-dictionary"


def _dictionary_text() -> str:
    return conformance(f"{DICTIONARY}/gs1-syntax-dictionary.txt").read_text(encoding="utf-8")


def test_vendored_dictionary_is_unedited() -> None:
    folder = VENDORED / DICTIONARY
    listed = re.findall(r"^([0-9a-f]{64})  (\S+)$", (folder / "ATTRIBUTION.md").read_text(), re.M)
    assert [name for _, name in listed] == ["gs1-syntax-dictionary.txt"]
    assert {p.name for p in folder.iterdir()} == {"ATTRIBUTION.md", "gs1-syntax-dictionary.txt"}
    digest, name = listed[0]
    data = (folder / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest
    shared = SHARED / DICTIONARY / name
    if shared.exists():
        assert shared.read_bytes() == data


def test_embedded_dictionary_is_the_release() -> None:
    """provenance.barcodes.dictionary embeds the dictionary's AI entries (blanks collapsed); both
    must say the same, entry for entry, and parse to the same table."""
    text = _dictionary_text()
    assert f"# Release: {gs1_dictionary.SYNTAX_DICTIONARY_RELEASE}\n" in text
    entries = [
        " ".join(line.split())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert list(gs1_dictionary._DICTIONARY_LINES) == entries, (
        "regenerate _DICTIONARY_LINES from the file"
    )
    assert gs1_dictionary.parse_syntax_dictionary(text) == dict(gs1_dictionary.AI_TABLE)


def test_dictionary_entries() -> None:
    gtin = gs1_dictionary.AI_TABLE["01"]
    assert (gtin.title, gtin.fixed_length, gtin.dl_attribute) == ("GTIN", True, True)
    assert gtin.components == (gs1_dictionary.AIComponent("N", 14, 14, False, ("csum", "gcppos2")),)
    assert gtin.excludes == ("255", "37")
    assert gtin.dl_qualifiers == (("22", "10", "21"), ("235",))
    assert gtin.label == "(01) GTIN" and gtin.primary_key and ai_values.is_supported(gtin)
    gdti = gs1_dictionary.AI_TABLE["253"]
    assert gdti.spec == "N13 [X..17]" and (gdti.min_length, gdti.max_length) == (13, 30)
    assert gdti.dl_qualifiers == ((),)
    assert [gs1_dictionary.AI_TABLE[ai].title for ai in ("3100", "3105")] == ["NET WEIGHT (kg)"] * 2
    assert "3106" not in gs1_dictionary.AI_TABLE
    assert gs1_dictionary.AI_TABLE["91"].components == gs1_dictionary.AI_TABLE["99"].components
    assert gs1_dictionary.AI_TABLE["7004"].requires == ((("01", "10"),),)
    assert gs1_dictionary.AI_TABLE["250"].requires == ((("01",), ("8006",)), (("21",),))
    assert (
        gs1_dictionary.AI_TABLE["21"].dl_attribute is False
        and gs1_dictionary.AI_TABLE["10"].dl_attribute
    )
    assert gs1_dictionary.AI_TABLE["17"].title == "USE BY or EXPIRY"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("01 *! N14 # X", "unknown flag"),
        ("01 * N14 foo=1 # X", "unknown attribute 'foo=1'"),
        ("01 * # X", "no format specification"),
        ("A1 * N14 # X", "does not start with an AI"),
    ],
)
def test_parse_syntax_dictionary_refuses_what_it_does_not_know(line: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        gs1_dictionary.parse_syntax_dictionary(f"# header\n\n{line}\n")


def test_supported_ais() -> None:
    """Everything but the AIs whose values need an external code list or coupon rules."""
    unsupported = set(gs1_dictionary.AI_TABLE) - ai_values.SUPPORTED_AIS
    expected = {f"39{n}" for n in range(10, 20)} | {f"39{n}" for n in range(30, 40)}
    expected |= {"421", "422", "423", "424", "425", "426", "4307", "4317", "7041", "8007"}
    expected |= {f"70{n}" for n in range(30, 40)} | {"8110", "8112"}
    assert unsupported == expected
    assert len(gs1_dictionary.AI_TABLE) == 541 and len(ai_values.SUPPORTED_AIS) == 499
    for ai in unsupported:
        assert set(gs1_dictionary.AI_TABLE[ai].linters) & set(ai_values.UNSUPPORTED_LINTERS)
    assert {name for d in gs1_dictionary.AI_TABLE.values() for name in d.linters} <= set(
        ai_values._LINTERS
    ) | set(ai_values.UNSUPPORTED_LINTERS)
    error = _rejects(ai_values.validate_ai_value, "422", "528")
    assert error.code == "UNSUPPORTED_AI"
    assert error.rule == (
        "(422) ORIGIN is not supported here: its values are checked against the ISO 3166"
        " numeric country code list, which this module does not carry"
    )
    assert _rejects(ai_values.validate_ai_value, "89", "X").code == "UNKNOWN_AI"


def test_dl_key_qualifier_paths() -> None:
    paths = digital_link._DL_PATHS["01"]
    assert ("01",) in paths and ("01", "22", "10", "21") in paths and ("01", "235") in paths
    assert ("01", "10", "22") not in paths and ("01", "10", "235") not in paths
    assert [" ".join(p) for p in paths] == sorted(" ".join(p) for p in paths)
    assert ("8006", "22", "10", "21") in digital_link._DL_PATHS["8006"]
    assert digital_link._DL_PATHS["414"] == (("414",), ("414", "254"), ("414", "7040"))
    assert set(digital_link._DL_PATHS) == {
        ai for ai, d in gs1_dictionary.AI_TABLE.items() if d.primary_key
    }


# --- AI values: linters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ai", "value", "code"),
    [
        ("17", "261231", None),
        ("17", "260200", None),  # day 00: unspecified day
        ("17", "240229", None),
        ("17", "000229", None),  # 2000 is a leap year
        ("17", "250229", "GS1_LINTER_ILLEGAL_DAY"),
        ("17", "261301", "GS1_LINTER_ILLEGAL_MONTH"),
        ("17", "2612", "VALUE_TOO_SHORT"),
        ("17", "26123A", "GS1_LINTER_NON_DIGIT_CHARACTER"),
        ("7006", "260100", "GS1_LINTER_ILLEGAL_DAY"),  # yymmdd: no day 00
        ("7003", "2612312359", None),
        ("7003", "2612312460", "GS1_LINTER_ILLEGAL_HOUR"),
        ("7250", "20000229", None),
        ("7250", "19000229", "GS1_LINTER_ILLEGAL_DAY"),  # yyyymmdd: 1900 was not leap
        ("8008", "26123123", None),  # optional minutes and seconds left out
        ("8008", "2612312359", None),
        ("8008", "261231235", "VALUE_TOO_SHORT"),
        ("8014", "95012346AQ5", None),  # csumalpha, then hasnondigit
        ("8014", "109999822", "GS1_LINTER_REQUIRES_NON_DIGIT_CHARACTER"),
        ("8030", "YWJj", None),
        ("8030", "YWI", None),  # the engine: padding only up to a multiple of 3 ("12=")
        ("8030", "YWI=", "GS1_LINTER_INVALID_CSET64_PADDING"),
        ("8030", "YW==x", "GS1_LINTER_INVALID_CSET64_CHARACTER"),
        ("7241", "00", "GS1_LINTER_INVALID_MEDIA_TYPE"),
        ("7241", "85", None),
        ("7040", "1ABC", None),
        ("8011", "1", None),
        ("8011", "0", "GS1_LINTER_ILLEGAL_ZERO_PREFIX"),
        ("7258", "1/3", None),
        ("4309", "18000000003600000000", None),
        ("4332", "000100-", None),
        ("8006", "123456789012310102", None),
        ("10", "A" * 21, "VALUE_TOO_LONG"),
        ("10", "", "EMPTY_VALUE"),
    ],
)
def test_validate_ai_value(ai: str, value: str, code: str | None) -> None:
    if code is None:
        assert ai_values.validate_ai_value(ai, value) == value
    else:
        error = _rejects(ai_values.validate_ai_value, ai, value, field="item.expiry")
        assert (error.code, error.ai, error.field) == (code, ai, "item.expiry")


def test_validate_ai_value_messages() -> None:
    assert (
        _rejects(ai_values.validate_ai_value, "01", "09506000134353").rule
        == "(01) GTIN check digit is 3, expected 2"
    )
    assert _rejects(ai_values.validate_ai_value, "17", "261301").rule == (
        "(17) USE BY or EXPIRY month 13 (position 3) is not 01-12"
    )
    assert _rejects(ai_values.validate_ai_value, "17", "250229").rule == (
        "(17) USE BY or EXPIRY day 29 does not exist in month 02 of a year that is not a leap year"
    )
    assert _rejects(ai_values.validate_ai_value, "01", "0950600013435").rule == (
        "(01) GTIN has 13 characters; it must have exactly 14 (N14)"
    )
    assert _rejects(ai_values.validate_ai_value, "10", "AB~").rule.startswith(
        "(10) BATCH/LOT character '~' at position 3 is not allowed"
    )
    assert str(_rejects(ai_values.validate_ai_value, "3103", "12345x")).startswith(
        "value: (3103) NET WEIGHT (kg) character 'x' at position 6 is not a digit"
    )


@given(st.text("0123456789", min_size=6, max_size=6))
def test_date_linter_agrees_with_the_calendar(yymmdd: str) -> None:
    """YYMMDD is valid exactly when it is a real date (day 00 allowed for yymmd0), reading
    YY as the engine does (1972-2071)."""
    yy, mm, dd = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    year = (1900 if yy >= 72 else 2000) + yy
    try:
        date(year, mm, dd or 1)
        real = True
    except ValueError:
        real = False
    assert (ai_values._LINTERS["yymmd0"](yymmdd, 0) is None) == real
    assert (ai_values._LINTERS["yymmdd"](yymmdd, 0) is None) == (real and dd != 0)


# --- element strings ----------------------------------------------------------------------


@pytest.mark.parametrize("vector", _params("ai_element_string_parse.json"))
def test_element_string_parse_vector(vector: dict[str, Any]) -> None:
    text: str = vector["input"]
    if not vector["valid"]:
        _rejects(element_strings.parse_element_string, text, check_associations=False)
        return
    pairs = element_strings.parse_element_string(text, check_associations=False)
    assert [list(pair) for pair in pairs] == vector["expected_ai_pairs"]
    assert element_strings.format_element_string(pairs, unbracketed=True) == vector["expected"]
    assert element_strings.format_element_string(pairs) == text


def _validate_skip_reason(vector: dict[str, Any]) -> str | None:
    if vector["input"].startswith("^423"):
        return "(423) COUNTRY - INITIAL PROCESS needs the iso3166 linter, not implemented"
    return None


@pytest.mark.parametrize("vector", _params("ai_element_string_validate.json"))
def test_element_string_validate_vector(vector: dict[str, Any]) -> None:
    """Unbracketed (scanner) data: FNC1 handling, fixed and variable lengths, linters. Options
    in these vectors only widen what the engine accepts, so their invalid verdicts hold."""
    reason = _validate_skip_reason(vector)
    if reason:
        pytest.skip(reason)
    text: str = vector["input"]
    if not vector["valid"]:
        _rejects(element_strings.parse_element_string, text, check_associations=False)
        return
    pairs = element_strings.parse_element_string(text, check_associations=False)
    assert "".join(ai + value for ai, value in pairs) == text.replace("^", "")
    for unbracketed in (False, True):  # written back (superfluous FNC1s dropped), read again
        written = element_strings.format_element_string(pairs, unbracketed=unbracketed)
        assert element_strings.parse_element_string(written, check_associations=False) == pairs


def _association_skip_reason(vector: dict[str, Any]) -> str | None:
    unknown = sorted(
        {ai for ai, _ in _ai_pairs(vector["input"]) if ai not in gs1_dictionary.AI_TABLE}
    )
    if unknown:
        return f"needs engine option permitUnknownAIs for AI(s) {unknown}, not in the dictionary"
    return None


@pytest.mark.parametrize("vector", _params("ai_associations.json"))
def test_ai_association_vector(vector: dict[str, Any]) -> None:
    """Repeats, ex= exclusions, req= requisites, serialised key for (8030). The vectors carry
    permitUnknownAIs, which matters only for AIs outside the dictionary (skipped)."""
    reason = _association_skip_reason(vector)
    if reason:
        pytest.skip(reason)
    text: str = vector["input"]
    assert list(element_strings.parse_element_string(text, check_associations=False)) == _ai_pairs(
        text
    )
    if vector["valid"]:
        assert list(element_strings.parse_element_string(text)) == _ai_pairs(text)
        return
    codes = {
        "validateAIrepeats": "REPEATED_AI_DIFFERS",
        "validateAImutex": "MUTUALLY_EXCLUSIVE_AIS",
        "validateAIrequisites": "REQUIRED_AI_MISSING",
        "validateDigSigRequiresSerialisedKey": "DIGSIG_NEEDS_SERIALISED_KEY",
    }
    assert _rejects(element_strings.parse_element_string, text).code == codes[vector["check"]]


@pytest.mark.parametrize("vector", _params("element_string_conversions.json"))
def test_element_string_conversion_vector_full(vector: dict[str, Any]) -> None:
    text: str = vector["input"]
    if "expected_unbracketed" in vector:
        expected, convert = (
            vector["expected_unbracketed"],
            lambda pairs: element_strings.format_element_string(pairs, unbracketed=True),
        )
    else:
        expected, convert = vector["expected_bracketed"], element_strings.format_element_string
    if text.lower().startswith("http"):
        parse: Callable[[str], Any] = lambda t: digital_link.DigitalLink.parse(t).ai_pairs  # noqa: E731
    else:
        parse = element_strings.parse_element_string
    if expected is None:
        _rejects(parse, text)
    else:
        assert convert(parse(text)) == expected


def test_element_string_errors() -> None:
    assert _rejects(element_strings.parse_element_string, "").code == "EMPTY"
    assert _rejects(element_strings.parse_element_string, "0112").code == "BRACKETED_SYNTAX"
    assert _rejects(element_strings.parse_element_string, "(ab)12").code == "UNKNOWN_AI"
    assert _rejects(element_strings.parse_element_string, "^").code == "EMPTY"
    assert _rejects(element_strings.parse_element_string, "^8912").code == "UNKNOWN_AI"
    error = _rejects(element_strings.parse_element_string, "(01)09506000134352(10)A(10)B")
    assert error.rule == "(10) BATCH/LOT appears twice with different values: 'A' and 'B'"
    error = _rejects(element_strings.parse_element_string, "(10)LOT1")
    assert error.rule == (
        "(10) BATCH/LOT needs (01) or (02) or (03) or (8006) or (8026) in the same data"
    )
    assert element_strings.parse_element_string("(10)LOT1", check_associations=False) == (
        ("10", "LOT1"),
    )
    too_many = "(99)X" * (element_strings.MAX_AIS + 1)
    assert _rejects(element_strings.parse_element_string, too_many).code == "TOO_MANY_AIS"
    assert element_strings.format_element_string([("10", "A(B")]) == "(10)A\\(B"


# --- Digital Link: vectors ----------------------------------------------------------------


def _generate_skip_reason(vector: dict[str, Any]) -> str | None:
    if vector["valid"] and vector.get("options"):
        return f"needs engine options {vector['options']}: AIs outside the dictionary (89)"
    return None


@pytest.mark.parametrize("vector", _params("dl_uri_generate.json"))
def test_digital_link_generate_vector(vector: dict[str, Any]) -> None:
    """Element string (or, once, a DL URI) in, the engine's URI out, byte for byte. Options
    only widen what the engine accepts, so invalid vectors must fail without them too."""
    reason = _generate_skip_reason(vector)
    if reason:
        pytest.skip(reason)
    if vector.get("input_dl_uri"):
        dl = digital_link.DigitalLink.parse(vector["input_dl_uri"])
    elif not vector["valid"]:
        _rejects(digital_link.DigitalLink.from_element_string, vector["ai_data"])
        return
    else:
        dl = digital_link.DigitalLink.from_element_string(vector["ai_data"])
    if vector["stem"] is None:
        assert dl.to_uri() == vector["expected"]
    assert (
        dl.to_uri(gs1.DEFAULT_BASE if vector["stem"] is None else vector["stem"])
        == (vector["expected"])
    )
    if vector["stem"]:
        assert digital_link.DigitalLink.parse(vector["expected"]) == dl


def _parse_skip_reason(vector: dict[str, Any]) -> str | None:
    options = set(vector.get("options") or {}) - {"permitZeroSuppressedGTINinDLuris"}
    if vector["valid"] and "permitConvenienceAlphas" in options:
        return "needs the deprecated convenience alphas (/gtin/, /ser/), not supported"
    if vector["valid"] and options:
        return f"needs engine options {sorted(options)}: AIs outside the dictionary (89)"
    return None


@pytest.mark.parametrize("vector", _params("dl_uri_parse.json"))
def test_digital_link_parse_vector(vector: dict[str, Any]) -> None:
    """Every URI the engine accepts gives its AI pairs, in its order; every URI it refuses
    is refused. The legacy GTIN-8/12/13 option maps to ``zero_suppressed_gtin``; the other
    options only widen acceptance, so invalid vectors hold without them."""
    reason = _parse_skip_reason(vector)
    if reason:
        pytest.skip(reason)
    uri: str = vector["uri"]
    padded = bool((vector.get("options") or {}).get("permitZeroSuppressedGTINinDLuris"))
    if not vector["valid"]:
        _rejects(digital_link.DigitalLink.parse, uri, zero_suppressed_gtin=padded)
        _rejects(digital_link.parse_digital_link, uri, zero_suppressed_gtin=padded)
        return
    dl = digital_link.DigitalLink.parse(uri, zero_suppressed_gtin=padded)
    assert digital_link.parse_digital_link(uri, zero_suppressed_gtin=padded) == dl
    if vector["expected"] is None:  # the 90-character (99): success is all the origin asserts
        assert dl.ai_pairs == (("01", "12312312312333"), ("99", "A" * 90))
    else:
        assert [list(pair) for pair in dl.ai_pairs] == vector["expected_ai_pairs"]
        assert dl.element_string() == vector["expected_bracketed"]
        assert dl.element_string(unbracketed=True) == vector["expected"]
    if padded and any(len(v) != 14 for ai, v in _uri_ai_values(uri) if ai == "01"):
        _rejects(digital_link.DigitalLink.parse, uri)  # without the option a short GTIN is refused
    again = digital_link.DigitalLink.parse(dl.to_uri())
    assert again == dl and again.to_uri() == dl.to_uri()


def _uri_ai_values(uri: str) -> list[tuple[str, str]]:
    path, _, query = uri.partition("?")
    segments = path.split("/")[3:]
    pairs = list(zip(segments[::2], segments[1::2], strict=False))
    return pairs + [tuple(p.split("=", 1)) for p in query.split("&") if "=" in p]  # type: ignore[misc]


# --- Digital Link: the resolver's view ----------------------------------------------------

GTIN_EXAMPLE = "09506000134352"


def test_parse_digital_link_for_the_resolver() -> None:
    dl = digital_link.parse_digital_link("/01/09506000134352/10/LOT42?17=261231")
    assert (dl.key_ai, dl.key) == ("01", GTIN_EXAMPLE)
    assert dl.qualifiers == (("10", "LOT42"),) and dl.attributes == (("17", "261231"),)
    assert (dl.gtin, dl.lot, dl.serial) == (GTIN_EXAMPLE, "LOT42", None)
    assert dl.lot_id == gs1.LotId(GTIN_EXAMPLE, "LOT42")
    assert digital_link.expiry(dl) == date(2026, 12, 31)
    assert dl.to_uri() == "https://id.gs1.org/01/09506000134352/10/LOT42?17=261231"
    assert dl.to_uri("") == "/01/09506000134352/10/LOT42?17=261231"
    serial = digital_link.parse_digital_link("/01/09506000134352/21/SN%2F001?17=261231&15=261130")
    assert (serial.serial, serial.lot, serial.lot_id) == ("SN/001", None, None)
    assert serial.get("15") == "261130"
    both = digital_link.parse_digital_link(
        "/01/09506000134352/10/LOT42/21/7?linkType=gs1:recallStatus"
    )
    assert both.params == (("linkType", "gs1:recallStatus"),)
    assert both.lot_id == gs1.LotId(GTIN_EXAMPLE, "LOT42")
    full = "https://resolver.example/dl/01/09506000134352/10/LOT42?17=261231"
    assert digital_link.parse_digital_link(full) == dl == digital_link.DigitalLink.parse(full)
    assert digital_link.parse_digital_link("/01/09506000134352/10/LOT42?") == dl.__class__(
        "01", GTIN_EXAMPLE, (("10", "LOT42"),)
    )


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        (
            "/01/09506000134353/10/LOT42",
            "GS1_LINTER_INCORRECT_CHECK_DIGIT",
            "(01) GTIN check digit is 3, expected 2",
        ),
        (
            "/01/09506000134352/10/LOT42?17=261331",
            "GS1_LINTER_ILLEGAL_MONTH",
            "(17) USE BY or EXPIRY month 13 (position 3) is not 01-12",
        ),
        (
            "/01/9506000134352/10/LOT42",
            "VALUE_TOO_SHORT",
            "(01) GTIN has 13 characters; it must have exactly 14 (N14)",
        ),
        ("/01/09506000134352/10/LOT%2042", "GS1_LINTER_INVALID_CSET82_CHARACTER", "' '"),
        ("/01/09506000134352?10=LOT42", "AI_SHOULD_BE_IN_PATH", "belongs in the path (/10/…)"),
        ("/01/09506000134352/21/1?10=LOT42", "AI_SHOULD_BE_IN_PATH", "(10) BATCH/LOT"),
        ("/01/09506000134352/21/S/10/L", "INVALID_KEY_QUALIFIERS", "22,10,21 or 235"),
        ("/01/09506000134352/10/L?21=S", "NOT_A_DL_ATTRIBUTE", "(21) SERIAL may not be"),
        ("/01/09506000134352/10/L?10=L", "DUPLICATE_AI", "(10) BATCH/LOT is given twice"),
        ("/01/09506000134352/10/L?999=1", "UNKNOWN_AI", "(999) is not a GS1 AI"),
        ("/01/09506000134352/10/L?17=", "EMPTY_VALUE", "(17) USE BY or EXPIRY has an empty"),
        ("/01/09506000134352/10/L?422=528", "UNSUPPORTED_AI", "ISO 3166"),
        ("/21/SN001", "NO_PRIMARY_KEY", "(21) SERIAL is not a key and must follow one"),
        ("/lot/LOT42", "NO_PRIMARY_KEY", "expected …/01/{GTIN}[/10/{lot}]"),
        ("/01/09506000134352/10/LOT42/", "TRAILING_SLASH", "must not end with '/'"),
        ("/00/095060001343520000?10=L", "REQUIRED_AI_MISSING", "(10) BATCH/LOT needs (01)"),
        ("/01/09506000134352?37=5&00=095060001343520000", "MUTUALLY_EXCLUSIVE_AIS", "(37)"),
    ],
)
def test_parse_digital_link_errors(path: str, code: str, message: str) -> None:
    """What a 400 answer says: the AI and the rule."""
    error = _rejects(digital_link.parse_digital_link, path)
    assert isinstance(error, gs1_dictionary.GS1SyntaxError) and isinstance(error, ValidationError)
    assert error.code == code, error.rule
    assert message in error.rule
    assert error.field == "path"
    assert _rejects(digital_link.DigitalLink.parse, "https://x.example" + path).field == "uri"


def test_parse_refuses_relative_references_and_other_schemes() -> None:
    assert (
        "is not an absolute URI"
        in _rejects(digital_link.DigitalLink.parse, "/01/09506000134352").rule
    )
    assert (
        "scheme 'ftp'"
        in _rejects(digital_link.parse_digital_link, "ftp://a/01/09506000134352").rule
    )


def test_query_plus_is_a_space_and_path_plus_is_literal() -> None:
    dl = digital_link.parse_digital_link("/01/09506000134352/10/A+B?99=X%2BY&note=two+words")
    assert dl.lot == "A+B" and dl.get("99") == "X+Y" and dl.params == (("note", "two words"),)
    assert dl.to_uri("") == "/01/09506000134352/10/A%2BB?99=X%2BY&note=two+words"
    assert _rejects(digital_link.parse_digital_link, "/01/09506000134352?99=X+Y").code == (
        "GS1_LINTER_INVALID_CSET82_CHARACTER"
    )


def test_params_are_kept_apart_from_ai_data() -> None:
    dl = digital_link.parse_digital_link("/01/09506000134352?linkType=all&flag&&=x&99=A")
    assert dl.params == (("linkType", "all"), ("flag", ""))
    assert dl.attributes == (("99", "A"),)
    assert dl.element_string() == "(01)09506000134352(99)A"
    assert dl.to_uri("") == "/01/09506000134352?99=A&linkType=all&flag"
    with pytest.raises(ValidationError, match="not all digits"):
        digital_link.DigitalLink("01", GTIN_EXAMPLE, params=(("12", "x"),))


def test_zero_suppressed_gtin_option() -> None:
    uri = "https://a/01/9506000134352/10/L"
    assert _rejects(digital_link.DigitalLink.parse, uri).code == "VALUE_TOO_SHORT"
    assert digital_link.DigitalLink.parse(uri, zero_suppressed_gtin=True).gtin == GTIN_EXAMPLE


def test_expiry() -> None:
    def link(query: str) -> digital_link.DigitalLink:
        return digital_link.parse_digital_link(f"/01/09506000134352/10/L{query}")

    assert digital_link.expiry(link("")) is None
    today = date(2026, 5, 1)
    assert digital_link.expiry(link("?17=261231"), today=today) == date(2026, 12, 31)
    assert digital_link.expiry(link("?17=280200"), today=today) == date(
        2028, 2, 29
    )  # day 00: month end
    assert digital_link.expiry(link("?17=760101"), today=today) == date(2076, 1, 1)  # 50 ahead
    assert digital_link.expiry(link("?17=770101"), today=today) == date(
        1977, 1, 1
    )  # 51 ahead: past
    assert digital_link.expiry(link("?17=010101"), today=date(2080, 1, 1)) == date(2101, 1, 1)
    assert digital_link.expiry(link("?7003=2703311200"), today=today) == date(2027, 3, 31)
    assert digital_link.expiry(link("?15=261231")) is None  # best before is not expiry


def test_for_gtin() -> None:
    dl = digital_link.DigitalLink.for_gtin(
        "9506000134352", serial="S1", lot="LOT42", expiry=date(2026, 12, 31)
    )
    assert dl.to_uri() == "https://id.gs1.org/01/09506000134352/10/LOT42/21/S1?17=261231"
    assert dl.to_uri() == gs1.gtin_uri("9506000134352", lot="LOT42", serial="S1") + "?17=261231"
    assert (
        digital_link.DigitalLink.for_gtin(GTIN_EXAMPLE, lot="L", attributes={"3103": "000195"}).get(
            "3103"
        )
        == "000195"
    )
    assert _rejects(digital_link.DigitalLink.for_gtin, "09506000134353", lot="L").field == "gtin"


def test_construction_validates_and_normalises() -> None:
    dl = digital_link.DigitalLink("01", GTIN_EXAMPLE, (("21", "S"), ("10", "L"), ("22", "V")))
    assert dl.qualifiers == (("22", "V"), ("10", "L"), ("21", "S"))
    assert dl.to_uri() == "https://id.gs1.org/01/09506000134352/22/V/10/L/21/S"
    with pytest.raises(AttributeError):
        dl.key = "x"  # type: ignore[misc]
    rejected: list[tuple[str, str, str, Any, Any]] = [
        ("NOT_A_PRIMARY_KEY", "10", "L", (), ()),
        ("INVALID_KEY_QUALIFIERS", "01", GTIN_EXAMPLE, (("235", "T"), ("10", "L")), ()),
        ("DUPLICATE_AI", "01", GTIN_EXAMPLE, (("10", "L"), ("10", "M")), ()),
        ("NOT_A_DL_ATTRIBUTE", "01", GTIN_EXAMPLE, (), {"8200": "x"}),
        ("GS1_LINTER_INCORRECT_CHECK_DIGIT", "00", "0" * 17 + "1", (), ()),
        ("DIGSIG_NEEDS_SERIALISED_KEY", "253", "9506000134352", (), {"8030": "YWJj"}),
    ]
    for code, key_ai, key, qualifiers, attributes in rejected:
        error = _rejects(digital_link.DigitalLink, key_ai, key, qualifiers, attributes)
        assert error.code == code and error.field == "digital_link", code
    with pytest.raises(ValidationError, match="not a string"):
        digital_link.DigitalLink("01", GTIN_EXAMPLE, attributes="17=261231")  # type: ignore[arg-type]


def test_equality_ignores_attribute_order() -> None:
    a = digital_link.DigitalLink("01", GTIN_EXAMPLE, attributes=(("17", "261231"), ("99", "X")))
    b = digital_link.DigitalLink("01", GTIN_EXAMPLE, attributes=(("99", "X"), ("17", "261231")))
    assert a == b and hash(a) == hash(b) and a.to_uri() == b.to_uri()
    assert a.attributes != b.attributes  # the given order is kept
    assert a != digital_link.DigitalLink("01", GTIN_EXAMPLE, attributes=(("17", "261231"),))
    assert a != "https://id.gs1.org/01/09506000134352?17=261231&99=X"


def test_to_uri_writes_fixed_length_attributes_first() -> None:
    dl = digital_link.DigitalLink.from_element_string(
        "(01)09506000134352(99)X(17)261231(10)L(3103)000195"
    )
    assert dl.attributes == (("99", "X"), ("17", "261231"), ("3103", "000195"))
    assert dl.to_uri() == ("https://id.gs1.org/01/09506000134352/10/L?17=261231&3103=000195&99=X")
    assert dl.element_string() == "(01)09506000134352(10)L(99)X(17)261231(3103)000195"
    assert dl.element_string(unbracketed=True) == "^010950600013435210L^99X^172612313103000195"


def test_from_element_string_errors_name_the_input() -> None:
    error = _rejects(digital_link.DigitalLink.from_element_string, "(99)X")
    assert (error.code, error.field) == ("NO_PRIMARY_KEY", "element_string")
    error = _rejects(digital_link.DigitalLink.from_element_string, "(01)09506000134352(235)T(10)L")
    assert (error.code, error.field) == ("NOT_A_DL_ATTRIBUTE", "element_string")


# --- Digital Link: properties -------------------------------------------------------------

_CSET82_TEXT = "".join(sorted(gs1.CSET82))
_yymmdd = st.dates(min_value=date(2000, 1, 1), max_value=date(2049, 12, 31)).map(
    lambda d: f"{d:%y%m%d}"
)
_GTIN_ATTRIBUTES: dict[str, st.SearchStrategy[str]] = {
    "11": _yymmdd,
    "15": _yymmdd,
    "17": _yymmdd,
    "30": st.text("0123456789", min_size=1, max_size=8),
    "3103": st.text("0123456789", min_size=6, max_size=6),
    "7003": st.tuples(_yymmdd, st.integers(0, 23), st.integers(0, 59)).map(
        lambda t: f"{t[0]}{t[1]:02d}{t[2]:02d}"
    ),
    "99": st.text(_CSET82_TEXT, min_size=1, max_size=90),
    "400": st.text(_CSET82_TEXT, min_size=1, max_size=30),
}
_text_chars = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
_param_names = st.text(_text_chars, min_size=1, max_size=8).filter(
    lambda s: not (s.isascii() and s.isdigit())
)
_param_values = st.text(_text_chars, max_size=12)


@st.composite
def digital_links(draw: st.DrawFn, *, params: bool = True) -> digital_link.DigitalLink:
    length = draw(st.sampled_from(gs1.GTIN_LENGTHS))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    gtin = (body + gs1.check_digit(body)).zfill(14)
    group = draw(st.sampled_from([("22", "10", "21"), ("235",)]))
    chosen = draw(st.lists(st.sampled_from(group), unique=True))
    limits = {"235": 28}
    qualifiers = [
        (ai, draw(st.text(_CSET82_TEXT, min_size=1, max_size=limits.get(ai, 20)))) for ai in chosen
    ]
    names = draw(st.lists(st.sampled_from(sorted(_GTIN_ATTRIBUTES)), unique=True, max_size=4))
    if "235" in chosen and "10" in names:  # the engine cannot write (10) beside (235) from AI data
        names.remove("10")
    attributes = [(ai, draw(_GTIN_ATTRIBUTES[ai])) for ai in names]
    extra = draw(st.lists(st.tuples(_param_names, _param_values), max_size=3)) if params else []
    return digital_link.DigitalLink("01", gtin, tuple(qualifiers), tuple(attributes), tuple(extra))


@given(digital_links(), bases)
def test_digital_link_uri_round_trip(dl: digital_link.DigitalLink, base: str) -> None:
    """DigitalLink -> URI -> parse gives the same link, and the URI is a fixed point."""
    uri = dl.to_uri(base)
    parsed = digital_link.parse_digital_link(uri)
    assert parsed == dl
    assert parsed.to_uri(base) == uri
    if base.startswith(("http", "HTTP")):
        assert digital_link.DigitalLink.parse(uri) == dl
    assert re.fullmatch(r"[A-Za-z0-9._~%/:?&=+\[\]-]*", uri)


@given(digital_links(params=False))
def test_digital_link_element_string_round_trip(dl: digital_link.DigitalLink) -> None:
    """DigitalLink -> element string (either form) -> DigitalLink gives the same link, and
    the engine's URI of that element string is ours."""
    for unbracketed in (False, True):
        text = dl.element_string(unbracketed=unbracketed)
        assert element_strings.parse_element_string(text) == dl.ai_pairs
        again = digital_link.DigitalLink.from_element_string(text)
        assert again == dl and again.to_uri() == dl.to_uri()


@given(gtins(), lots)
def test_digital_link_agrees_with_the_lot_layer(gtin: str, lot: str) -> None:
    dl = digital_link.DigitalLink.for_gtin(gtin, lot=lot)
    assert dl.to_uri() == gs1.lot_uri(gtin, lot)
    assert dl.lot_id == gs1.LotId(gtin, lot) == gs1.LotId.parse(dl.to_uri())
    assert digital_link.DigitalLink.parse(gs1.lot_uri(gtin, lot)) == dl


@given(st.text(max_size=60))
def test_parsers_only_raise_validation_errors(text: str) -> None:
    for parse in (element_strings.parse_element_string, digital_link.parse_digital_link):
        with contextlib.suppress(ValidationError):
            parse(text)


@given(st.text("()^0123456789ABC\\/", max_size=40))
def test_element_string_parser_fuzz(text: str) -> None:
    try:
        pairs = element_strings.parse_element_string(text, check_associations=False)
    except ValidationError:
        return
    for unbracketed in (False, True):
        written = element_strings.format_element_string(pairs, unbracketed=unbracketed)
        assert element_strings.parse_element_string(written, check_associations=False) == pairs
