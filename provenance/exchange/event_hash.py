"""The EPCIS Event Hash ID of GS1 CBV 2.0 §8.9: a fingerprint of an EPCIS event that does
not depend on its syntax (JSON-LD or XML), on key order, on whitespace, on CURIE prefixes or
on the spelling of identifiers.

    ni:///sha-256;<hex of SHA-256(pre-hash string)>?ver=CBV2.0

The *pre-hash string* concatenates ``key=value`` pieces without separators:

1. ``eventType=…``, then the standard fields in the canonical property order
   (`provenance.exchange.prehash_renderer.ORDER`):
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
and what we do. The renderer of the pre-hash string is
`provenance.exchange.prehash_renderer`; the value normalisation of step 3 is
`provenance.exchange.canonical_values`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from provenance.core.errors import ValidationError
from provenance.exchange.prehash_renderer import PrehashRenderer

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
        self._renderer = PrehashRenderer(self._namespaces, self._ignore)

    def _renderer_for(self, event: Mapping[str, Any]) -> PrehashRenderer:
        own = prefixes(event.get("@context"))
        if not own:
            return self._renderer
        return PrehashRenderer({**self._namespaces, **own}, self._ignore)

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


def _object(holder: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = holder.get(name) if isinstance(holder, Mapping) else None
    if not isinstance(value, Mapping):
        raise ValidationError(name, "must be an object")
    return value
