"""The EPCIS Event Hash ID of GS1 CBV 2.0 §8.9: a fingerprint of an EPCIS event that does
not depend on its syntax (JSON-LD or XML), on key order, on whitespace, on CURIE prefixes or
on the spelling of identifiers.

    ni:///sha-256;<hex of SHA-256(pre-hash string)>?ver=CBV2.0

The *pre-hash string* concatenates ``key=value`` pieces without separators:

1. ``eventType=…``, then the standard fields in the canonical property order (`ORDER`):
   eventTime, eventTimeZoneOffset, certificationInfo, parentID, the EPC and quantity lists,
   action, transformationID, bizStep, disposition, persistentDisposition, readPoint,
   bizLocation, sensorElementList. A list contributes its name once, then its elements'
   strings sorted (``epcListepc=…epc=…``); a structured element contributes its name, its
   fields in their order, then its user extensions (sorted).
2. Then everything else at event level — bizTransactionList, sourceList, destinationList,
   ilmd and the user extensions — each rendered generically and the pieces sorted together.
   (CBV 2.0 lists the first three among the ordered fields; the published reference vectors
   sort them with the extensions, so ``destinationList`` precedes ``sourceList``. We follow
   the vectors.) A ``type`` of a business transaction, source or destination comes before
   its value.
3. Values are normalised: surrounding whitespace trimmed; timestamps in UTC with exactly
   three fraction digits (the third rounded up when the fourth is 5–9); numbers without
   trailing zeros (``26.0`` → ``26``); CURIEs expanded (``gs1:Temperature`` →
   ``https://gs1.org/voc/Temperature``); bare CBV names expanded by field (``in_transit`` →
   ``https://ref.gs1.org/cbv/Disp-in_transit``); ``urn:epcglobal:cbv:…`` URNs rewritten as
   web URIs; EPC URNs (``urn:epc:id:…``, ``urn:epc:class:…``, ``urn:epc:idpat:…``) rewritten
   as canonical GS1 Digital Link URIs; Digital Link URIs constrained (``https://id.gs1.org``,
   no query string, primary-key AI codes instead of short names, GTIN-14, no CPV, no lot when
   a serial is present). Extension keys become ``{namespace}localName``.
4. Left out: ``eventID``, ``recordTime``, ``errorDeclaration``, comments, JSON-LD keywords
   and any field a document names in an ``…:ignoreFields`` list.

Pure: takes values, returns values. `document_hashes` reads a whole EPCISDocument or
EPCISQueryDocument (its ``@context`` prefixes and ignore lists); `event_hash` one event.
Reference: github.com/RalphTro/epcis-event-hash-generator (by the algorithm's author);
``tests/test_event_hash.py`` checks every vector it publishes, and runs the implementation
itself (the ``epcis-event-hash-generator`` package) on every vector, official example and
exported event. Where that prototype departs from the CBV text, docs/epcis.md lists its bugs
and what we do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from provenance.core import gs1
from provenance.core.errors import ValidationError

CBV_VERSION = "CBV2.0"
HASH_PREFIX = "ni:///sha-256;"

# Prefixes the EPCIS 2.0 JSON-LD context defines; CBV 2.0 requires expanding CURIEs in them.
EPCIS_PREFIXES: Mapping[str, str] = {
    "epcis": "https://ref.gs1.org/epcis/",
    "cbv": "https://ref.gs1.org/cbv/",
    "cbvmda": "urn:epcglobal:cbv:mda:",
    "gs1": "https://gs1.org/voc/",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dcterms": "http://purl.org/dc/terms/",
}

CBV = "https://ref.gs1.org/cbv/"
GS1_VOC = "https://gs1.org/voc/"

# --- the canonical property order (CBV 2.0 §8.9.2)

_QUANTITY = ("epcClass", "quantity", "uom")
SENSOR_METADATA = (
    "time",
    "startTime",
    "endTime",
    "deviceID",
    "deviceMetadata",
    "rawData",
    "dataProcessingMethod",
    "bizRules",
)
SENSOR_REPORT = (
    "type",
    "exception",
    "deviceID",
    "deviceMetadata",
    "rawData",
    "dataProcessingMethod",
    "time",
    "microorganism",
    "chemicalSubstance",
    "value",
    "component",
    "stringValue",
    "booleanValue",
    "hexBinaryValue",
    "uriValue",
    "minValue",
    "maxValue",
    "meanValue",
    "sDev",
    "percRank",
    "percValue",
    "uom",
    "coordinateReferenceSystem",
)

# (field, shape): "value" a scalar (or a list of scalars), "epcs" a list of identifiers,
# "quantities" a list of quantity elements, "id" an object with an id (readPoint,
# bizLocation), "persistent" set/unset lists, "sensors" the sensor element list.
ORDER: tuple[tuple[str, str], ...] = (
    ("eventTime", "value"),
    ("eventTimeZoneOffset", "value"),
    ("certificationInfo", "value"),
    ("parentID", "value"),
    ("epcList", "epcs"),
    ("inputEPCList", "epcs"),
    ("childEPCs", "epcs"),
    ("quantityList", "quantities"),
    ("childQuantityList", "quantities"),
    ("inputQuantityList", "quantities"),
    ("outputEPCList", "epcs"),
    ("outputQuantityList", "quantities"),
    ("action", "value"),
    ("transformationID", "value"),
    ("bizStep", "value"),
    ("disposition", "value"),
    ("persistentDisposition", "persistent"),
    ("readPoint", "id"),
    ("bizLocation", "id"),
    ("sensorElementList", "sensors"),
)
_ORDERED = frozenset(name for name, _ in ORDER)

# Event-level fields that never take part in the hash.
IGNORED = frozenset({"type", "eventID", "recordTime", "errorDeclaration"})
# Keys ignored at every level: comments and JSON-LD/XML-conversion keywords.
_COMMENTS = frozenset({"comment", "rdfs:comment", "#text"})

# Lists whose elements are (type, value) pairs; the type comes first.
_TYPED_LISTS = {
    "bizTransactionList": ("bizTransaction", CBV + "BTT-"),
    "sourceList": ("source", CBV + "SDT-"),
    "destinationList": ("destination", CBV + "SDT-"),
}

# Bare CBV / GS1 Web Vocabulary names, by the field they appear in.
_VOCAB_PREFIX = {
    "bizStep": CBV + "BizStep-",
    "disposition": CBV + "Disp-",
    "set": CBV + "Disp-",
    "unset": CBV + "Disp-",
    "reason": CBV + "ER-",
}
_SENSOR_VOCAB_PREFIX = {
    "type": GS1_VOC,
    "exception": GS1_VOC,
    "component": CBV + "Comp-",
}

_SENSOR_REPORT_FIELDS = {name: _SENSOR_VOCAB_PREFIX.get(name) for name in SENSOR_REPORT}
_SENSOR_METADATA_FIELDS: dict[str, str | None] = dict.fromkeys(SENSOR_METADATA)
_QUANTITY_FIELDS: dict[str, str | None] = dict.fromkeys(_QUANTITY)
_SENSOR_ELEMENT_FIELDS = frozenset({"sensorMetadata", "sensorReport"})
_MEMO_LIMIT = 65_536  # values memoised per event (sensor events repeat units, types, ids)
_TIME_FIELDS = frozenset({"eventTime", "time", "startTime", "endTime"})

_CBV_URNS = (
    ("urn:epcglobal:cbv:bizstep:", CBV + "BizStep-"),
    ("urn:epcglobal:cbv:disp:", CBV + "Disp-"),
    ("urn:epcglobal:cbv:btt:", CBV + "BTT-"),
    ("urn:epcglobal:cbv:sdt:", CBV + "SDT-"),
    ("urn:epcglobal:cbv:er:", CBV + "ER-"),
)

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_CURIE = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*):(?!//)(.*)", re.DOTALL)
# UTC with exactly three fraction digits and a four-digit year from 1000: nothing to change.
_CANONICAL_TIME = re.compile(
    r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"
)
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:[.,]([0-9]+))?)?\s*(Z|z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)


# --- public API


def event_hash(event: Mapping[str, Any], *, context: Any = None, ignore: Iterable[str] = ()) -> str:
    """The EPCIS Event Hash ID of one EPCIS 2.0 JSON-LD event.

    *context* is the ``@context`` of the document the event sits in (its prefixes expand
    CURIEs; the EPCIS context's own prefixes always apply); *ignore* names extra fields to
    leave out (a document's ``ignoreFields``). Raises ValidationError if *event* is not an
    object with a ``type``.
    """
    return hash_prehash(prehash(event, context=context, ignore=ignore))


def prehash(event: Mapping[str, Any], *, context: Any = None, ignore: Iterable[str] = ()) -> str:
    """The canonical pre-hash string of one event (see the module docstring)."""
    return Prehasher(context, ignore).prehash(event)


class Prehasher:
    """Pre-hash strings of many events of one document (one ``@context``, one ignore list),
    sharing what it has already expanded: a whole-ledger export hashes thousands of events
    that repeat the same names, units and identifiers.

    `sensor_piece` renders one sensorElement on its own, and `prehash` can take such pieces
    in place of the event's ``sensorElementList``: the pieces are independent of each other,
    so a writer can render each reading once, as it goes, and keep only text."""

    def __init__(self, context: Any = None, ignore: Iterable[str] = ()):
        self._namespaces = dict(EPCIS_PREFIXES)
        self._namespaces.update(prefixes(context))
        self._ignore = tuple(ignore)
        self._renderer = _Renderer(self._namespaces, self._ignore)

    def _renderer_for(self, event: Mapping[str, Any]) -> _Renderer:
        own = prefixes(event.get("@context"))
        if not own:
            return self._renderer
        return _Renderer({**self._namespaces, **own}, self._ignore)

    def prehash(
        self, event: Mapping[str, Any], *, sensor_pieces: Iterable[str] | None = None
    ) -> str:
        """The pre-hash string of *event*; with *sensor_pieces* (from `sensor_piece`), those
        stand for its sensorElementList."""
        if not isinstance(event, Mapping):
            raise ValidationError("event", "must be a JSON object")
        event_type = event.get("type")
        if not isinstance(event_type, str) or not event_type.strip():
            raise ValidationError("event.type", "must name the event type, e.g. ObjectEvent")
        render = self._renderer_for(event)
        return "eventType=" + event_type.strip() + render.event(event, sensor_pieces)

    def event_hash(
        self, event: Mapping[str, Any], *, sensor_pieces: Iterable[str] | None = None
    ) -> str:
        return hash_prehash(self.prehash(event, sensor_pieces=sensor_pieces))

    def sensor_piece(self, element: Mapping[str, Any]) -> str:
        """The pre-hash piece of one sensorElement of an event without its own context."""
        return self._renderer.sensor_element(element)


def hash_prehash(pre_hash: str) -> str:
    """``ni:///sha-256;<hex>?ver=CBV2.0`` of a pre-hash string (SHA-256 of its UTF-8)."""
    return (
        HASH_PREFIX + hashlib.sha256(pre_hash.encode("utf-8")).hexdigest() + "?ver=" + CBV_VERSION
    )


def document_events(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The events of an EPCISDocument (``epcisBody.eventList`` or ``epcisBody.event``) or of
    an EPCISQueryDocument (``epcisBody.queryResults.resultsBody.eventList``)."""
    body = _object(document, "epcisBody")
    results = body.get("queryResults")
    if isinstance(results, Mapping):
        body = _object(results, "resultsBody")
    if "eventList" in body:
        events = body["eventList"]
        if not isinstance(events, list):
            raise ValidationError("eventList", "must be a list of events")
        return events
    if "event" in body:
        return [body["event"]]
    raise ValidationError("epcisBody", "has no eventList")


def document_prehashes(document: Mapping[str, Any]) -> list[str]:
    """The pre-hash string of every event of *document*, in document order."""
    context = document.get("@context")
    ignore = ignore_fields(document)
    return [prehash(event, context=context, ignore=ignore) for event in document_events(document)]


def document_hashes(document: Mapping[str, Any]) -> list[str]:
    """The Event Hash ID of every event of *document*, in document order."""
    return [hash_prehash(text) for text in document_prehashes(document)]


def prefixes(context: Any) -> dict[str, str]:
    """CURIE prefixes declared inline in a JSON-LD ``@context`` (a URL, an object or a list
    of both); remote contexts (URLs) contribute nothing here."""
    found: dict[str, str] = {}
    for item in context if isinstance(context, list) else [context]:
        if not isinstance(item, Mapping):
            continue
        for term, definition in item.items():
            iri = definition.get("@id") if isinstance(definition, Mapping) else definition
            if isinstance(iri, str) and not iri.startswith("@") and not term.startswith("@"):
                found[term] = iri
    return found


def ignore_fields(document: Mapping[str, Any]) -> list[str]:
    """Field names listed under any ``<prefix>:ignoreFields`` key of the document, its body
    or its query results (the convention of the reference vectors)."""
    found: list[str] = []
    holders = [document]
    body = document.get("epcisBody")
    if isinstance(body, Mapping):
        holders.append(body)
        results = body.get("queryResults")
        if isinstance(results, Mapping):
            holders.append(results)
    for holder in holders:
        for key, value in holder.items():
            if key.rsplit(":", 1)[-1] == "ignoreFields" and isinstance(value, list):
                found.extend(item for item in value if isinstance(item, str))
    return found


# --- rendering


class _Renderer:
    def __init__(self, namespaces: Mapping[str, str], ignore: Iterable[str]):
        self.namespaces = namespaces
        self._keys: dict[str, str] = {}  # key names repeat across elements: memoised
        self._values: dict[tuple[Any, ...], str] = {}  # and so do many values
        self._skips: dict[str, bool] = {}
        ignored = set(_COMMENTS)
        for name in ignore:
            ignored.add(name)
            ignored.add(self.key(name))
        self.ignored = frozenset(ignored)

    # names and values

    def key(self, name: str) -> str:
        """``prefix:local`` → ``{namespace}local`` for a known prefix."""
        expanded = self._keys.get(name)
        if expanded is None:
            match = _CURIE.fullmatch(name)
            if match and match[1] in self.namespaces:
                expanded = "{" + self.namespaces[match[1]] + "}" + match[2]
            else:
                expanded = name
            self._keys[name] = expanded
        return expanded

    def skip(self, name: str) -> bool:
        """Whether a key takes no part: JSON-LD keywords, comments, ignored fields."""
        skipped = self._skips.get(name)
        if skipped is None:
            skipped = self._skips[name] = (
                name.startswith("@") or name in self.ignored or self.key(name) in self.ignored
            )
        return skipped

    def value(self, value: Any, vocab: str | None = None) -> str:
        """The canonical text of a scalar (vocab: the URI prefix of a bare CBV name)."""
        key = (value.__class__, value, vocab)  # the class too: 1, 1.0 and True are equal
        try:
            return self._values[key]
        except KeyError:
            pass
        except TypeError:  # not hashable: not a scalar, rendered as text
            return self._value(value, vocab)
        text = self._value(value, vocab)
        if len(self._values) < _MEMO_LIMIT:
            self._values[key] = text
        return text

    def _value(self, value: Any, vocab: str | None) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is None:
            return ""
        text = str(value).strip()
        if not text:
            return ""
        if isinstance(value, str):
            match = _CURIE.fullmatch(text)
            if match and match[1] in self.namespaces:
                text = self.namespaces[match[1]] + match[2]
            elif vocab and ":" not in text:
                text = vocab + text
            for urn, uri in _CBV_URNS:
                text = text.replace(urn, uri)
        text = canonical_number(text)
        return normalise_identifier(text) or text

    def pair(self, name: str, value: Any, vocab: str | None = None) -> str:
        if name in _TIME_FIELDS and isinstance(value, str):
            text = normalise_time(value) or value.strip()
        else:
            text = self.value(value, vocab)
        return f"{name}={text}" if text else ""

    # the event

    def event(self, event: Mapping[str, Any], sensor_pieces: Iterable[str] | None = None) -> str:
        ordered: list[str] = []
        rest: list[str] = []
        handled: set[str] = set()
        for name, shape in ORDER:
            if shape == "sensors" and sensor_pieces is not None:
                if not self.skip(name):
                    ordered.append(self.named(name, list(sensor_pieces)))
                handled.add(name)
            elif name in event and not self.skip(name):
                text = self.field(name, shape, event[name])
                if text is not None:
                    ordered.append(text)
                    handled.add(name)
        for name, value in event.items():
            if name in handled or name in IGNORED or self.skip(name):
                continue
            rest.extend(self.generic(name, value))
        return "".join(ordered) + "".join(sorted(rest))

    def field(self, name: str, shape: str, value: Any) -> str | None:
        """One ordered field, or None to leave it to the generic rendering (wrong shape)."""
        if shape == "value":
            items = value if isinstance(value, list) else [value]
            if any(isinstance(item, (Mapping, list)) for item in items):
                return None
            return "".join(sorted(self.pair(name, item, _VOCAB_PREFIX.get(name)) for item in items))
        if shape == "epcs":
            items = value if isinstance(value, list) else [value]
            if any(isinstance(item, (Mapping, list)) for item in items):
                return None
            return self.named(name, [self.pair("epc", item) for item in items])
        if shape in ("quantities", "sensors"):
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(item, Mapping) for item in items):
                return None
            render = self.quantity if shape == "quantities" else self.sensor_element
            return self.named(name, [render(item) for item in items])
        if not isinstance(value, Mapping):
            return None
        if shape == "id":
            return self.structure(name, value, {"id": None})
        return self.structure(name, value, {"set": CBV + "Disp-", "unset": CBV + "Disp-"})

    @staticmethod
    def named(name: str, pieces: list[str]) -> str:
        """A list's name once, then its elements sorted; nothing for an empty list."""
        body = "".join(sorted(pieces))
        return name + body if body else ""

    def structure(
        self, name: str, value: Mapping[str, Any], fields: Mapping[str, str | None]
    ) -> str:
        """An object with ordered fields (each may repeat as a list), then its extensions."""
        text = ""
        for field, vocab in fields.items():
            if field in value and not self.skip(field):
                item = value[field]
                if isinstance(item, list):
                    text += "".join(sorted(self.pair(field, one, vocab) for one in item))
                else:
                    text += self.pair(field, item, vocab)
        text += self.extensions(value, fields)
        return name + text if text else ""

    def extensions(self, value: Mapping[str, Any], known: Iterable[str]) -> str:
        if not isinstance(known, (dict, set, frozenset)):
            known = set(known)
        pieces = [
            piece
            for key, item in value.items()
            if key not in known and not self.skip(key)
            for piece in self.generic(key, item)
        ]
        return "".join(sorted(pieces))

    def quantity(self, element: Mapping[str, Any]) -> str:
        return self.structure("quantityElement", element, _QUANTITY_FIELDS)

    def sensor_element(self, element: Mapping[str, Any]) -> str:
        text = ""
        metadata = element.get("sensorMetadata")
        if isinstance(metadata, Mapping) and not self.skip("sensorMetadata"):
            text += self.structure("sensorMetadata", metadata, _SENSOR_METADATA_FIELDS)
        reports = element.get("sensorReport")
        if reports is not None and not self.skip("sensorReport"):
            reports = reports if isinstance(reports, list) else [reports]
            text += "".join(
                sorted(
                    self.structure("sensorReport", report, _SENSOR_REPORT_FIELDS)
                    for report in reports
                    if isinstance(report, Mapping)
                )
            )
        text += self.extensions(element, _SENSOR_ELEMENT_FIELDS)
        return "sensorElement" + text if text else ""

    # everything else: ilmd, typed lists, user extensions

    def generic(self, name: str, value: Any) -> list[str]:
        """Pieces for one key: ``key=value``, or ``key`` followed by its children sorted; a
        list gives one piece per element, or, for a key ending in ``List``, one piece whose
        children are the elements named without the suffix."""
        key = self.key(name)
        if name in _TYPED_LISTS:
            items = value if isinstance(value, list) else [value]
            return [key + "".join(sorted(self.typed(name, item) for item in items))]
        if key.endswith("List") and isinstance(value, (list, Mapping)):
            items = value if isinstance(value, list) else [value]
            inner = key[:-4]
            pieces = [piece for item in items for piece in self.generic_item(inner, item)]
            return [key + "".join(sorted(pieces))]
        if isinstance(value, list):
            return [piece for item in value for piece in self.generic_item(key, item)]
        return self.generic_item(key, value)

    def generic_item(self, key: str, value: Any) -> list[str]:
        if isinstance(value, list):
            return [piece for item in value for piece in self.generic_item(key, item)]
        if isinstance(value, Mapping):
            children = [
                piece
                for name, item in value.items()
                if not self.skip(name)
                for piece in self.generic(name, item)
            ]
            return [key + "".join(sorted(children))]
        text = self.value(value)
        return [f"{key}={text}" if text else key]

    def typed(self, name: str, item: Any) -> str:
        """``type=…`` then ``bizTransaction=…`` (or source/destination), then extras."""
        if not isinstance(item, Mapping):
            return "".join(self.generic_item(_TYPED_LISTS[name][0], item))
        field, vocab = _TYPED_LISTS[name]
        text = self.pair("type", item["type"], vocab) if "type" in item else ""
        if field in item:
            text += self.pair(field, item[field])
        return text + self.extensions(item, ("type", field))


def _object(holder: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = holder.get(name) if isinstance(holder, Mapping) else None
    if not isinstance(value, Mapping):
        raise ValidationError(name, "must be an object")
    return value


# --- value normalisation


def canonical_number(text: str) -> str:
    """A decimal number without leading ``+``, leading zeros or trailing zeros
    (``"026.50"`` → ``"26.5"``, ``"1.0"`` → ``"1"``), as the reference implementation
    writes it (through an IEEE double); anything else unchanged."""
    if not _NUMBER.fullmatch(text):
        return text
    number = float(text)
    if number != number or number in (float("inf"), float("-inf")):
        return text
    if number == int(number):
        return str(int(number))
    return repr(number)


@lru_cache(maxsize=4096)
def _real_day(day: str) -> bool:
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        return False
    return True


def _real_time(text: str) -> bool:
    """Whether a ``YYYY-MM-DDTHH:MM:SS.mmmZ`` text names a real instant (no leap second)."""
    return (
        _real_day(text[:10])
        and int(text[11:13]) < 24
        and int(text[14:16]) < 60
        and int(text[17:19]) < 60
    )


def normalise_time(text: str) -> str | None:
    """An ISO 8601 date-time in UTC with milliseconds (``…T10:00:30.000Z``), the third
    fraction digit rounded up when the fourth is 5–9; None if *text* is not a date-time.
    A time without an offset is taken as UTC."""
    if _CANONICAL_TIME.fullmatch(text) and _real_time(text):
        return text  # already UTC with milliseconds (every time the ledger writes)
    match = _TIMESTAMP.fullmatch(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=UTC
        )
    except ValueError:
        return None
    fraction = fraction or ""
    millis = int(fraction[:3].ljust(3, "0"))
    if len(fraction) > 3 and fraction[3] >= "5":
        millis += 1
    moment += timedelta(milliseconds=millis)
    if zone and zone not in ("Z", "z"):
        digits = zone[1:].replace(":", "").ljust(4, "0")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        moment -= offset if zone[0] == "+" else -offset
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- identifiers: EPC URNs and GS1 Digital Link URIs

DL_STEM = "https://id.gs1.org/"

# Characters GS1 Digital Link percent-encodes but EPC URIs may carry literally.
_DL_ESCAPES = {"!": "%21", "(": "%28", ")": "%29", "*": "%2A", "+": "%2B", ",": "%2C", ":": "%3A"}
_EPC_CHAR = r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9!'()*+,\-.:;=_])"
_SERIAL = re.compile(_EPC_CHAR + r"+")


def _dl_escape(text: str) -> str:
    return "".join(_DL_ESCAPES.get(char, char) for char in text)


def _with_check_digit(body: str) -> str:
    return body + gs1.check_digit(body)


def _split(rest: str, count: int) -> list[str] | None:
    parts = rest.split(".", count - 1)
    return parts if len(parts) == count else None


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _prefix_and_reference(cp: str, ref: str, digits: int) -> bool:
    """A company prefix of 6–12 digits and a numeric reference filling *digits* together."""
    return (6 <= len(cp) <= 12 and _digits(cp) and (ref == "" or _digits(ref))) and len(cp) + len(
        ref
    ) == digits


def _gtin(cp: str, indicator_and_item: str) -> str | None:
    if not _prefix_and_reference(cp, indicator_and_item, 13) or not indicator_and_item:
        return None
    return _with_check_digit(indicator_and_item[0] + cp + indicator_and_item[1:])


def _serial(text: str) -> str | None:
    return _dl_escape(text) if _SERIAL.fullmatch(text) else None


def _epc_id(scheme: str, rest: str) -> str | None:
    """Digital Link path (after the stem) of an EPC pure identity URI body."""
    if scheme in ("sgtin", "upui"):
        parts = _split(rest, 3)
        gtin = parts and _gtin(parts[0], parts[1])
        serial = parts and _serial(parts[2])
        if not gtin or not serial:
            return None
        return f"01/{gtin}/{'21' if scheme == 'sgtin' else '235'}/{serial}"
    if scheme == "sscc":
        parts = _split(rest, 2)
        if not parts or not _prefix_and_reference(parts[0], parts[1], 17):
            return None
        return "00/" + _with_check_digit(parts[1][0] + parts[0] + parts[1][1:])
    if scheme in ("sgln", "grai", "gdti", "sgcn"):
        parts = _split(rest, 3)
        if not parts or not _prefix_and_reference(parts[0], parts[1], 12):
            return None
        key = _with_check_digit(parts[0] + parts[1])
        extra = parts[2]
        if scheme == "sgln":
            serial = _serial(extra)
            if serial is None:
                return None
            return f"414/{key}" if extra == "0" else f"414/{key}/254/{serial}"
        if scheme == "grai":
            serial = _serial(extra)
            return None if serial is None else f"8003/0{key}{serial}"
        if scheme == "sgcn":
            return f"255/{key}{extra}" if _digits(extra) else None
        serial = _serial(extra) if extra else ""
        return None if serial is None else f"253/{key}{serial}"
    if scheme in ("gsrn", "gsrnp", "gsin", "pgln"):
        parts = _split(rest, 2)
        digits = {"gsrn": 17, "gsrnp": 17, "gsin": 16, "pgln": 12}[scheme]
        if not parts or not _prefix_and_reference(parts[0], parts[1], digits):
            return None
        ai = {"gsrn": "8018", "gsrnp": "8017", "gsin": "402", "pgln": "417"}[scheme]
        return f"{ai}/" + _with_check_digit(parts[0] + parts[1])
    if scheme in ("giai", "ginc"):
        parts = _split(rest, 2)
        if not parts or not (6 <= len(parts[0]) <= 12 and _digits(parts[0])):
            return None
        serial = _serial(parts[1])
        return (
            None
            if serial is None
            else f"{'8004' if scheme == 'giai' else '401'}/{parts[0]}{serial}"
        )
    if scheme == "cpi":
        parts = rest.split(".")
        if len(parts) < 3 or not (6 <= len(parts[0]) <= 12 and _digits(parts[0])):
            return None
        cp, reference, serial = parts[0], ".".join(parts[1:-1]), parts[-1]
        if not _digits(serial) or not _SERIAL.fullmatch(reference):
            return None
        return f"8010/{cp}{_dl_escape(reference)}/8011/{serial}"
    if scheme == "itip":
        parts = _split(rest, 5)
        gtin = parts and _gtin(parts[0], parts[1])
        if not gtin or not _digits(parts[2] + parts[3]) or len(parts[2] + parts[3]) != 4:
            return None
        serial = _serial(parts[4])
        return None if serial is None else f"8006/{gtin}{parts[2]}{parts[3]}/21/{serial}"
    return None


def _epc_pattern(scheme: str, rest: str) -> str | None:
    """Digital Link path of an EPC ID pattern URI whose last component is ``*``."""
    parts = rest.split(".")
    if len(parts) < 3 or parts[-1] != "*":
        return None
    if scheme in ("sgtin", "upui") and len(parts) == 3:
        gtin = _gtin(parts[0], parts[1])
        return gtin and f"01/{gtin}"
    if scheme in ("grai", "gdti", "sgcn") and len(parts) == 3:
        if not _prefix_and_reference(parts[0], parts[1], 12):
            return None
        key = _with_check_digit(parts[0] + parts[1])
        return {"grai": f"8003/0{key}", "gdti": f"253/{key}", "sgcn": f"255/{key}"}[scheme]
    if scheme == "cpi" and len(parts) >= 3 and 6 <= len(parts[0]) <= 12 and _digits(parts[0]):
        reference = ".".join(parts[1:-1])
        return f"8010/{parts[0]}{_dl_escape(reference)}" if _SERIAL.fullmatch(reference) else None
    if scheme == "itip" and len(parts) == 5:
        gtin = _gtin(parts[0], parts[1])
        piece_total = parts[2] + parts[3]
        if not gtin or not _digits(piece_total) or len(piece_total) != 4:
            return None
        return f"8006/{gtin}{piece_total}"
    return None


def _epc_class(scheme: str, rest: str) -> str | None:
    if scheme != "lgtin":
        return None
    parts = _split(rest, 3)
    gtin = parts and _gtin(parts[0], parts[1])
    lot = parts and _serial(parts[2])
    return f"01/{gtin}/10/{lot}" if gtin and lot else None


_EPC_URN = re.compile(r"urn:epc:(id|idpat|class):([a-z]+):(.+)")

# Digital Link primary keys (AI codes and their short names) and the shapes we keep.
_DL_KEYS = {
    "00": "00", "sscc": "00", "01": "01", "gtin": "01", "253": "253", "gdti": "253",
    "255": "255", "gcn": "255", "401": "401", "ginc": "401", "402": "402", "gsin": "402",
    "414": "414", "gln": "414", "417": "417", "party": "417", "8003": "8003", "grai": "8003",
    "8004": "8004", "giai": "8004", "8006": "8006", "itip": "8006", "8010": "8010",
    "cpid": "8010", "8017": "8017", "gsrnp": "8017", "8018": "8018", "gsrn": "8018",
}  # fmt: skip
_DL_QUALIFIERS = {"cpv": "22", "lot": "10", "ser": "21"}
_DL_VALUE = r"(?:%[0-9A-Fa-f]{2}|[\"'\-.0-9;<=>?A-Z_a-z])"
_DL_SHAPES = re.compile(
    "|".join(
        (
            r"00/\d{18}",
            rf"01/\d{{14}}(?:/(?:21|10)/{_DL_VALUE}{{1,20}}|/235/{_DL_VALUE}{{1,28}})?",
            rf"253/\d{{13}}{_DL_VALUE}{{0,17}}",
            r"255/\d{13}\d{0,12}",
            rf"401/{_DL_VALUE}{{1,30}}",
            r"402/\d{17}",
            rf"414/\d{{13}}(?:/254/{_DL_VALUE}{{1,20}})?",
            r"417/\d{13}",
            rf"8003/\d{{14}}{_DL_VALUE}{{0,16}}",
            rf"8004/{_DL_VALUE}{{1,30}}",
            rf"8006/\d{{18}}(?:/(?:21|10)/{_DL_VALUE}{{1,20}})?",
            r"8010/(?:%[0-9A-Fa-f]{2}|[#\-/0-9A-Z]){1,30}(?:/8011/\d{1,12})?",
            r"801[78]/\d{18}",
        )
    ),
    re.ASCII,
)
_URL = re.compile(r"https?://[^/?#]*(/[^?#]*)(?:[?#].*)?", re.IGNORECASE | re.DOTALL)


def _constrain_digital_link(uri: str) -> str | None:
    """A GS1 Digital Link URI as CBV 2.0 wants it in a pre-hash string, or None if *uri*
    does not carry a GS1 primary key."""
    match = _URL.fullmatch(uri)
    if not match:
        return None
    segments = match[1].split("/")
    for start in range(1, len(segments) - 1):
        ai = _DL_KEYS.get(segments[start])
        value = segments[start + 1]
        if ai is None or not _digits(value[:4]) or len(value) < 5:
            continue
        if ai == "01" and _digits(value) and len(value) in (8, 12, 13):
            value = value.zfill(14)
        pairs = [(ai, value)]
        rest = segments[start + 2 :]
        if rest and rest[-1] == "":
            rest = rest[:-1]  # one trailing slash
        if len(rest) % 2:
            return None
        pairs += [
            (_DL_QUALIFIERS.get(rest[i], rest[i]), rest[i + 1]) for i in range(0, len(rest), 2)
        ]
        names = [name for name, _ in pairs]
        if ai in ("01", "8006"):
            pairs = [(n, v) for n, v in pairs if n != "22" and not (n == "10" and "21" in names)]
        path = "/".join(f"{name}/{value}" for name, value in pairs)
        return DL_STEM + path if _DL_SHAPES.fullmatch(path) else None
    return None


def normalise_identifier(value: str) -> str | None:
    """The constrained canonical GS1 Digital Link URI for an EPC URI, EPC class URI, EPC ID
    pattern URI or GS1 Digital Link URI; None for anything else (left as it is)."""
    if value.startswith("urn:epc:"):
        match = _EPC_URN.fullmatch(value)
        if not match:
            return None
        form, scheme, rest = match.groups()
        convert = {"id": _epc_id, "idpat": _epc_pattern, "class": _epc_class}[form]
        path = convert(scheme, rest)
        return DL_STEM + path if path else None
    if value[:4].lower() == "http":
        return _constrain_digital_link(value)
    return None
