"""Tests for provenance.gs1: GTIN check digits, batch/lot numbers and lot Digital Link URIs.

Known-answer vectors come from the GS1 Barcode Syntax Engine (derived JSON in
../shared/conformance/gs1-syntax-engine, vendored in tests/vectors/gs1-syntax-engine).
A vector the module cannot express is skipped with the reason, never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from conftest import SHARED, VENDORED, conformance
from hypothesis import given
from hypothesis import strategies as st

from provenance import gs1
from provenance.errors import ValidationError

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


_BRACKETED = re.compile(r"\((\d{2,4})\)([^(]*)")


def _ai_pairs(bracketed: str) -> list[tuple[str, str]]:
    """(AI, value) pairs of a bracketed element string without escaped brackets."""
    pairs = [(m[1], m[2]) for m in _BRACKETED.finditer(bracketed)]
    assert "".join(f"({ai}){value}" for ai, value in pairs) == bracketed
    return pairs


def _rejects(call: Any, *args: Any, **kwargs: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        call(*args, **kwargs)
    return info.value


# --- check digits: check_digits.json ------------------------------------------------------


@pytest.mark.parametrize("vector", _params("check_digits.json"))
def test_check_digit_vector(vector: dict[str, Any]) -> None:
    if vector["algorithm"] != "gs1_mod10":
        pytest.skip(
            "AI (8013)/(8014) alphanumeric check pair: not implemented, lot URIs carry no GMN"
        )
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


def _starts_with_gtin_or_lot(vector: dict[str, Any]) -> bool:
    return vector["input"].startswith(("(01)", "(10)"))


@pytest.mark.parametrize("vector", _params("ai_linters.json", _starts_with_gtin_or_lot))
def test_ai_linter_vector(vector: dict[str, Any]) -> None:
    """The linter vectors whose first AI is (01) or (10); the other 95 test AIs (dates,
    countries, IBANs, ...) that provenance.gs1 does not handle."""
    ai, value = _ai_pairs(vector["input"])[0]
    check = gs1.normalize_gtin if ai == "01" else gs1.validate_lot
    ours = {
        "GS1_LINTER_INCORRECT_CHECK_DIGIT": "check digit is",
        "GS1_LINTER_INVALID_CSET82_CHARACTER": "is not allowed",
    }
    result = vector["expected_linter_result"]
    if result in ours:
        assert ours[result] in _rejects(check, value).rule
    else:  # GS1_LINTER_OK, or an error about a later AI: our value itself is fine
        assert check(value) == value


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
_PATH_AIS = {"01": None, "22": "cpv", "10": "lot", "21": "serial"}
_QUERY_ONLY_AIS = {"95", "98", "99"}


@pytest.mark.parametrize("vector", _params("dl_uri_generate.json"))
def test_dl_generate_vector(vector: dict[str, Any]) -> None:
    if vector.get("options"):
        pytest.skip(f"needs engine options {vector['options']}: unknown AIs are not supported")
    if vector["ai_data"] is None:
        pytest.skip("input is a DL URI with (235) in the path: (235) is not supported")
    pairs = list(dict.fromkeys(_ai_pairs(vector["ai_data"])))  # the engine collapses repeats
    unsupported = sorted({ai for ai, _ in pairs} - set(_PATH_AIS) - _QUERY_ONLY_AIS)
    if unsupported:
        pytest.skip(f"uses AI(s) {unsupported}, which gtin_uri cannot express")
    if not vector["valid"]:
        pytest.skip("(99) alone has no primary key; gtin_uri always has a GTIN")
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


def _is_uri_input(vector: dict[str, Any]) -> bool:
    return vector["input"].lower().startswith("http")


@pytest.mark.parametrize("vector", _params("element_string_conversions.json", _is_uri_input))
def test_element_string_conversion_vector(vector: dict[str, Any]) -> None:
    """The conversions whose input is a Digital Link URI (the others convert between the
    bracketed and unbracketed element-string forms)."""
    if vector["expected_bracketed"] is None:
        for strict in (True, False):
            _rejects(gs1.parse_lot_uri, vector["input"], require_canonical_base=strict)
        return
    pairs = _ai_pairs(vector["expected_bracketed"])
    if [ai for ai, _ in pairs] != ["01", "10"]:
        pytest.skip("not a (01)+(10) lot URI")
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
