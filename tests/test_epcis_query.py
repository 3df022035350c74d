"""The EPCIS 2.0 REST query interface (/epcis/…, provenance/web/epcis_api.py and
the pure query language provenance/exchange/epcis_query.py): the standard's
parameters, scoping by role and custody, paging, and every answer a
schema-valid EPCISQueryDocument whose event ids the reference hasher agrees with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from support.portal import portal  # noqa: F401  (fixture)
from support.reference_event_hash import reference_hashes
from support.world import GTIN, HOUR, LOT, T0, at

from provenance.core import gs1
from provenance.exchange.epcis_import import epcis_validator, find_schema
from provenance.exchange.epcis_query import (
    EventQuery,
    QueryParameterError,
    page_token,
    parse_query,
    read_page_token,
)

OTHER = gs1.lot_uri(GTIN, "OTHER-9")  # a lot the store never held


@pytest.fixture
def story(portal):  # noqa: F811
    world = portal.world
    world.ledger.append([world.reading(h, 4.0 + (h % 3)) for h in (1, 1.5, 2, 2.5)])
    world.ship_and_receive("farm", "store", [LOT], 5)
    data = {"gtin": GTIN, "lot": "OTHER-9", "product": "Spinach"}
    world.ok("farm", "commission", [OTHER], data, time=at(6))
    return portal


def _validate(document):
    import json

    schema = json.loads(find_schema().read_text())
    problems = sorted(epcis_validator(schema).iter_errors(document), key=str)
    assert not problems, problems[0].message


def _events(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/ld+json"
    assert response.headers["GS1-EPCIS-Version"] == "2.0.0"
    document = response.json
    assert document["type"] == "EPCISQueryDocument"
    _validate(document)
    return document["epcisBody"]["queryResults"]["resultsBody"]["eventList"]


def test_a_regulator_queries_by_biz_step_and_time_in_every_form(story):
    token = story.token("regulator")
    shipping = _events(story.api("GET", "/epcis/events?EQ_bizStep=shipping", token))
    assert shipping and {e["bizStep"] for e in shipping} == {"shipping"}
    for form in ("urn:epcglobal:cbv:bizstep:shipping", "https://ref.gs1.org/cbv/BizStep-shipping"):
        again = _events(story.api("GET", f"/epcis/events?EQ_bizStep={quote(form)}", token))
        assert [e["eventID"] for e in again] == [e["eventID"] for e in shipping]
    response = story.api("GET", "/epcis/events?perPage=1000", token)
    everything = _events(response)
    times = [e["eventTime"] for e in everything]
    assert times == sorted(times, reverse=True)  # newest first by default
    oldest_first = _events(story.api("GET", "/epcis/events?perPage=1000&orderDirection=ASC", token))
    assert [e["eventTime"] for e in oldest_first] == sorted(times)
    moment = datetime.fromtimestamp((T0 + 3 * HOUR) / 1e6, tz=UTC)
    cut = moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()  # an offset
    later = _events(
        story.api("GET", f"/epcis/events?perPage=1000&GE_eventTime={quote(cut)}", token)
    )
    utc = moment.strftime("%Y-%m-%dT%H:%M:%S")
    assert later and all(e["eventTime"] >= utc for e in later)
    assert len(later) < len(everything)
    # Event ids as GS1's reference implementation computes them.
    assert [e["eventID"] for e in everything] == reference_hashes(response.json)


def test_sensor_and_epc_filters(story):
    token = story.token("regulator")
    warm = _events(story.api("GET", "/epcis/events?GE_value_CEL=5.5&perPage=1000", token))
    assert warm and all(
        any(
            r.get("value", 0) >= 5.5 and r.get("uom") == "CEL"
            for s in e["sensorElementList"]
            for r in s["sensorReport"]
        )
        for e in warm
    )
    of_lot = _events(
        story.api("GET", f"/epcis/epcs/{quote(LOT, safe='')}/events?perPage=1000", token)
    )
    assert of_lot and all(
        LOT in [q["epcClass"] for k in ("quantityList", "childQuantityList", "inputQuantityList",
                                        "outputQuantityList") for q in e.get(k, [])]
        for e in of_lot
    )  # fmt: skip
    product = quote(f"https://id.gs1.org/01/{GTIN}/*", safe="")
    assert len(
        _events(story.api("GET", f"/epcis/events?MATCH_anyEPCClass={product}&perPage=1000", token))
    ) > len(of_lot)
    one = of_lot[0]["eventID"]
    single = _events(story.api("GET", f"/epcis/events/{quote(one, safe='')}", token))
    assert [e["eventID"] for e in single] == [one]
    assert story.api("GET", "/epcis/events/ni%3A%2F%2F%2Fnothing", token).status_code == 404


def test_a_party_reads_only_the_lots_it_held(story):
    store_token = story.token("store", scope="read")
    seen = _events(story.api("GET", "/epcis/events?perPage=1000", store_token))
    assert seen
    classes = {
        q["epcClass"]
        for e in seen
        for k in ("quantityList", "childQuantityList")
        for q in e.get(k, [])
    }
    assert OTHER not in classes and LOT in classes
    everything = _events(story.api("GET", "/epcis/events?perPage=1000", story.token("regulator")))
    assert len(everything) > len(seen)
    other = quote(OTHER, safe="")
    assert _events(story.api("GET", f"/epcis/epcs/{other}/events", store_token)) == []


def test_paging_follows_the_link_header_to_the_end(story):
    token = story.token("regulator")
    url, seen = "/epcis/events?perPage=2&orderDirection=ASC", []
    for _ in range(50):  # bounded
        response = story.api("GET", url, token)
        seen += _events(response)
        link = response.headers.get("Link")
        if link is None:
            break
        assert link.endswith('>; rel="next"')
        url = link[1 : link.index(">")].removeprefix("http://localhost")
    everything = _events(story.api("GET", "/epcis/events?perPage=1000&orderDirection=ASC", token))
    assert [e["eventID"] for e in seen] == [e["eventID"] for e in everything]
    # A token is for its own query only.
    first = story.api("GET", "/epcis/events?perPage=2", token).headers["Link"]
    stolen = first[first.index("nextPageToken=") :].split(">")[0]
    refused = story.api("GET", f"/epcis/events?EQ_bizStep=shipping&{stolen}", token)
    assert refused.status_code == 400 and "another query" in refused.json["detail"]


def test_vocabulary_listings(story):
    token = story.token("regulator")
    assert story.api("GET", "/epcis/eventTypes", token).json == sorted(
        ["ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent",
         "AssociationEvent"]
    )  # fmt: skip
    steps = story.api("GET", "/epcis/bizSteps", token).json
    assert {"commissioning", "shipping", "receiving"} <= set(steps)
    receiving = _events(story.api("GET", "/epcis/bizSteps/receiving/events", token))
    assert receiving and {e["bizStep"] for e in receiving} == {"receiving"}
    objects = _events(story.api("GET", "/epcis/eventTypes/ObjectEvent/events", token))
    assert objects and {e["type"] for e in objects} == {"ObjectEvent"}
    assert story.api("GET", "/epcis/eventTypes/NoEvent/events", token).status_code == 404


@pytest.mark.parametrize(
    "query, words",
    [
        ("EQ_colour=red", "not a query parameter"),
        ("eventType=Thing", "not one of"),
        ("GE_eventTime=yesterday", "RFC 3339"),
        ("perPage=0", "positive"),
        ("perPage=100000", "at most"),
        ("GE_value_CEL=NaN", "finite"),
        ("GE_value=5", "not a query parameter"),
        ("orderBy=recordTime", "eventTime"),
        ("orderDirection=UP", "ASC or DESC"),
        ("nextPageToken=%%%", "not a token"),
        ("EQ_action=MOVE", "ADD, OBSERVE, DELETE"),
        ("EXISTS_errorDeclaration=true", "not error declarations"),
        ("GE_recordTime=yesterday", "RFC 3339"),
        ("GE_quantity_KGM=lots", "not a number"),
    ],
)
def test_bad_parameters_are_400_problems_naming_them(story, query, words):
    response = story.api("GET", f"/epcis/events?{query}", story.token("regulator"))
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body["type"] == "epcisException:QueryParameterException"
    assert words in body["detail"]


def test_no_token_or_a_bad_one_is_401(story):
    response = story.api("GET", "/epcis/events", None)
    assert response.status_code == 401 and "Bearer" in response.json["detail"]
    assert story.api("GET", "/epcis/events", "pvt_nonsense").status_code == 401


@pytest.mark.shared
def test_every_parameter_is_one_the_official_query_schema_names():
    """Names as GS1's REST binding spells them (the query schema, query-schema.json,
    and the OpenAPI file's parameters, which differ in places, e.g.
    GE_errorDeclaration_Time against GE_errorDeclarationTime): none of ours is
    invented."""
    import json
    import re

    import yaml
    from support.paths import SHARED

    from provenance.exchange.epcis_query import NOT_ANSWERED, PARAMETERS

    schema_file = SHARED / "gs1-epcis" / "rest" / "query-schema.json"
    text = json.dumps(json.loads(schema_file.read_text()))
    names = set(re.findall(r'"([A-Za-z_]+)": \{', text))
    patterns = [re.compile(p) for p in re.findall(r'"(\^[^"]+\$)": \{', text)]
    openapi = yaml.safe_load((SHARED / "gs1-epcis" / "rest" / "openapi.yaml").read_text())
    names |= {p["name"] for p in openapi["components"]["parameters"].values() if "name" in p}
    for name in PARAMETERS | set(NOT_ANSWERED):
        assert name in names, name
    assert "EQ_quantity" in names  # the unit-less form, for counts
    for unit_test in ("GE_value_CEL", "LT_value_CEL", "EQ_value_KGM", "GE_quantity_KGM"):
        assert any(p.fullmatch(unit_test) for p in patterns), unit_test


def test_the_query_language_alone():
    query = parse_query(
        {"EQ_bizStep": ["shipping,receiving"], "GE_eventTime": ["2026-01-01T00:00:00Z"]}
    )
    assert query.biz_steps == ("shipping", "receiving")
    event = {"type": "ObjectEvent", "bizStep": "urn:epcglobal:cbv:bizstep:receiving",
             "eventTime": "2026-02-01T00:00:00.000Z"}  # fmt: skip
    assert query.matches(event)
    assert not query.matches({**event, "eventTime": "2026-01-01T01:00:00+02:00"})  # 23:00Z before
    assert query.matches({**event, "eventTime": "2025-12-31T23:00:00-02:00"})  # 01:00Z after
    assert EventQuery(epcs=("urn:epc:id:sgtin:0614141.*",)).matches(
        {"epcList": ["urn:epc:id:sgtin:0614141.107346.2017"]}
    )
    assert not EventQuery(epcs=("urn:epc:id:sgtin:0614141.*",)).matches({"epcList": []})
    assert read_page_token(query, page_token(query, 60)) == 60
    other = parse_query({"EQ_bizStep": ["shipping"]})
    with pytest.raises(QueryParameterError, match="another query"):
        read_page_token(other, page_token(query, 60))
    with pytest.raises(QueryParameterError, match="once"):
        parse_query({"GE_eventTime": ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]})
