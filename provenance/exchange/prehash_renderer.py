"""The canonical pre-hash string of one EPCIS event, piece by piece (GS1 CBV 2.0 §8.9).

:data:`ORDER` is the canonical property order with the shape of each field, :data:`IGNORED`
the event fields that never take part; :class:`PrehashRenderer` renders an event's
``key=value`` pieces in that order, then everything else (business transactions, sources,
destinations, ilmd, user extensions) sorted, with CURIEs and bare CBV names expanded, values
normalised by :mod:`provenance.exchange.canonical_values` and extension keys written as
``{namespace}localName``. It memoises keys and values, since a whole-ledger export repeats
them across thousands of events. Pure: values in, text out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from provenance.exchange.canonical_values import (
    CBV,
    canonical_number,
    normalise_identifier,
    normalise_time,
)

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


_CURIE = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*):(?!//)(.*)", re.DOTALL)


# --- rendering


class PrehashRenderer:
    """Renders events of one document (its namespaces, its ignore list) as pre-hash text."""

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
