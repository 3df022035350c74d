"""GS1's reference implementation of the CBV 2.0 Event Hash ID, run offline, and the list of
its known bugs: the tests compare every event we hash or export with it.

The reference is `epcis-event-hash-generator` on the package index (by the algorithm's
author; a dev dependency, docs/epcis.md "The event hash"). It is a prototype with module-level
state, so `reference_prehashes`:

- serves the two EPCIS JSON-LD contexts it ships from its own package files and refuses every
  other URL: its default loader would fetch unknown contexts from the internet, and the tests
  never reach any address but loopback;
- clears its CURIE prefix table (a module global that otherwise carries prefixes from one
  document into the next);
- gives it an EPCISDocument: a bare event (the schema's test files) becomes a one-event
  document with the event's ``@context``, and a query document a document with its results'
  event list (release 1.9.3 reads neither);
- fails when it silently drops an event (it logs and skips any event it cannot render).

`REFERENCE_BUGS` names, with a reason each, the ways the reference departs from the CBV 2.0
algorithm (§8.9; its numbered rules are in the reference's own README); `KNOWN_DIFFERENCES`
lists every input (vector, official example) on which we differ because of one of them. A
test that meets a listed difference asserts that the reference still differs there (so the
list cannot go stale) and, where the bug can be modelled (a rewrite of our output, or the bug
switched on in our hashing), that it is the whole difference.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

from epcis_event_hash_generator import hash_generator, json_to_py
from pyld import jsonld

from provenance.exchange import event_hash

REFERENCE = "epcis-event-hash-generator"
RELEASE = "1.9.3"  # the release REFERENCE_BUGS and KNOWN_DIFFERENCES describe
_PACKAGE = "epcis_event_hash_generator"
# The contexts the reference ships (its file_document_loader's table), by URL.
_SHIPPED_CONTEXTS = {
    "https://gs1.github.io/EPCIS/epcis-context.jsonld": (
        "14b10c9d3e92d35f577bfc610fe5ec15aa2941124987919389d7cd9998516861.jsonld"
    ),
    "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld": (
        "e532647e8eb371379b8b0e8602d8981c8566bc60f7351f22c76a5bc865962008.jsonld"
    ),
}


class ReferenceFailed(Exception):
    """The reference could not hash a document (it raised, or dropped events)."""


REFUSED: list[str] = []  # URLs the reference asked for and did not get (tests look)


def _offline_loader(url: str, options: Any = None) -> dict[str, Any]:
    name = _SHIPPED_CONTEXTS.get(url)
    if name is None:
        REFUSED.append(url)
        raise jsonld.JsonLdError(
            f"offline: the tests serve only the EPCIS contexts, not {url}",
            "jsonld.LoadDocumentError",
            code="loading document failed",
        )
    text = importlib.resources.files(_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    return {"contentType": "application/ld+json", "contextUrl": None, "documentUrl": url,
            "document": json.loads(text)}  # fmt: skip


@contextmanager
def _offline() -> Iterator[None]:
    previous = jsonld.get_document_loader()
    jsonld.set_document_loader(_offline_loader)
    try:
        yield
    finally:
        jsonld.set_document_loader(previous)


def as_document(item: Mapping[str, Any]) -> dict[str, Any]:
    """An EPCISDocument the reference can read holding the events of *item* (a document, a
    query document or one bare event with its own ``@context``)."""
    body = item.get("epcisBody")
    if not isinstance(body, Mapping):  # a bare event
        event = {key: value for key, value in item.items() if key != "@context"}
        return {"@context": item.get("@context"), "type": "EPCISDocument",
                "epcisBody": {"eventList": [event]}}  # fmt: skip
    results = body.get("queryResults")
    if isinstance(results, Mapping):
        document = {key: value for key, value in item.items() if key != "epcisBody"}
        document["epcisBody"] = {"eventList": results["resultsBody"]["eventList"]}
        return document
    return dict(item)


def _event_count(document: Mapping[str, Any]) -> int:
    body = document["epcisBody"]
    return len(body["eventList"]) if "eventList" in body else 1


def reference_prehashes(item: Mapping[str, Any]) -> list[str]:
    """The reference's pre-hash string of every event of *item*, in document order."""
    document = as_document(copy.deepcopy(item))
    json_to_py._namespaces.clear()  # module state, carried over from the previous document
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # it logs warnings and errors for ordinary input
    try:
        with _offline():
            events = json_to_py.event_list_from_epcis_document_json(document)
            prehashes = hash_generator.derive_prehashes_from_events(events)
    except Exception as error:
        raise ReferenceFailed(f"{type(error).__name__}: {error}") from error
    finally:
        logger.setLevel(level)
    if len(prehashes) != _event_count(document):
        raise ReferenceFailed(
            f"rendered {len(prehashes)} of {_event_count(document)} events (it skips the"
            " events it cannot render)"
        )
    return prehashes


def reference_hashes(item: Mapping[str, Any]) -> list[str]:
    return hash_generator.calculate_hashes_from_pre_hashes(reference_prehashes(item))


# --- where the reference departs from CBV 2.0, and where that shows


@dataclass(frozen=True)
class ReferenceBug:
    reason: str
    # Our pre-hash string rewritten the way the bug writes it; None when the bug moves or
    # drops pieces, so that no simple rewrite reproduces it.
    as_reference: Callable[[str], str] | None = None
    # Our hashing with the bug put in (a context manager around it), when a rewrite of our
    # output cannot reproduce it.
    emulate: Callable[[], AbstractContextManager[Any]] | None = None
    # For a bug that makes it fail on a whole document: what its error says.
    fails_with: str | None = None


def _python_booleans(text: str) -> str:
    return text.replace("booleanValue=true", "booleanValue=True").replace(
        "booleanValue=false", "booleanValue=False"
    )


def _inline_prefixes_only() -> AbstractContextManager[Any]:
    return mock.patch.dict(event_hash.EPCIS_PREFIXES, clear=True)


REFERENCE_BUGS: dict[str, ReferenceBug] = {
    "python-booleans": ReferenceBug(
        "its JSON path writes a boolean with Python's str(): booleanValue=True/False. Its XML"
        " path writes the element text, the xsd:boolean true/false, so one event gets two"
        " hashes by syntax, against the algorithm's requirement that the same event in"
        " JSON-LD or XML yield the same hash. We write true/false.",
        _python_booleans,
    ),
    "inline-prefixes-only": ReferenceBug(
        "it expands only CURIE prefixes declared inline in the document's @context, not those"
        " of the EPCIS context itself (cbv:, gs1:, …), which the algorithm's rule 15 (CBV"
        " 2.0 §8.9) requires to be expanded like any other: it writes"
        " component=cbv:Comp-latitude where we write https://ref.gs1.org/cbv/Comp-latitude,"
        " and leaves ilmd's cbvmda: keys unexpanded.",
        emulate=_inline_prefixes_only,
    ),
    "extension-namespace-slash": ReferenceBug(
        "it treats a key as a user extension of its enclosing structure (sensorMetadata,"
        " sensorElement, readPoint, …) only when its namespace ends in '/'. An extension in"
        " another namespace (here http://ns.example.com/epcis without a slash) is left over and"
        " written at the end of the event under a second copy of the list's name, not inside"
        " its structure after the standard fields, as the algorithm's rule 21 wants for"
        " readPoint, bizLocation, sensorElement, sensorMetadata and sensorReport.",
    ),
    "misplaced-standard-field": ReferenceBug(
        "a standard EPCIS field that appears in the wrong structure (bizRules, a sensorMetadata"
        " field, inside a sensorReport) is neither ordered nor an extension for it, so it is"
        " moved to the end of the event under a copy of its path. The algorithm's text does"
        " not cover this case (not a user extension, not in the order); we render it with the"
        " structure it is in, like an extension, which keeps it where the event put it.",
    ),
    "event-context": ReferenceBug(
        "it reads CURIE prefixes only from the document's @context; an event's own @context"
        " (which our import adds to an event whose document defined prefixes inline, so the"
        " event keeps its meaning on its own) is hashed as if it were a field of the event,"
        " and its prefixes are not expanded. JSON-LD keywords are not event data.",
    ),
    "no-ignore-fields": ReferenceBug(
        "release 1.9.3 predates ignoreFields (a repository's list of its own fields to leave"
        " out, added upstream later and used by the upstream vectors we test against); it"
        " hashes those fields. Not a CBV 2.0 rule either way: we follow the upstream vectors.",
    ),
    "protected-term": ReferenceBug(
        "it runs a full JSON-LD expansion first, and pyld refuses this official example's"
        " @context (it redefines a protected term of the EPCIS context), so it hashes"
        " nothing. CBV 2.0 needs no expansion of the document.",
        fails_with="tried to redefine a protected term",
    ),
    "term-definition": ReferenceBug(
        'it crashes (TypeError: can only concatenate str (not "dict") to str) on a @context'
        ' that defines a term by an object ({"@type": "xsd:integer"}, as this official'
        " example does for its rail: terms), so it hashes nothing. JSON-LD allows expanded"
        " term definitions.",
        fails_with='can only concatenate str (not "dict") to str',
    ),
}

# (source, event index) → bug, for every event of the official examples and the vectors on
# which the reference and we differ; index None: the whole document.
KNOWN_DIFFERENCES: dict[tuple[str, int | None], tuple[str, ...]] = {
    ("gs1-epcis/examples/WithFullCombinationOfFields/aggregation_event_all_possible_fields.jsonld", 0): ("inline-prefixes-only", "python-booleans"),  # noqa: E501
    ("gs1-epcis/examples/WithFullCombinationOfFields/association_event_all_possible_fields.jsonld", 0): ("python-booleans",),  # noqa: E501
    ("gs1-epcis/examples/WithFullCombinationOfFields/object_event_all_possible_fields.jsonld", 0): ("inline-prefixes-only", "python-booleans"),  # noqa: E501
    ("gs1-epcis/examples/WithFullCombinationOfFields/transaction_event_all_possible_fields.jsonld", 0): ("python-booleans",),  # noqa: E501
    ("gs1-epcis/examples/WithFullCombinationOfFields/transformation_event_all_possible_fields.jsonld", None): ("protected-term",),  # noqa: E501
    ("gs1-epcis/examples/Example-TransactionEvents-2020_07_03y.jsonld", None): ("term-definition",),
    ("gs1-epcis/examples/WithSensorData/SensorDataExample7.jsonld", 0): ("python-booleans",),
    ("gs1-epcis/examples/WithSensorData/SensorDataExample9.jsonld", 0): ("python-booleans",),
    ("gs1-epcis/examples/WithSensorData/SensorDataExample12.jsonld", 0): ("extension-namespace-slash",),  # noqa: E501
    ("gs1-epcis/examples/WithSensorData/SensorDataExample8.jsonld", 0): ("misplaced-standard-field",),  # noqa: E501
    ("epcis-event-hash-generator/examples/epcisDocHavingEventWithIgnoreFields.jsonld", 0): ("no-ignore-fields",),  # noqa: E501
    ("epcis-event-hash-generator/examples/epcisQueryDocHavingEventWithIgnoreFields.jsonld", 0): ("no-ignore-fields",),  # noqa: E501
}  # fmt: skip


def check_against_reference(
    source: str,
    item: Mapping[str, Any],
    ours: Callable[[Mapping[str, Any]], list[str]],
    known: Mapping[tuple[str, int | None], tuple[str, ...]] = KNOWN_DIFFERENCES,
) -> list[str]:
    """Compare our pre-hash strings of the events of *item* (``ours(item)``) with the
    reference's.

    Returns the problems (empty when we agree): an event that differs without being listed
    in *known*, a listed one that no longer differs, or one whose listed bugs, put into our
    hashing, do not give exactly the reference's string."""
    document_bugs = known.get((source, None))
    try:
        theirs = reference_prehashes(item)
    except ReferenceFailed as failure:
        expected = [REFERENCE_BUGS[bug].fails_with for bug in document_bugs or ()]
        if any(text and text in str(failure) for text in expected):
            return []
        return [f"{source}: the reference failed: {failure}"]
    if document_bugs:
        return [f"{source}: listed as {document_bugs} but the reference now hashes it"]
    mine_all = ours(item)
    if len(theirs) != len(mine_all):
        return [f"{source}: {len(mine_all)} events, the reference gave {len(theirs)}"]
    problems = []
    for index, (mine, reference) in enumerate(zip(mine_all, theirs, strict=True)):
        bugs = [REFERENCE_BUGS[name] for name in known.get((source, index), ())]
        if not bugs:
            if mine != reference:
                problems.append(f"{source} event {index}: ours {mine!r} reference {reference!r}")
            continue
        if mine == reference:
            problems.append(f"{source} event {index}: listed as buggy but now agrees")
            continue
        if any(bug.as_reference is None and bug.emulate is None for bug in bugs):
            continue  # no model of the bug: that it still differs is all we can say
        with ExitStack() as stack:
            for bug in bugs:
                if bug.emulate:
                    stack.enter_context(bug.emulate())
            expected = ours(item)[index]
        for bug in bugs:
            if bug.as_reference:
                expected = bug.as_reference(expected)
        if expected != reference:
            problems.append(
                f"{source} event {index}: its listed bugs do not explain the whole difference:"
                f" ours with them {expected!r} reference {reference!r}"
            )
    return problems
