"""GS1 Digital Link URIs generated and parsed exactly as the GS1 Barcode Syntax Engine does.

:class:`DigitalLink` is a primary key with its key qualifiers, GS1 data attributes and other
query parameters, in the engine's AI order, percent-encoding and key-qualifier and
data-attribute rules; the resolver's entry points are :func:`parse_digital_link` and
:func:`expiry` (the clock is read only when a caller leaves ``today`` out). Byte-level
behaviour is checked against the engine's own test vectors in ``tests/test_gs1.py``; lot
identifiers and their canonical URIs are :mod:`provenance.core.gs1`. Pure otherwise:
strings in, values out, :class:`~provenance.barcodes.dictionary.GS1SyntaxError` on bad
input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from provenance.barcodes.ai_values import _CENTURY_WINDOW, _check_value, _days_in_month, _definition
from provenance.barcodes.dictionary import (
    AI_TABLE,
    AIDefinition,
    GS1SyntaxError,
)
from provenance.barcodes.element_strings import (
    _FIELD_ELEMENT_STRING,
    AIPairs,
    _check_associations,
    format_element_string,
    parse_element_string,
)
from provenance.core.errors import ValidationError
from provenance.core.gs1 import (
    AI_BATCH_LOT,
    AI_CPV,
    AI_EXPIRY,
    AI_GTIN,
    AI_SERIAL,
    DEFAULT_BASE,
    GTIN14_LENGTH,
    LotId,
    _require_str,
    _split_uri,
    _stem,
    normalize_gtin,
    percent_decode,
    percent_encode,
)

__all__ = [
    "DigitalLink",
    "expiry",
    "parse_digital_link",
]


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
