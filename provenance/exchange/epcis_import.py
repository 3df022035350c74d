"""Import of GS1 EPCIS 2.0 JSON-LD documents: each event becomes one signed envelope of kind
``epcis`` whose ``data.event`` is the event as the partner sent it (docs/epcis.md, "Import").

The pieces, in the order the CLI uses them:

0. `parse_document`: the JSON text, read as JSON.parse and JSON-LD processors read it: a
   member repeated in one object keeps its last value, and each repeat is reported
   (`DuplicateMember`). Signed envelopes stay strict (`jcs.parse_json` refuses repeats).
1. `epcis_validator` / `schema_problems`: the official EPCIS 2.0 JSON Schema with format
   checking on (`find_schema` says where it is looked for).
2. `prepare`: pure. Takes an EPCISDocument, an EPCISQueryDocument or one bare event and
   returns what will be stored for each event: the event verbatim, plus ``eventID`` (its
   CBV 2.0 Event Hash ID) when it has none, plus an event-level ``@context`` (the
   document's) when the document declares inline terms, so that the stored event means
   the same on its own; the envelope ``time`` (``eventTime`` in UTC) and the lots it names.
3. `import_events`: the adapter. Signs one envelope per new event as the importing party,
   with ``batches`` = the named lots that exist in the ledger, and appends them all or
   nothing. An event whose stored form is already in the ledger (under any signer) is a
   duplicate and is not stored again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provenance.core import gs1, jcs
from provenance.core.envelope import MAX_LOTS, Envelope
from provenance.core.errors import ProvenanceError, ValidationError
from provenance.core.jcs import canonicalize
from provenance.core.progress import Progress, counted
from provenance.exchange.canonical_values import normalise_identifier
from provenance.exchange.epcis_vocabulary import IMPORTED
from provenance.exchange.event_hash import document_events, event_hash, ignore_fields

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from jsonschema import Draft7Validator

    from provenance.ledger.append import Ledger
    from provenance.store.db import Store

SCHEMA_ENV = "PROVENANCE_EPCIS_SCHEMA"
SCHEMA_NAME = "EPCIS-JSON-Schema.json"
# The official schema, shipped with the package (schemas/epcis/NOTICE.md: GS1's, unmodified).
PACKAGED_SCHEMA = Path(__file__).resolve().parent / "schemas" / "epcis" / SCHEMA_NAME
DOCUMENT_TYPES = ("EPCISDocument", "EPCISQueryDocument")
MAX_PROBLEMS = 10  # schema problems listed in an error
MAX_REPEATS_TOLD = 10  # repeated members told one by one; the rest are counted
MAX_SHOWN = 80  # characters of a partner's path or value in a warning
MAX_FRACTION = 9  # fraction digits the protocol's `time` can carry

_EPC_LISTS = ("epcList", "childEPCs", "inputEPCList", "outputEPCList")
_QUANTITY_LISTS = ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList")
_EVENT_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})"
)
# A GS1 Digital Link URI naming a lot: /01/{GTIN}[/22/{cpv}]/10/{lot}[/21/{serial}], on any
# host and path stem, with AI codes or their short names (EPCIS allows both).
_DL_LOT = re.compile(
    r"[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+(?:/[^?#]*)?/(?:01|gtin)/([0-9]{8}|[0-9]{12,14})"
    r"(?:/(?:22|cpv)/[^/?#]+)?/(?:10|lot)/([^/?#]+)(?:/(?:21|ser)/[^/?#]+)?/?(?:[?#].*)?",
    re.DOTALL,
)


class EpcisInputError(ProvenanceError):
    """The input cannot be imported (not JSON, not EPCIS, no schema at hand)."""


# --- reading the JSON text


@dataclass(frozen=True)
class DuplicateMember:
    """A member name that appears more than once in one object of the input: where the
    object is (a JSON path), which event it is in (its position, or None outside events),
    the name, how many times it appears and the value kept (the last)."""

    path: str
    event: int | None
    name: str
    count: int
    kept: Any

    def warning(self) -> str:
        """One line for a terminal: names, path and value with every character that is not
        printable ASCII escaped (a partner's text never reaches the terminal raw)."""
        path = _printable(self.path)
        where = f"event {self.event} ({path})" if self.event is not None else path
        kept = _printable(json.dumps(self.kept, ensure_ascii=True))
        return (
            f"{where}: member {_printable(json.dumps(self.name))} appears {self.count} times;"
            f" the last is used: {kept}"
        )


def _printable(text: str) -> str:
    """*text* cut to `MAX_SHOWN` characters, anything but printable ASCII JSON-escaped."""
    shown = "".join(
        char if " " <= char <= "~" else json.dumps(char)[1:-1] for char in text[:MAX_SHOWN]
    )
    return shown + ("…" if len(text) > MAX_SHOWN else "")


class _Members(dict):  # type: ignore[type-arg]
    """An object as parsed: the last value of each member, and the names that repeat."""

    __slots__ = ("repeats",)


def _last_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = _Members(pairs)
    if len(members) != len(pairs):
        counts: dict[str, int] = {}
        for name, _ in pairs:
            counts[name] = counts.get(name, 0) + 1
        members.repeats = {name: n for name, n in counts.items() if n > 1}
    return members


_TOLERANT = json.JSONDecoder(
    object_pairs_hook=_last_wins,
    parse_constant=jcs._no_constants,  # the same rules as the strict parser, but repeats
    parse_float=jcs._parse_float,
    parse_int=jcs._parse_int,
)


def parse_document(raw: bytes | str, max_depth: int) -> tuple[Any, list[DuplicateMember]]:
    """The JSON value of an EPCIS input, and the members it repeats.

    Everything `jcs.parse_json` refuses is refused the same way (not UTF-8, NaN, too deep,
    malformed), except a member name repeated in one object: there the **last** value is
    kept, as ECMAScript's JSON.parse, Python's json, Jackson and so every JSON-LD processor
    and JSON Schema validator built on them read it (RFC 8259 §4: "many implementations
    report the last name/value pair only"), and each repeat is returned so the caller can
    say so. The official example AssociationEvent-h.jsonld repeats ``eventID``."""
    try:
        return jcs.parse_json(raw, max_depth=max_depth), []
    except ValidationError as strict:
        if not isinstance(strict.__cause__, jcs._DuplicateKey):
            raise
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw  # UTF-8: checked above
    try:
        value = _TOLERANT.decode(text)
    except RecursionError as exc:
        raise ValidationError("", f"nested deeper than {max_depth} levels") from exc
    except ValueError as exc:
        raise ValidationError("", f"malformed JSON: {exc}") from exc
    jcs._depth(value, max_depth)
    bare = isinstance(value, dict) and value.get("type") not in DOCUMENT_TYPES
    return _plain(value), list(_repeats(value, bare))


def _repeats(value: Any, bare: bool) -> Iterator[DuplicateMember]:
    """Every repeated member of *value* in document order, with its path and the event it
    is in (*bare*: the whole input is one event)."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    found = []
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for name, count in getattr(item, "repeats", {}).items():
                found.append((path, name, count, item[name]))
            stack.extend((child, (*path, key)) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, (*path, i)) for i, child in enumerate(item))
    in_order = sorted(
        found, key=lambda f: [(0, p, "") if isinstance(p, int) else (1, 0, p) for p in f[0]]
    )
    for path, name, count, kept in in_order:
        event = 0 if bare else _event_of(path)
        yield DuplicateMember(json_path(path) or "(document)", event, name, count, kept)


def _event_of(path: tuple[Any, ...]) -> int | None:
    """The position of the event a path is in: ``epcisBody.eventList[i]…`` (also inside
    ``queryResults.resultsBody``), ``epcisBody.event``, or a bare event (the whole input)."""
    for i, part in enumerate(path):
        if part == "eventList" and i + 1 < len(path) and isinstance(path[i + 1], int):
            return path[i + 1]
    if path[:2] == ("epcisBody", "event"):
        return 0
    return None


def _plain(value: Any) -> Any:
    """The parsed value with plain dicts (the repeats are told once, not carried along)."""
    if isinstance(value, dict):
        return {key: _plain(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_plain(child) for child in value]
    return value


# --- the schema


def find_schema(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The EPCIS 2.0 JSON Schema file: *explicit*, else ``$PROVENANCE_EPCIS_SCHEMA``, else
    the copy shipped with the package (`PACKAGED_SCHEMA`). Raises EpcisInputError saying
    where to get it when none exists (an installation that lost its package data)."""
    candidates = [Path(explicit)] if explicit else []
    if not explicit and os.environ.get(SCHEMA_ENV):
        candidates.append(Path(os.environ[SCHEMA_ENV]))
    if not candidates:
        candidates.append(PACKAGED_SCHEMA)
    for path in candidates:
        if path.is_file():
            return path
    raise EpcisInputError(
        f"no EPCIS JSON Schema at {candidates[0]}: pass --schema FILE or set {SCHEMA_ENV} "
        f"(the official {SCHEMA_NAME} of EPCIS 2.0, from https://ref.gs1.org/standards/epcis/)"
    )


def epcis_validator(schema: Mapping[str, Any]) -> Draft7Validator:
    """A draft-07 validator for *schema* with the ``uri`` and ``date-time`` format checks on
    (without them the schema lets ``"bizStep": "foo"`` through)."""
    try:
        from jsonschema import Draft7Validator
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
        raise EpcisInputError(
            "validating EPCIS needs jsonschema: pip install 'jsonschema[format-nongpl]'"
        ) from exc
    checker = Draft7Validator.FORMAT_CHECKER
    missing = {"uri", "date-time"} - set(checker.checkers)
    if missing:  # pragma: no cover - depends on the installation
        raise EpcisInputError(
            f"jsonschema cannot check the {', '.join(sorted(missing))} format here: "
            "pip install 'jsonschema[format-nongpl]'"
        )
    return Draft7Validator(schema, format_checker=checker)


def schema_problems(
    validator: Draft7Validator, document: Any, limit: int = MAX_PROBLEMS
) -> tuple[int, list[str]]:
    """(number of schema errors, the first *limit* as ``path: message``, in document
    order). For an error inside ``anyOf``/``oneOf`` the most relevant inner error is told."""
    from jsonschema.exceptions import best_match

    errors = sorted(
        validator.iter_errors(document),
        key=lambda e: [(0, p, "") if isinstance(p, int) else (1, 0, p) for p in e.absolute_path],
    )
    lines = []
    for error in errors[:limit]:
        deepest = error
        while deepest.context:
            deepest = best_match(deepest.context)
        message = deepest.message if len(deepest.message) <= 200 else deepest.message[:199] + "…"
        lines.append(f"{json_path(deepest.absolute_path) or '(document)'}: {message}")
    return len(errors), lines


def json_path(parts: Iterable[Any]) -> str:
    """``epcisBody.eventList[0].bizStep`` for a path of keys and indexes."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# --- preparing: pure


@dataclass(frozen=True)
class Prepared:
    """One event as it will be stored: *event* (verbatim, but for the fields named in
    *added*: ``eventID`` when it had none, ``@context`` when the document's was copied in),
    the envelope *time* (its eventTime in UTC) and the canonical lot URIs it names (*lots*,
    whether or not the ledger has them)."""

    position: int
    event: dict[str, Any]
    time: str
    lots: tuple[str, ...]
    added: tuple[str, ...] = ()

    @property
    def event_id(self) -> str:
        return self.event.get("eventID", "")


def prepare(document: Mapping[str, Any]) -> list[Prepared]:
    """What to store for each event of an EPCISDocument, an EPCISQueryDocument or one bare
    event (a JSON-LD event with its own ``@context``), in document order. Expects input the
    schema accepted; raises ValidationError (naming the event) for what it cannot carry."""
    if not isinstance(document, Mapping):
        raise ValidationError("", "an EPCIS document or event must be a JSON object")
    if document.get("type") in DOCUMENT_TYPES:
        events = document_events(document)
        doc_context = document.get("@context")
        ignore = ignore_fields(document)
        where = "epcisBody.eventList"
        if document.get("type") == "EPCISQueryDocument":
            where = "epcisBody.queryResults.resultsBody.eventList"
    else:
        events, doc_context, ignore, where = [document], None, [], "(event)"
    inline = _inline(doc_context)
    prepared = []
    for position, original in enumerate(events):
        name = where if where == "(event)" else f"{where}[{position}]"
        if not isinstance(original, Mapping):
            raise ValidationError(name, "must be an EPCIS event object")
        event = dict(original)
        added = []
        if "eventID" not in event:
            event["eventID"] = event_hash(original, context=doc_context, ignore=ignore)
            added.append("eventID")
        if inline:
            own = event.get("@context")
            event["@context"] = _merged(doc_context, own)
            if event["@context"] != own:
                added.append("@context")
        prepared.append(
            Prepared(
                position,
                event,
                utc_time(original.get("eventTime"), f"{name}.eventTime"),
                event_lots(original),
                tuple(added),
            )
        )
    return prepared


def _items(context: Any) -> list[Any]:
    if context is None:
        return []
    return list(context) if isinstance(context, list) else [context]


def _inline(context: Any) -> bool:
    """Whether a ``@context`` defines terms inline (not only by reference to URLs)."""
    return any(isinstance(item, Mapping) for item in _items(context))


def _merged(outer: Any, own: Any) -> Any:
    """The document's context, then the event's own (which JSON-LD lets override it), each
    item once (the schema wants unique items); a single item stays a single item."""
    items: list[Any] = []
    for item in [*_items(outer), *_items(own)]:
        if item not in items:
            items.append(item)
    return items[0] if len(items) == 1 else items


def utc_time(text: Any, field: str = "eventTime") -> str:
    """An xsd:dateTime with ``Z`` or a ``±hh:mm`` offset as the protocol's UTC form
    (``2005-04-03T20:33:31.116-06:00`` → ``2005-04-04T02:33:31.116Z``): the same instant, its
    fraction digits kept (at most 9)."""
    match = _EVENT_TIME.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise ValidationError(field, f"must be a date-time with Z or a ±hh:mm offset; got {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError as exc:
        raise ValidationError(field, f"{text!r} is not a real time: {exc}") from None
    if zone != "Z":
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        try:
            moment -= offset if zone[0] == "+" else -offset
        except OverflowError:
            raise ValidationError(field, f"{text!r} is out of range in UTC") from None
    tail = f".{fraction[:MAX_FRACTION]}" if fraction else ""
    m = moment
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}{tail}Z"
    )


def lot_of(identifier: Any) -> str | None:
    """The canonical lot URI (``https://id.gs1.org/01/{GTIN-14}/10/{lot}``) an EPC
    identifier names: an LGTIN class (``urn:epc:class:lgtin:…``) or a GS1 Digital Link URI
    with a lot, class-level or with a serial (an item of the lot); None otherwise."""
    if not isinstance(identifier, str):
        return None
    text = identifier.strip()
    if text.startswith("urn:epc:class:lgtin:"):
        text = normalise_identifier(text) or ""
    match = _DL_LOT.fullmatch(text)
    if not match:
        return None
    try:
        gtin = gs1.normalize_gtin(match[1])
        lot = gs1.validate_lot(gs1.percent_decode(match[2]))
        return gs1.lot_uri(gtin, lot)
    except ValidationError:
        return None


def event_lots(event: Mapping[str, Any]) -> tuple[str, ...]:
    """Every lot an event names, sorted: classes in its quantity lists, Digital Link items
    with a lot in its EPC lists and parentID."""
    found: set[str] = set()
    for name in _QUANTITY_LISTS:
        for element in _list(event.get(name)):
            if isinstance(element, Mapping) and (uri := lot_of(element.get("epcClass"))):
                found.add(uri)
    for name in _EPC_LISTS:
        for identifier in _list(event.get(name)):
            if uri := lot_of(identifier):
                found.add(uri)
    if uri := lot_of(event.get("parentID")):
        found.add(uri)
    return tuple(sorted(found))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def content_key(event: Mapping[str, Any]) -> bytes:
    """SHA-256 of the RFC 8785 text of ``{"event": event}``: of the `epcis` envelope's
    stored ``data``. Two imports of the same event have the same key."""
    return hashlib.sha256(canonicalize({"event": event})).digest()


# --- importing: the adapter


@dataclass
class Outcome:
    """What happened to one event: ``stored``, ``duplicate`` (already in the ledger, as
    *ledger_id*), ``rejected`` (with *message*) or ``aborted`` (fine, but the import was
    all or nothing and another event was rejected)."""

    position: int
    status: str
    event_id: str
    ledger_id: str | None = None
    lots: tuple[str, ...] = ()
    message: str | None = None


@dataclass
class ImportReport:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.status in ("stored", "duplicate") for o in self.outcomes)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


def import_events(
    ledger: Ledger,
    key: Ed25519PrivateKey,
    prepared: Sequence[Prepared],
    *,
    source: str | None = "import epcis",
    progress: Progress | None = None,
) -> ImportReport:
    """Sign and append one ``epcis`` envelope per new event as the holder of *key*, all or
    nothing. ``batches`` lists the lots the event names that the ledger has (none: the
    event is filed under the signer's EPCIS stream). Each envelope must pass the wire
    checks (64 KiB, 32 levels). Seqs follow the signer's highest (`ledger.signer.Signer`).
    *progress* is told how many of the events have been prepared and signed
    (`provenance.core.progress`); the append that follows is one transaction."""
    from provenance.ledger.signer import Signer

    store = ledger.store
    keys = [content_key(item.event) for item in prepared]
    stored = find_imported(store, set(keys))
    lots_known: dict[str, bool] = {}

    def known(uri: str) -> bool:
        if uri not in lots_known:
            lots_known[uri] = store.lot_by_uri(uri) is not None
        return lots_known[uri]

    report = ImportReport()
    signer = Signer(ledger, key)
    envelopes: list[Envelope] = []
    pending: list[Outcome] = []
    firsts: dict[bytes, Outcome] = {}  # content key -> its first outcome in this document
    copies: list[tuple[Outcome, Outcome]] = []  # (a repeat in the document, its first)
    walk = counted(zip(prepared, keys, strict=True), len(prepared), progress, every=64)
    for item, content in walk:
        lots = tuple(uri for uri in item.lots if known(uri))
        outcome = Outcome(item.position, "stored", item.event_id, lots=lots)
        report.outcomes.append(outcome)
        if content in stored:
            outcome.status, outcome.ledger_id = "duplicate", stored[content]
            if content in firsts:
                copies.append((outcome, firsts[content]))
            continue
        try:
            if len(lots) > MAX_LOTS:
                raise ValidationError(
                    "batches", f"the event names {len(lots)} ledger lots; at most {MAX_LOTS}"
                )
            envelope = signer.sign(
                IMPORTED, {"event": item.event}, lots=list(lots) or None, time=item.time
            )
            Envelope.from_json(envelope.canonical_bytes())  # the wire's size and depth limits
        except ValidationError as exc:
            outcome.status, outcome.message = "rejected", str(exc)
            continue
        outcome.ledger_id = envelope.event_id
        stored[content] = envelope.event_id  # the same event again in this document
        firsts[content] = outcome
        envelopes.append(envelope)
        pending.append(outcome)
    if not report.ok:
        _abort(pending)
        return report
    if envelopes:
        for outcome, result in zip(
            pending, signer.append(envelopes, atomic=True, source=source), strict=True
        ):
            outcome.ledger_id = result.event_id  # signed again if another writer took its seq
            if result.status == "duplicate":
                outcome.status = "duplicate"
            elif result.status in ("rejected", "aborted"):
                outcome.status = result.status
                outcome.message = f"{result.reason}: {result.message}"
        for copy, first in copies:
            copy.ledger_id = first.ledger_id
        if not report.ok:
            _abort(pending)
    return report


def _abort(outcomes: Iterable[Outcome]) -> None:
    for outcome in outcomes:
        if outcome.status in ("stored", "duplicate") and outcome.message is None:
            outcome.status, outcome.ledger_id = "aborted", None
            outcome.message = "not stored: another event of the document was rejected"


def find_imported(store: Store, keys: set[bytes]) -> dict[bytes, str]:
    """Which of the content *keys* the ledger already holds: key → ledger event id. Scans
    the stored ``epcis`` events once (their data is kept as RFC 8785 text)."""
    found: dict[bytes, str] = {}
    if not keys:
        return found
    for row in store.event_rows(kinds=[IMPORTED]):
        digest = hashlib.sha256(row[7].encode("utf-8")).digest()
        if digest in keys and digest not in found:
            found[digest] = store.event_from_row(row).envelope.event_id
    return found
