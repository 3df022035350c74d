"""provenance.core.jcs against RFC 8785 and the cyberphone test data.

Layers: every cyberphone input/output pair and ES6 number sample (vectors in
../shared/conformance/cyberphone-json-canonicalization, vendored in
tests/vectors/cyberphone-json-canonicalization); the stdlib fast path checked
against the reference `rfc8785` package on generated values; values JSON
cannot carry; and `parse_json`, the strict parser for untrusted input.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from typing import Any

import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support.paths import SHARED, VENDORED, conformance

from provenance.core.errors import ValidationError
from provenance.core.jcs import MAX_DEPTH, canonical_text, canonicalize, parse_json

VECTORS = "cyberphone-json-canonicalization"
CASES = ("arrays", "french", "structures", "unicode", "values", "weird")
MAX_SAFE = 2**53 - 1


# --- cyberphone input -> output ------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_cyberphone_vector(name: str) -> None:
    raw = conformance(f"{VECTORS}/testdata/input/{name}.json").read_bytes()
    expected = conformance(f"{VECTORS}/testdata/output/{name}.json").read_bytes()
    outhex = conformance(f"{VECTORS}/testdata/outhex/{name}.txt").read_text()
    assert bytes.fromhex(outhex) == expected  # the two spellings of the answer agree
    assert canonicalize(parse_json(raw)) == expected
    assert canonicalize(json.loads(raw)) == expected
    assert canonical_text(parse_json(raw)) == expected.decode("utf-8")


@pytest.mark.parametrize("name", CASES)
def test_cyberphone_output_is_a_fixed_point(name: str) -> None:
    expected = conformance(f"{VECTORS}/testdata/output/{name}.json").read_bytes()
    assert canonicalize(parse_json(expected)) == expected


def _es6_params() -> list[Any]:
    try:
        path = conformance(f"{VECTORS}/es6_number_samples.json")
    except pytest.skip.Exception:
        return []
    params = []
    for vector in json.loads(path.read_text(encoding="utf-8"))["vectors"]:
        bits = vector["ieee754_hex"]
        (number,) = struct.unpack(">d", bytes.fromhex(bits.zfill(16)))
        params.append(pytest.param(number, vector["expected"], id=bits))
    return params


@pytest.mark.parametrize(("number", "expected"), _es6_params())
def test_es6_number_sample(number: float, expected: str) -> None:
    assert rfc8785.dumps(number) == expected.encode()  # the reference agrees with the vector
    assert canonicalize(number) == expected.encode()
    assert canonicalize([number]) == f"[{expected}]".encode()
    assert canonicalize({"n": number}) == f'{{"n":{expected}}}'.encode()


# --- the fast path against the reference --------------------------------------------------

# Doubles where ECMAScript and Python disagree on notation, or where the fast path
# switches encoder, plus every boundary the module names.
EDGE_FLOATS = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1e-7,
    1.5e-7,
    1e-6,
    9.999999999999997e-7,
    1e-5,
    9.9999e-5,
    1e-4,
    0.00010000000000000002,
    0.1,
    0.5,
    1.5,
    333333333.3333333,
    float(MAX_SAFE),
    1e16,
    1e16 + 2,
    1.0000000000000002e16,
    9.999999999999998e20,
    1e21,
    1.0000000000000001e21,
    1e22,
    1.7976931348623157e308,
    -1.7976931348623157e308,
]

floats = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(EDGE_FLOATS)
    | st.integers(-MAX_SAFE, MAX_SAFE).map(float)
)
integers = st.integers(-MAX_SAFE, MAX_SAFE) | st.sampled_from([MAX_SAFE, -MAX_SAFE, 0, -1])
# UTF-16 order differs from code point order above U+D7FF: "\ue000" < "\U00010000" by code
# point but not by UTF-16 unit; JCS sorts by UTF-16 units.
KEY_CHARS = st.characters(codec="utf-8") | st.sampled_from(
    ["a", "A", "é", "\u20ac", "\ue000", "\uffff", "\U00010000", "\U0001f602", "\x00", "\n"]
)
keys = st.text(KEY_CHARS, max_size=6)
strings = st.text(st.characters(codec="utf-8"), max_size=12) | st.text(KEY_CHARS, max_size=6)


def _json(numbers: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | integers | numbers | strings,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
        max_leaves=30,
    )


json_values = _json(floats)
# Shapes the fast path takes: ASCII keys, plain values.
ascii_objects = st.dictionaries(
    st.text(st.characters(codec="ascii"), max_size=8),
    st.none() | st.booleans() | integers | st.text(max_size=8).filter(str.isascii),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
@example({"\ue000": 1, "\U00010000": 2, "\uffff": 3})
@example({"a": {"b": [1.5, -0.0, 5e-324, 1e21, 1e-7]}, "é": "😂"})
@example([MAX_SAFE, -MAX_SAFE, float(MAX_SAFE), 1e16, 1e-4, 9.9999e-5])
@example({"\x00": '\x1f\x7f\u2028\ud7ff"\\/'})
def test_canonicalize_matches_reference(value: Any) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@settings(max_examples=100, deadline=None)
@given(ascii_objects)
def test_fast_path_objects_match_reference(value: dict[str, Any]) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)
    assert canonicalize([value, value]) == rfc8785.dumps([value, value])


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_canonical_bytes_parse_back_to_an_equal_value(value: Any) -> None:
    raw = canonicalize(value)
    parsed = parse_json(raw, max_depth=1000)
    assert parsed == value
    assert canonicalize(parsed) == raw


@pytest.mark.parametrize("number", [1e16, -1e16, 2.818104538371975e16, 1e20, 9.999999999999998e20])
def test_canonical_numbers_survive_a_parse(number: float) -> None:
    raw = canonicalize({"n": number})
    assert canonicalize(parse_json(raw)) == raw


@pytest.mark.parametrize(
    "number",
    [2.0**53, 2.0**53 + 2, 9007199254740994.0, 9999999999999998.0, -(2.0**53)],
)
def test_integral_floats_beyond_2_53_have_no_fraction(number: float) -> None:
    assert canonicalize(number) == rfc8785.dumps(number)
    assert canonicalize({"ext": {"n": number}}) == rfc8785.dumps({"ext": {"n": number}})


@settings(max_examples=25, deadline=None)
@given(
    st.integers(MAX_SAFE + 1, 10**22).map(float) | st.integers(-(10**22), -MAX_SAFE - 1).map(float)
)
def test_integral_floats_beyond_2_53_match_reference(number: float) -> None:
    assert canonicalize(number) == rfc8785.dumps(number)


def test_canonicalize_sorts_by_utf16_units_not_code_points() -> None:
    # U+FB33 sorts before U+1F602 by code point but after it by UTF-16 unit (0xD83D).
    value = {"\U0001f602": 1, "\ufb33": 2, "\u20ac": 3, "a": 4}
    assert canonicalize(value) == '{"a":4,"\u20ac":3,"\U0001f602":1,"\ufb33":2}'.encode()


def test_canonicalize_keeps_unicode_unnormalised_and_unescaped() -> None:
    assert canonicalize({"k": "A\u030a"}) == b'{"k":"A\xcc\x8a"}'
    assert canonicalize("\x0f\n\u2028/") == b'"\\u000f\\n\xe2\x80\xa8/"'


# --- values JSON cannot carry -------------------------------------------------------------


def _deep_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


UNREPRESENTABLE = {
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "nan in a list": [1, math.nan],
    "inf in an object": {"a": math.inf},
    "2**60": 2**60,
    "2**53": 2**53,
    "-2**53": -(2**53),
    "2**60 in an object": {"a": 2**60},
    "lone surrogate": "\ud800",
    "lone surrogate in a list": ["ok", "\udfff"],
    "lone surrogate value in a flat object": {"a": "x\ud83d"},
    "lone surrogate key": {"\ud800": 1},
    "lone surrogate key, nested": {"a": {"\ud800": 1.5}},
    "bytes": b"x",
    "set": {1},
    "object value": {"a": object()},
    "non-string key, nested object": {1: 1.5},
    "non-string key, inner object": {"a": {(1, 2): [1]}},
    "100k nested lists": _deep_list(100_000),
}


@pytest.mark.parametrize("value", UNREPRESENTABLE.values(), ids=UNREPRESENTABLE.keys())
def test_unrepresentable_values_raise_validation_error(value: Any) -> None:
    with pytest.raises(ValidationError, match="cannot be canonicalised as RFC 8785 JSON"):
        canonicalize(value)


@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {None: "a"}, {True: "a"}, {b"a": "a"}, {(1, 2): "a"}, [{"ok": 1}, {2: None}]],
    ids=["int", "None", "bool", "bytes", "tuple", "int in a list"],
)
def test_non_string_keys_of_flat_objects_raise_validation_error(value: Any) -> None:
    with pytest.raises(ValidationError, match="keys must be strings"):
        canonicalize(value)


# --- parse_json ----------------------------------------------------------------------------


def _rejects(raw: bytes | str, **kwargs: Any) -> str:
    with pytest.raises(ValidationError) as info:
        parse_json(raw, **kwargs)
    return str(info.value)


@pytest.mark.parametrize(
    ("raw", "byte"),
    [
        (b"\xff", 0),
        (b'{"a":"\xc3"}', 6),  # truncated two-byte sequence
        (b'"\xc0\xaf"', 1),  # overlong encoding of '/'
        (b'"\xed\xa0\x80"', 1),  # CESU-8 surrogate
        (b'["ok", "\xe9t\xe9"]', 8),  # Latin-1
        ('{"a":1}'.encode("utf-16"), 0),
    ],
    ids=["ff", "truncated", "overlong", "surrogate", "latin-1", "utf-16"],
)
def test_parse_json_rejects_non_utf8(raw: bytes, byte: int) -> None:
    assert _rejects(raw) == (
        f"not UTF-8: the bytes are not valid UTF-8 at byte offset {byte} "
        f"(0x{raw[byte : byte + 1].hex()}): send UTF-8 JSON"
    )


@pytest.mark.parametrize(
    "raw",
    ['{"a":1,"a":2}', '{"a":{"b":1,"b":1}}', '[{"x":null,"y":0,"x":null}]', '{"é":1,"é":2}'],
)
def test_parse_json_rejects_duplicate_keys(raw: str) -> None:
    assert re.fullmatch(r"malformed JSON: duplicate key '.+'", _rejects(raw))


@pytest.mark.parametrize(
    ("raw", "name"),
    [("NaN", "NaN"), ("[Infinity]", "Infinity"), ('{"a":-Infinity}', "-Infinity")],
)
def test_parse_json_rejects_nan_and_infinity(raw: str, name: str) -> None:
    assert _rejects(raw) == f"malformed JSON: {name} is not valid JSON"


@pytest.mark.parametrize("raw", ["1e400", "[-1e400]", '{"a":1E+309}'])
def test_parse_json_rejects_numbers_that_overflow_to_infinity(raw: str) -> None:
    assert "is too large: a JSON number must fit an IEEE 754 double" in _rejects(raw)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ("", "Expecting value: line 1 column 1 (char 0)"),
        ("[1,]", "line 1 column 4 (char 3)"),
        ('{"a" 1}', "Expecting ':' delimiter: line 1 column 6 (char 5)"),
        ("{'a':1}", "Expecting property name enclosed in double quotes"),
        ('{"a":1,}', "line 1 column 8 (char 7)"),
        ("[1] x", "Extra data: line 1 column 5 (char 4)"),
        ("[1", "line 1 column 3 (char 2)"),
        ('"abc', "Unterminated string"),
        ('"\x01"', "Invalid control character"),
        ("[01]", "line 1 column 3 (char 2)"),
        ("// c\n{}", "Expecting value: line 1 column 1 (char 0)"),
        ("\ufeff{}", "Expecting value: line 1 column 1 (char 0)"),
        ("True", "Expecting value: line 1 column 1 (char 0)"),
        ("[1]\n\n{", "Extra data: line 3 column 1 (char 5)"),
    ],
)
def test_parse_json_rejects_malformed_json(raw: str, where: str) -> None:
    message = _rejects(raw)
    assert message.startswith("malformed JSON: ")
    assert where in message
    assert re.search(r"line \d+ column \d+ \(char \d+\)", message)  # says where


def test_parse_json_rejects_a_utf8_bom_in_bytes() -> None:
    assert _rejects(b"\xef\xbb\xbf{}").startswith("malformed JSON: ")


def _nested(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


def _nested_objects(depth: int, inner: str = "{}") -> str:
    return '{"a":' * (depth - 1) + inner + "}" * (depth - 1)


@pytest.mark.parametrize("depth", [1, 2, MAX_DEPTH - 1, MAX_DEPTH])
def test_parse_json_accepts_nesting_up_to_the_limit(depth: int) -> None:
    assert parse_json(_nested(depth)) == json.loads(_nested(depth))
    assert parse_json(_nested_objects(depth)) == json.loads(_nested_objects(depth))
    assert parse_json(_nested(depth), max_depth=depth) is not None


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, MAX_DEPTH + 10, 999, 5000])
def test_parse_json_rejects_nesting_beyond_the_limit(depth: int) -> None:
    assert _rejects(_nested(depth)) == f"nested deeper than {MAX_DEPTH} levels"
    assert _rejects(_nested_objects(depth)) == f"nested deeper than {MAX_DEPTH} levels"


@pytest.mark.parametrize(
    "raw",
    ["[" * 100_000, "[" * 100_000 + "]" * 100_000, '{"a":' * 100_000, '[{"a":' * 25_000],
    ids=["100k-open", "100k-balanced", "100k-objects", "100k-mixed"],
)
def test_parse_json_survives_very_deep_input(raw: str) -> None:
    assert _rejects(raw) == f"nested deeper than {MAX_DEPTH} levels"
    assert _rejects(raw.encode()) == f"nested deeper than {MAX_DEPTH} levels"


def test_parse_json_custom_limit() -> None:
    assert parse_json(_nested(5), max_depth=5) == json.loads(_nested(5))
    assert _rejects(_nested(6), max_depth=5) == "nested deeper than 5 levels"


def test_parse_json_depth_does_not_depend_on_brackets_inside_strings() -> None:
    inner = _nested(MAX_DEPTH, "1")
    assert parse_json(inner) is not None  # scalars are not a level
    with_brackets = f'[{_nested(MAX_DEPTH - 1, "1")}, "{"[" * 40}"]'
    assert parse_json(with_brackets)[1] == "[" * 40


def test_parse_json_accepts_str_and_bytes_alike() -> None:
    text = '{"b":[1,2.5,"é😂"],"a":null,"c":{"d":true}}'
    assert parse_json(text) == parse_json(text.encode()) == json.loads(text)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_parse_json_agrees_with_json_loads_on_valid_input(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert parse_json(text.encode(), max_depth=1000) == json.loads(text)


# --- vendored copies ----------------------------------------------------------------------


def test_vendored_vectors_are_unedited() -> None:
    folder = VENDORED / VECTORS
    listed = re.findall(r"^([0-9a-f]{64})  (\S+)$", (folder / "ATTRIBUTION.md").read_text(), re.M)
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {
        "ATTRIBUTION.md"
    }
    assert {name for _, name in listed} == files
    for digest, name in listed:
        data = (folder / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
        shared = SHARED / VECTORS / name
        if SHARED.exists():
            assert shared.read_bytes() == data, name


def test_vendored_folder_has_attribution() -> None:
    text = (VENDORED / VECTORS / "ATTRIBUTION.md").read_text()
    assert "https://github.com/cyberphone/json-canonicalization" in text
    assert "Apache-2.0" in text
    assert "19d51d7fe467d4706a3ff08adf8a748f29fc21e0" in text
