"""RFC 8785 (JCS) canonical JSON.

`canonicalize` is the one function the rest of the code calls. The reference
implementation is the `rfc8785` package; for the small, plain objects that make
up nearly all traffic (ASCII keys, integers, "ordinary" floats) the standard
library encoder produces the very same bytes several times faster, so we use it
there and hand everything else to `rfc8785`. tests/test_jcs.py checks the fast
path against `rfc8785` on generated values and the cyberphone vectors.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import rfc8785

from provenance.core.errors import ValidationError

_ENCODE = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode

# Python's repr and ECMAScript's Number::toString agree (shortest round-trip
# digits, plain notation) for finite non-integral floats in this range.
_PLAIN_FLOAT_MIN = 1e-4
_PLAIN_FLOAT_MAX = 1e16
_MAX_SAFE_INTEGER = 2**53 - 1


_PLAIN = frozenset({str, bool, type(None)})


def _fast_safe(value: Any) -> Any:
    """Return a copy of *value* the stdlib encoder renders as JCS, or raise
    LookupError when the value needs the reference encoder."""
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
            return value
        raise LookupError
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LookupError
        if value.is_integer():
            if abs(value) <= _MAX_SAFE_INTEGER:
                return int(value)
            raise LookupError  # ECMAScript digits, not Python's: the reference encoder
        if _PLAIN_FLOAT_MIN <= abs(value) < _PLAIN_FLOAT_MAX:
            return value
        raise LookupError
    if isinstance(value, dict):
        if all(type(item) in _PLAIN for item in value.values()) and all(
            isinstance(key, str) and key.isascii() for key in value
        ):
            return value  # flat object of strings, bools, None and small ints: as it is
        out = {}
        for key, item in value.items():
            # Python sorts keys by code point, JCS by UTF-16 unit: same for ASCII.
            if not isinstance(key, str) or not key.isascii():
                raise LookupError
            out[key] = _fast_safe(item)
        return out
    if isinstance(value, (list, tuple)):
        return [_fast_safe(item) for item in value]
    raise LookupError


def canonicalize(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON value.

    Raises ValidationError for values JSON cannot carry faithfully (NaN,
    integers beyond ±2**53-1, lone surrogates, non-string keys).
    """
    try:
        return _ENCODE(_fast_safe(value)).encode("utf-8")
    except (LookupError, UnicodeEncodeError, RecursionError):
        pass
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise ValidationError("", f"cannot be canonicalised as RFC 8785 JSON: {exc}") from exc


def canonical_text(value: Any) -> str:
    return canonicalize(value).decode("utf-8")


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


MAX_DEPTH = 32


MAX_NUMBER_CHARS = 400  # longer than any double needs (~ 24 significant digits + exponent)


class _NumberTooLarge(ValueError):
    pass


def _shown(text: str) -> str:
    """A number as quoted in a reason: long ones cut, with their length."""
    if len(text) <= 40:
        return text
    return f"{text[:20]}… ({len(text):,} characters)"


def _too_large(text: str) -> _NumberTooLarge:
    return _NumberTooLarge(
        f"number {_shown(text)} is too large: a JSON number must fit an IEEE 754 double "
        f"(at most ±1.8e308 and {MAX_NUMBER_CHARS} characters)"
    )


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _too_large(text)
    value = float(text)
    if not math.isfinite(value):
        raise _too_large(text)
    return value


def _parse_int(text: str) -> int | float:
    """JSON numbers are IEEE 754 doubles (RFC 8785, I-JSON): an integer beyond
    ±(2**53-1) is read as the double it denotes, as a JCS producer wrote it.
    Digits are counted before `int` sees them (Python refuses over 4,300)."""
    if len(text) > MAX_NUMBER_CHARS:
        raise _too_large(text)
    value = int(text)
    if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
        return value
    return _parse_float(text)


_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates,
    parse_constant=_no_constants,
    parse_float=_parse_float,
    parse_int=_parse_int,
)


def _depth(value: Any, limit: int) -> None:
    """Raise if containers nest deeper than *limit* (scalars add no level)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise ValidationError("", f"nested deeper than {limit} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))


def not_utf8(raw: bytes, offset: int) -> ValidationError:
    """The reason for bytes that are not UTF-8 from *offset* on."""
    return ValidationError(
        "",
        f"not UTF-8: the bytes are not valid UTF-8 at byte offset {offset} "
        f"(0x{raw[offset : offset + 1].hex()}): send UTF-8 JSON",
    )


def _check_text(text: str) -> None:
    """Refuse text that is no Unicode: bytes that were not UTF-8, decoded with
    ``surrogateescape`` by a caller (U+DC80-U+DCFF), or other lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        escaped = text.encode("utf-8", "surrogateescape") if _escaped_only(text) else None
        if escaped is not None:
            offset = len(text[: exc.start].encode("utf-8", "surrogateescape"))
            raise not_utf8(escaped, offset) from None
        raise ValidationError(
            "", f"a lone surrogate U+{ord(text[exc.start]):04X} at character {exc.start}: not text"
        ) from None


def _escaped_only(text: str) -> bool:
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogates(value: Any) -> None:
    """I-JSON (RFC 7493 §2.1): no string may hold a lone surrogate, which
    JSON's \\uXXXX escapes can spell (\\ud800) but UTF-8 cannot carry. The
    error names where (`data.notes`, `batches[0]`; a key: its object)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        texts: list[tuple[str, str]] = []
        if isinstance(item, str):
            texts.append((item, path))
        elif isinstance(item, dict):
            for key, member in item.items():
                texts.append((key, path))
                stack.append((member, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            stack.extend((member, f"{path}[{i}]") for i, member in enumerate(item))
        for text, where in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                code = ord(text[exc.start])
                raise ValidationError(
                    where.encode("utf-8", "backslashreplace").decode("utf-8"),
                    f"a JSON string holds the lone surrogate \\u{code:04x}, which is no "
                    "Unicode character (RFC 7493): send UTF-8 text",
                ) from None


def parse_json(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Strict JSON parse for untrusted input: UTF-8 only, no lone surrogates,
    no duplicate keys, no NaN/Infinity, numbers that fit a double, bounded
    nesting. Raises ValidationError saying what is wrong."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise not_utf8(raw, exc.start) from exc
    else:
        _check_text(raw)
    try:
        value = _DECODER.decode(raw)
    except RecursionError as exc:
        raise ValidationError("", f"nested deeper than {max_depth} levels") from exc
    except _NumberTooLarge as exc:
        raise ValidationError("", str(exc)) from exc
    except ValueError as exc:  # JSONDecodeError and _DuplicateKey
        raise ValidationError("", f"malformed JSON: {exc}") from exc
    if raw.count("[") + raw.count("{") > max_depth:  # else it cannot be too deep
        _depth(value, max_depth)
    if _SURROGATE_ESCAPE.search(raw):  # else no string can hold a lone surrogate
        _lone_surrogates(value)
    return value


def split_items(text: str | bytes) -> list[Any]:
    """A JSON value, a JSON array of values, or JSON lines → a list of items.

    A single value and each JSON line come back as their text, so a caller can
    bound and parse each exactly as it was sent; array elements come back
    parsed. Raises ValidationError for empty input, an empty array, or text
    that is none of the three."""
    text = text.strip()
    if not text:
        raise ValidationError("", "empty: send a JSON object, an array or JSON lines")
    try:
        value = parse_json(text)
    except ValidationError:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise
        return lines
    if isinstance(value, list):
        if not value:
            raise ValidationError("", "an empty array holds nothing to append")
        return value
    return [text]
