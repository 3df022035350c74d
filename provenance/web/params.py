"""Numbers in requests, parsed one way everywhere: query parameters, form
fields and ``<int:…>`` path segments.

Python's `int` and `float` read far more than a person types into a URL:
``int("٣")`` is 3, ``int("²")`` raises, ``float("1_000")`` is 1000.0, and
``str.isdigit`` is true for all of those. So a number in a request is accepted
only as the ASCII digits 0-9 (a decimal number: digits, then optionally ``.``
and digits), within the bounds the parameter allows; anything else is a
`ValidationError` naming the parameter and the form it takes, which every
blueprint answers with a 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from flask import Flask, request
from werkzeug.routing import BaseConverter, Map
from werkzeug.routing import ValidationError as NoMatch

from provenance.core.errors import ValidationError

MAX_INT = 2**63 - 1
"""The largest whole number any parameter takes (an SQLite INTEGER)."""

MAX_DIGITS = 19  # len(str(MAX_INT))

_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _shown(raw: str) -> str:
    return repr(raw[:40] + ("…" if len(raw) > 40 else ""))


def parse_int(raw: str, name: str, *, low: int = 0, high: int = MAX_INT) -> int:
    """*raw* as a whole number from *low* to *high*, written in ASCII digits."""
    form = f"a whole number from {low} to {high}, written with the digits 0-9"
    if len(raw) > MAX_DIGITS + 20 or not _WHOLE.fullmatch(raw):
        raise ValidationError(name, f"must be {form}; got {_shown(raw)}")
    value = int(raw)
    if not low <= value <= high:
        raise ValidationError(name, f"must be {form}; got {value}")
    return value


def parse_decimal(raw: str, name: str, *, high: float = 1e12) -> int | float:
    """*raw* as a decimal number from 0 to *high* (``12``, ``0.5``), written in
    ASCII digits with an optional ``.``: no sign, exponent, ``_``, ``nan`` or ``inf``.
    Whole numbers come back as `int`."""
    text = raw.strip()
    form = f"a number from 0 to {high:g} such as 12 or 0.5, written with the digits 0-9"
    if len(text) > 40 or not _DECIMAL.fullmatch(text):
        raise ValidationError(name, f"must be {form}; got {_shown(raw)}")
    value = float(text) if "." in text else int(text)
    if value > high:
        raise ValidationError(name, f"must be {form}; got {text}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def int_arg(
    name: str,
    default: int | None = None,
    *,
    low: int = 0,
    high: int = MAX_INT,
    source: Mapping[str, str] | None = None,
) -> int:
    """The query parameter (or, with *source*, form field) *name* as a whole
    number; *default* when it is absent or empty (required when None)."""
    values = request.args if source is None else source
    raw = values.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ValidationError(name, f"is required: a whole number from {low} to {high}")
        return default
    return parse_int(raw, name, low=low, high=high)


def optional_int_arg(name: str, *, low: int = 0, high: int = MAX_INT) -> int | None:
    """Like `int_arg`, but None when the parameter is absent or empty."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    return parse_int(raw, name, low=low, high=high)


class AsciiIntConverter(BaseConverter):
    """``<int:…>`` path segments: ASCII digits only, at most `MAX_INT`.

    Werkzeug's own converter matches ``\\d+``, which in Python also matches
    Arabic-Indic, fullwidth and other digits, so ``/portal/lots/٣`` opened lot 3.
    A segment that is no such number matches no route (404)."""

    regex = r"[0-9]{1,19}"
    weight = 50
    part_isolating = True

    def __init__(self, map: Map, *, max: int = MAX_INT) -> None:
        super().__init__(map)
        self.max = max

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > self.max:
            raise NoMatch()
        return number

    def to_url(self, value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"an <int> path segment takes a non-negative int, got {value!r}")
        return str(value)


def init_app(app: Flask) -> None:
    """Use `AsciiIntConverter` for every ``<int:…>`` route (call before the
    blueprints are registered)."""
    app.url_map.converters["int"] = AsciiIntConverter
