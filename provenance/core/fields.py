"""The field validators the event kinds' schemas are built from (pure): free
text and the characters it may not hold, numbers, choices, dids, times, lot
URIs, digests, partners' extras and rules' evidence, objects and lists. Each
takes (value, field path) and raises ValidationError naming the field and the
rule it broke. `provenance.core.kinds` composes them into each kind's schema.
"""

from __future__ import annotations

import contextvars
import re
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from provenance.core import gs1
from provenance.core.errors import ValidationError
from provenance.core.identity import is_did_key
from provenance.core.jcs import canonicalize
from provenance.core.timefmt import parse_date, parse_time

Validator = Callable[[Any, str], None]

MAX_EXT_BYTES = 4096
MAX_EVIDENCE_BYTES = 8192
MAX_TEXT = 2000

# --- field validators: each takes (value, field path) and raises ValidationError

# Characters free text may not hold (docs/protocol.md, "Free text"): they act on a
# terminal or a page instead of being shown. C0 controls (a note may keep tab and
# line feed), DEL and C1 controls (ESC and CSI start terminal commands, CR overwrites
# a line); the line and paragraph separators; and the bidirectional embeddings,
# overrides and isolates, which reorder everything shown after them. The marks
# U+200E, U+200F and U+061C are allowed: they act like one letter of their direction,
# carry no state past themselves, and mixed-direction names need them.
_BIDI_CONTROLS = "\u202a-\u202e\u2066-\u2069"
_REFUSED_IN_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI_CONTROLS}]")
REFUSED_IN_NOTE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029{_BIDI_CONTROLS}]")
_CONTROL_NAMES = {
    "\t": "TAB",
    "\n": "LINE FEED",
    "\r": "CARRIAGE RETURN",
    "\x1b": "ESCAPE",
    "\x7f": "DELETE",
    "\x9b": "CONTROL SEQUENCE INTRODUCER",
}


def describe_character(char: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``: a character as an error message names it."""
    name = _CONTROL_NAMES.get(char) or unicodedata.name(char, "control character")
    return f"U+{ord(char):04X} {name}"


_TEXT_RULE = contextvars.ContextVar("provenance_text_rule", default=True)


@contextmanager
def text_as_signed() -> Iterator[None]:
    """Within this block the rules added to the schemas after events may have
    been signed are off: free text is not checked for the characters
    `refuse_controls` refuses, and a GLN for its GS1 check digit
    (`new_input_rules`). For verifying events a ledger already holds (a proof
    bundle), which may have been signed before the rules. New input never uses it."""
    token = _TEXT_RULE.set(False)
    try:
        yield
    finally:
        _TEXT_RULE.reset(token)


def new_input_rules() -> bool:
    """Whether the rules added to the schemas later apply (outside `text_as_signed`)."""
    return _TEXT_RULE.get()


def refuse_controls(value: str, field: str, *, multiline: bool = False) -> None:
    """Refuse control, separator and bidirectional-override characters in free text
    (see above); with *multiline*, tab and line feed are allowed."""
    found = (REFUSED_IN_NOTE if multiline else _REFUSED_IN_LINE).search(value)
    if found is None or not _TEXT_RULE.get():
        return
    char, position = found.group(), found.start() + 1
    if "\u202a" <= char <= "\u202e" or "\u2066" <= char <= "\u2069":
        why = "a bidirectional control reorders the text shown after it"
    elif char in "\n\t":
        why = "this field is one line (notes, reasons and instructions may hold tab and line feed)"
    elif char in "\r\u2028\u2029":
        why = "lines are separated by line feed (U+000A) alone"
    else:
        why = "control characters act on terminals and pages instead of being shown"
    raise ValidationError(
        field, f"contains {describe_character(char)} at position {position}: {why}; remove it"
    )


def text(
    max_len: int = 200, pattern: str | None = None, hint: str = "", *, multiline: bool = False
) -> Validator:
    """A non-empty string of at most *max_len* characters, free of the characters
    `refuse_controls` refuses; with *multiline*, it may hold tabs and line feeds."""
    compiled = re.compile(pattern) if pattern else None

    def check(value: Any, field: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(field, "must be a non-empty string")
        if len(value) > max_len:
            raise ValidationError(field, f"must be at most {max_len} characters, got {len(value)}")
        if compiled and not compiled.fullmatch(value):
            raise ValidationError(field, hint or f"must match {pattern}")
        refuse_controls(value, field, multiline=multiline)

    return check


def note(max_len: int = MAX_TEXT) -> Validator:
    """Free text of several lines: reasons, notes, conditions, instructions."""
    return text(max_len, multiline=True)


def number(low: float, high: float, unit: str = "") -> Validator:
    def check(value: Any, field: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError(field, "must be a number")
        if not low <= value <= high:
            raise ValidationError(field, f"must be between {low} and {high}{unit}, got {value}")

    return check


def one_of(*choices: str) -> Validator:
    def check(value: Any, field: str) -> None:
        if value not in choices:
            raise ValidationError(field, f"must be one of {', '.join(choices)}; got {value!r}")

    return check


def boolean(value: Any, field: str) -> None:
    if not isinstance(value, bool):
        raise ValidationError(field, "must be true or false")


def did(value: Any, field: str) -> None:
    if not is_did_key(value):
        raise ValidationError(field, "must be an Ed25519 did:key (did:key:z6Mk…)")


def timestamp(value: Any, field: str) -> None:
    parse_time(value, field)


def a_date(value: Any, field: str) -> None:
    parse_date(value, field)


def date_or_time(value: Any, field: str) -> None:
    if isinstance(value, str) and "T" in value:
        parse_time(value, field)
    else:
        parse_date(value, field)


def event_id(value: Any, field: str) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValidationError(field, "must be an event id: 64 lowercase hex digits")


def count(value: Any, field: str) -> None:
    """A count of entries: an integer from 1 to 2**53 - 1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**53 - 1:
        raise ValidationError(field, "must be a whole number of entries, at least 1")


def sha256_hex(value: Any, field: str) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValidationError(field, "must be a SHA-256 digest: 64 lowercase hex digits")


def lot_uri(value: Any, field: str) -> None:
    if not isinstance(value, str):
        raise ValidationError(field, "must be a lot URI string")
    if value not in _VALID_LOT_URIS:
        gs1.parse_lot_uri(value, field=field)
        if len(_VALID_LOT_URIS) > 100_000:
            _VALID_LOT_URIS.clear()
        _VALID_LOT_URIS.add(value)


_VALID_LOT_URIS: set[str] = set()  # URIs already found canonical (a pure memo)


def ext(value: Any, field: str) -> None:
    if not isinstance(value, dict):
        raise ValidationError(field, "must be an object (partner-specific extras)")
    try:
        size = len(canonicalize(value))
    except ValidationError as exc:
        raise ValidationError(field, exc.rule) from None
    if size > MAX_EXT_BYTES:
        raise ValidationError(field, f"must be at most {MAX_EXT_BYTES} bytes, got {size}")
    _free_text_within(value, field)


def _free_text_within(value: Any, field: str) -> None:
    """Every name and string in a partner's extras is free text too (the size
    check above bounds the walk)."""
    if isinstance(value, str):
        refuse_controls(value, field, multiline=True)
    elif isinstance(value, dict):
        for name, item in value.items():
            refuse_controls(name, f"{field} (a name in it)")
            _free_text_within(item, f"{field}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _free_text_within(item, f"{field}[{index}]")


def evidence(value: Any, field: str) -> None:
    """What a rule saw (excursions, silences, scans, event ids): an object of at
    most MAX_EVIDENCE_BYTES canonical bytes, carried as signed."""
    if not isinstance(value, dict):
        raise ValidationError(field, "must be an object (what the rule saw)")
    try:
        size = len(canonicalize(value))
    except ValidationError as exc:
        raise ValidationError(field, exc.rule) from None
    if size > MAX_EVIDENCE_BYTES:
        raise ValidationError(field, f"must be at most {MAX_EVIDENCE_BYTES} bytes, got {size}")


def obj(required: dict[str, Validator], optional: dict[str, Validator] | None = None) -> Validator:
    optional = optional or {}

    def check(value: Any, field: str) -> None:
        if not isinstance(value, dict):
            raise ValidationError(field, "must be an object")
        check_fields(value, required, optional, field)

    return check


def list_of(item: Validator, min_len: int = 1, max_len: int = 64) -> Validator:
    def check(value: Any, field: str) -> None:
        if not isinstance(value, list):
            raise ValidationError(field, "must be a list")
        if not min_len <= len(value) <= max_len:
            raise ValidationError(
                field, f"must have {min_len} to {max_len} items, got {len(value)}"
            )
        for index, element in enumerate(value):
            item(element, f"{field}[{index}]")

    return check


def check_fields(
    value: dict[str, Any],
    required: dict[str, Validator],
    optional: dict[str, Validator],
    field: str,
) -> None:
    for name in value:
        if name not in required and name not in optional and name != "ext":
            allowed = ", ".join(sorted([*required, *optional]))
            raise ValidationError(
                f"{field}.{name}", f"is not a known field (allowed: {allowed}; extras go in ext)"
            )
    for name, validator in required.items():
        if name not in value:
            raise ValidationError(f"{field}.{name}", "is required")
        validator(value[name], f"{field}.{name}")
    for name, validator in optional.items():
        if name in value:
            validator(value[name], f"{field}.{name}")
