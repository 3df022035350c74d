"""GS1 element strings read and written as the GS1 Barcode Syntax Engine does.

:func:`parse_element_string` and :func:`format_element_string` handle bracketed
``(01)…(10)…`` and unbracketed ``^01…10…`` AI data: each value is checked by
:func:`provenance.barcodes.ai_values.validate_ai_value`, and the AI associations of the
Syntax Dictionary (``req=``, ``ex=``, repeated AIs) are enforced, at most :data:`MAX_AIS`
AIs a message. Pure: strings in, values out,
:class:`~provenance.barcodes.dictionary.GS1SyntaxError` on bad input.
"""

from __future__ import annotations

from collections.abc import Iterable

from provenance.barcodes.ai_values import _check_components, _check_value, _definition
from provenance.barcodes.dictionary import (
    AI_TABLE,
    GS1SyntaxError,
)
from provenance.core.gs1 import (
    _require_str,
)

__all__ = [
    "MAX_AIS",
    "format_element_string",
    "parse_element_string",
]

MAX_AIS = 64
"""Most AIs one message may carry: the GS1 Barcode Syntax Engine's limit, mirrored."""


_FIELD_ELEMENT_STRING = "element_string"


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
