"""The EPCIS 2.0 query language over exported events, pure (EPCIS 2.0 §8.2.7
SimpleEventQuery, in the REST binding's parameter names; docs/epcis.md,
"Query interface").

`parse_query(params)` checks a request's parameters and returns an
`EventQuery`, or raises `QueryParameterError` naming the parameter and the
rule (the binding's `QueryParameterException`, a 400). `EventQuery.matches`
judges one EPCIS event as the exporter writes it (JSON-LD, `provenance.
exchange.epcis`). `page_token`/`read_page_token` make the opaque
`nextPageToken`: the position in the answer and a fingerprint of the query, so
a token cannot be replayed against other parameters.

Vocabulary values are compared in one form: a bizStep or disposition may be
given as the CBV short name (`shipping`), its URN
(`urn:epcglobal:cbv:bizstep:shipping`) or its Web URI
(`https://ref.gs1.org/cbv/BizStep-shipping`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from provenance.core.errors import ValidationError
from provenance.core.timefmt import parse_time

EVENT_TYPES = (
    "ObjectEvent",
    "AggregationEvent",
    "TransactionEvent",
    "TransformationEvent",
    "AssociationEvent",
)
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 1000

_LISTS = {  # parameter -> EventQuery field; values OR'ed, comma-separated or repeated
    "eventType": "event_types",
    "EQ_action": "actions",
    "EQ_bizStep": "biz_steps",
    "EQ_disposition": "dispositions",
    "EQ_readPoint": "read_points",
    "EQ_bizLocation": "biz_locations",
    "MATCH_epc": "epcs",
    "MATCH_anyEPC": "any_epcs",
    "MATCH_epcClass": "epc_classes",
    "MATCH_anyEPCClass": "any_epc_classes",
    "EQ_eventID": "event_ids",
    "EQ_deviceID": "device_ids",
    "EQ_type": "sensor_types",
    # no location hierarchy in the master data: WD_ (with descendants) is EQ_
    "WD_readPoint": "read_points",
    "WD_bizLocation": "biz_locations",
}
_TIMES = {
    "GE_eventTime": "ge_time",
    "LT_eventTime": "lt_time",
    "GE_recordTime": "ge_record",  # when the ledger appended it (store/record_times.py)
    "LT_recordTime": "lt_record",
}
_QUANTITY = re.compile(r"(EQ|GE|GT|LE|LT)_quantity(?:_([A-Z0-9]{2,4}))?")
_VALUE = re.compile(
    r"(EQ|GE|GT|LE|LT)_value_([A-Z0-9]{2,4})"
)  # a sensor value in a unit (UN/CEFACT)
_COMPARE = {
    "EQ": lambda a, b: a == b,
    "GE": lambda a, b: a >= b,
    "GT": lambda a, b: a > b,
    "LE": lambda a, b: a <= b,
    "LT": lambda a, b: a < b,
}
_PAGING = {"perPage", "nextPageToken", "orderBy", "orderDirection", "eventCountLimit"}
PARAMETERS = frozenset(_LISTS) | frozenset(_TIMES) | _PAGING  # and _VALUE's
NOT_ANSWERED = {  # the binding's parameters this ledger does not answer, and why
    **dict.fromkeys(
        (
            "EXISTS_errorDeclaration",
            "GE_errorDeclarationTime",
            "LT_errorDeclarationTime",
            "EQ_errorReason",
            "EQ_correctiveEventID",
        ),
        "the ledger corrects by new signed events, not error declarations",
    ),
    **dict.fromkeys(
        ("EQ_persistentDisposition_set", "EQ_persistentDisposition_unset", "maxEventCount"),
        "not answered yet",
    ),
}
ACTIONS = ("ADD", "OBSERVE", "DELETE")

_VOCABULARY = {  # which URN and Web URI prefixes a short name may be written with
    "bizStep": ("urn:epcglobal:cbv:bizstep:", "https://ref.gs1.org/cbv/BizStep-"),
    "disposition": ("urn:epcglobal:cbv:disp:", "https://ref.gs1.org/cbv/Disp-"),
}


class QueryParameterError(ValidationError):
    """A query parameter the binding does not know, or a value it cannot take
    (EPCIS `QueryParameterException`): 400 naming it."""

    def __init__(self, name: str, rule: str):
        super().__init__(name, rule)


def short(value: str, vocabulary: str) -> str:
    """The CBV short name of a bizStep or disposition given in any of its forms."""
    for prefix in _VOCABULARY[vocabulary]:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


@dataclass(frozen=True)
class EventQuery:
    event_types: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    biz_steps: tuple[str, ...] = ()
    dispositions: tuple[str, ...] = ()
    read_points: tuple[str, ...] = ()
    biz_locations: tuple[str, ...] = ()
    epcs: tuple[str, ...] = ()
    any_epcs: tuple[str, ...] = ()
    epc_classes: tuple[str, ...] = ()
    any_epc_classes: tuple[str, ...] = ()
    event_ids: tuple[str, ...] = ()
    device_ids: tuple[str, ...] = ()
    sensor_types: tuple[str, ...] = ()
    ge_time: int | None = None
    lt_time: int | None = None
    values: tuple[tuple[str, str, float], ...] = ()  # (EQ|GE|GT|LE|LT, unit, number)
    ge_record: int | None = None  # recordTime: when the ledger appended the event
    lt_record: int | None = None
    quantities: tuple[tuple[str, str | None, float], ...] = ()  # (EQ|GE|…, uom or None, number)
    descending: bool = True  # orderBy eventTime; the binding's default order is the server's
    per_page: int = DEFAULT_PER_PAGE
    limit: int | None = None  # eventCountLimit
    fingerprint: str = field(default="", compare=False)

    @property
    def needs_record_time(self) -> bool:
        return self.ge_record is not None or self.lt_record is not None

    def matches(self, event: Mapping[str, Any], recorded: int | None = None) -> bool:
        """Whether *event* (an EPCIS 2.0 event as JSON) answers the query: every
        given parameter holds (AND), any of a parameter's values (OR). *recorded*:
        its record time (microseconds; None: not known, so a recordTime
        parameter does not match it)."""
        if self.needs_record_time:
            if recorded is None:
                return False
            if self.ge_record is not None and recorded < self.ge_record:
                return False
            if self.lt_record is not None and recorded >= self.lt_record:
                return False
        if self.quantities and not _quantities_match(self.quantities, event):
            return False
        if self.event_types and event.get("type") not in self.event_types:
            return False
        if self.actions and event.get("action") not in self.actions:
            return False
        if self.biz_steps and short(str(event.get("bizStep", "")), "bizStep") not in self.biz_steps:
            return False
        disposition = short(str(event.get("disposition", "")), "disposition")
        if self.dispositions and disposition not in self.dispositions:
            return False
        if self.read_points and _place(event.get("readPoint")) not in self.read_points:
            return False
        if self.biz_locations and _place(event.get("bizLocation")) not in self.biz_locations:
            return False
        if self.event_ids and event.get("eventID") not in self.event_ids:
            return False
        if self.ge_time is not None or self.lt_time is not None:
            moment = _event_time(event)
            if self.ge_time is not None and moment < self.ge_time:
                return False
            if self.lt_time is not None and moment >= self.lt_time:
                return False
        if self.epcs and not _any_match(self.epcs, _epcs(event, everywhere=False)):
            return False
        if self.any_epcs and not _any_match(self.any_epcs, _epcs(event, everywhere=True)):
            return False
        if self.epc_classes and not _any_match(self.epc_classes, _classes(event, everywhere=False)):
            return False
        if self.any_epc_classes and not _any_match(
            self.any_epc_classes, _classes(event, everywhere=True)
        ):
            return False
        return self._sensors_match(event)

    def _sensors_match(self, event: Mapping[str, Any]) -> bool:
        """Some one sensor report satisfies every sensor parameter."""
        if not (self.device_ids or self.sensor_types or self.values):
            return True
        for element in event.get("sensorElementList") or ():
            device = (element.get("sensorMetadata") or {}).get("deviceID")
            for report in element.get("sensorReport") or ():
                if self.device_ids and report.get("deviceID", device) not in self.device_ids:
                    continue
                if self.sensor_types and report.get("type") not in self.sensor_types:
                    continue
                value, unit = report.get("value"), report.get("uom")
                if all(
                    isinstance(value, (int, float))
                    and not isinstance(value, bool)
                    and unit == wanted
                    and _COMPARE[op](value, number)
                    for op, wanted, number in self.values
                ):
                    return True
        return False

    def order(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """*events* by eventTime (newest first unless orderDirection=ASC), ties
        in their given order (the log's)."""
        return sorted(events, key=_event_time, reverse=self.descending)


def parse_query(params: Mapping[str, Sequence[str]]) -> EventQuery:
    """The query of a request's parameters (each name with its values as given,
    repeated names kept); `QueryParameterError` for what the binding refuses."""
    fields: dict[str, Any] = {}
    comparisons: list[tuple[str, str, float]] = []
    quantities: list[tuple[str, str | None, float]] = []
    for name, values in params.items():
        value_test = _VALUE.fullmatch(name)
        if value_test is not None:
            if len(values) != 1:
                raise QueryParameterError(name, "may be given once")
            comparisons.append((value_test[1], value_test[2], _number(name, values[0])))
            continue
        quantity_test = _QUANTITY.fullmatch(name)
        if quantity_test is not None:
            if len(values) != 1:
                raise QueryParameterError(name, "may be given once")
            number = _number(name, values[0])
            quantities.append((quantity_test[1], quantity_test[2], number))
            continue
        if name in NOT_ANSWERED:
            raise QueryParameterError(
                name, f"is the binding's, but this ledger does not answer it: {NOT_ANSWERED[name]}"
            )
        if name not in PARAMETERS:
            known = ", ".join(sorted(PARAMETERS))
            raise QueryParameterError(
                name,
                f"is not a query parameter here (known: {known}, and GE_value_<unit>, "
                "GE_quantity_<unit>…)",
            )
        if name in _LISTS:
            items = tuple(v.strip() for value in values for v in value.split(",") if v.strip())
            if not items:
                raise QueryParameterError(name, "needs a value")
            items = _normalised(name, items)
            if _LISTS[name] in fields:  # EQ_readPoint and WD_readPoint together: both hold
                items = tuple(i for i in fields[_LISTS[name]] if i in items) or (_NOTHING,)
            fields[_LISTS[name]] = items
        elif len(values) != 1:
            raise QueryParameterError(name, "may be given once")
        elif name in _TIMES:
            fields[_TIMES[name]] = _time(name, values[0])
    one = {name: values[0] for name, values in params.items() if name in _PAGING}
    if one.get("orderBy", "eventTime") != "eventTime":
        raise QueryParameterError("orderBy", "only eventTime is supported")
    direction = one.get("orderDirection", "DESC")
    if direction not in ("ASC", "DESC"):
        raise QueryParameterError("orderDirection", "must be ASC or DESC")
    fields["descending"] = direction == "DESC"
    fields["values"] = tuple(comparisons)
    fields["quantities"] = tuple(quantities)
    if "perPage" in one:
        fields["per_page"] = _count("perPage", one["perPage"], MAX_PER_PAGE)
    if "eventCountLimit" in one:
        fields["limit"] = _count("eventCountLimit", one["eventCountLimit"], None)
    fingerprint = hashlib.sha256(
        json.dumps(
            {k: sorted(v) for k, v in params.items() if k not in ("nextPageToken", "perPage")},
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    return EventQuery(**fields, fingerprint=fingerprint)


def page_token(query: EventQuery, offset: int) -> str:
    raw = json.dumps({"o": offset, "q": query.fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_page_token(query: EventQuery, token: str) -> int:
    """The offset a token of this query points at; `QueryParameterError` for a
    token that is not one, or was made for other parameters."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
        offset, fingerprint = value["o"], value["q"]
    except (ValueError, TypeError, KeyError):
        raise QueryParameterError("nextPageToken", "is not a token this server gave") from None
    if not isinstance(offset, int) or offset < 0 or fingerprint != query.fingerprint:
        raise QueryParameterError(
            "nextPageToken", "belongs to another query: repeat the same parameters with it"
        )
    return offset


# --- helpers


def _normalised(name: str, items: tuple[str, ...]) -> tuple[str, ...]:
    if name == "eventType":
        for item in items:
            if item not in EVENT_TYPES:
                raise QueryParameterError(name, f"{item!r} is not one of {', '.join(EVENT_TYPES)}")
    if name == "EQ_action":
        for item in items:
            if item not in ACTIONS:
                raise QueryParameterError(name, f"{item!r} is not one of ADD, OBSERVE, DELETE")
    if name == "EQ_bizStep":
        return tuple(short(item, "bizStep") for item in items)
    if name == "EQ_disposition":
        return tuple(short(item, "disposition") for item in items)
    return items


def _time(name: str, value: str) -> int:
    try:
        return parse_time(_utc(value))
    except ValidationError:
        raise QueryParameterError(
            name, f"{value!r} is not an RFC 3339 time (e.g. 2026-12-01T00:00:00Z)"
        ) from None


def _utc(value: str) -> str:
    """An RFC 3339 time with an offset as the UTC time parse_time reads."""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value  # parse_time says what is wrong
    if moment.tzinfo is None:
        return value
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise QueryParameterError(name, f"{value!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise QueryParameterError(name, "must be a finite number")
    return number


def _count(name: str, value: str, most: int | None) -> int:
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise QueryParameterError(name, f"{value!r} is not a positive whole number")
    if most is not None and int(value) > most:
        raise QueryParameterError(name, f"at most {most}")
    return int(value)


def _event_time(event: Mapping[str, Any]) -> int:
    value = event.get("eventTime")
    try:
        return parse_time(_utc(str(value)))
    except ValidationError:
        return 0


def _place(value: Any) -> str | None:
    return value.get("id") if isinstance(value, Mapping) else None


def _epcs(event: Mapping[str, Any], *, everywhere: bool) -> list[str]:
    found = list(event.get("epcList") or ()) + list(event.get("childEPCs") or ())
    if everywhere:
        found += list(event.get("inputEPCList") or ()) + list(event.get("outputEPCList") or ())
        if event.get("parentID"):
            found.append(event["parentID"])
    return [str(epc) for epc in found]


_QUANTITY_LISTS = ("quantityList", "childQuantityList")
_EVERY_QUANTITY_LIST = (*_QUANTITY_LISTS, "inputQuantityList", "outputQuantityList")


def _classes(event: Mapping[str, Any], *, everywhere: bool) -> list[str]:
    lists = _EVERY_QUANTITY_LIST if everywhere else _QUANTITY_LISTS
    return [
        str(item.get("epcClass"))
        for name in lists
        for item in event.get(name) or ()
        if isinstance(item, Mapping)
    ]


def _any_match(patterns: tuple[str, ...], values: list[str]) -> bool:
    """A value equal to a pattern, or starting with a pattern's text before a
    trailing `*` (the binding's wildcard for a company prefix or product)."""
    for pattern in patterns:
        if pattern.endswith("*"):
            stem = pattern[:-1]
            if any(value.startswith(stem) for value in values):
                return True
        elif pattern in values:
            return True
    return False


_NOTHING = "\x00"  # a value no event has: two place parameters with nothing in common


def _quantities_match(
    tests: tuple[tuple[str, str | None, float], ...], event: Mapping[str, Any]
) -> bool:
    """Some one element of the event's quantityList or childQuantityList passes
    every quantity parameter (`EQ_quantity_KGM=5`: 5 kg; `EQ_quantity=5`: a
    count, an element without a unit)."""
    for name in _QUANTITY_LISTS:
        for item in event.get(name) or ():
            if not isinstance(item, Mapping):
                continue
            amount, uom = item.get("quantity"), item.get("uom")
            if not isinstance(amount, (int, float)) or isinstance(amount, bool):
                continue
            if all(uom == unit and _COMPARE[op](amount, number) for op, unit, number in tests):
                return True
    return False
